"""Is the synthetic cohort's progression endpoint learned? PFS C-index of our models against the
ground truth's, on the same validation patients.

    python bench/progression_synthetic.py [--cohort runs/demo/cohort/cohort.yaml] \
        [--out runs/bench_progression_synthetic] [--endpoints pfs multitask] [--write-docs]

The cohort defaults to the demo's (`multimodal synth`, 500 patients, seed 0, 20% missing per
modality; written when absent). Models: `configs/demo.yaml` with `endpoint=<e>`, 5-fold CV.
For every validation fold we score, with Harrell's C on (pfs_time, pfs_event):

- the model's PFS risk (`risk` for `pfs`, `risk_pfs` for `multitask`);
- the true progression log-hazard `true_pfs_risk` (ground truth);
- the reachable truth: its expected value given the modalities each patient has
  (`0.7 * reachable_risk + z_pfs` where genomics, which carries the progression pathway, is present).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import cpu_name, write_section  # noqa: E402


def reachable_pfs(gt: pd.DataFrame, availability: pd.DataFrame) -> pd.Series:
    """Expected true progression log-hazard given each patient's modalities."""
    from multimodal.data.synth import components_present, reachable_risk

    present = components_present(availability)
    own = gt["true_pfs_risk"] - 0.7 * gt["true_risk"]  # the progression-only pathway (genomics)
    return 0.7 * reachable_risk(gt, present) + own * present["genomics"].astype(float)


def run(cohort_path: Path, out: Path, endpoints: list[str]) -> list[dict]:
    import multimodal
    from multimodal.survival.metrics import harrell_c

    cohort = multimodal.Cohort.load(cohort_path)
    gt = pd.read_csv(cohort_path.parent / "ground_truth.csv", dtype={"patient_id": str})
    gt = gt.set_index("patient_id")
    patients = pd.read_csv(cohort_path.parent / "patients.csv", dtype={"patient_id": str})
    patients = patients.set_index("patient_id")
    avail = cohort.availability().reindex(gt.index).fillna(False)
    ceiling = reachable_pfs(gt, avail)
    rows = []
    for endpoint in endpoints:
        start = time.perf_counter()
        res = multimodal.train(
            ROOT / "configs" / "demo.yaml",
            cohort=cohort,
            out=out / endpoint,
            overrides=[f"endpoint={endpoint}", "train.progress=false"],
        )
        seconds = time.perf_counter() - start
        column = "risk" if endpoint == "pfs" else "risk_pfs"
        val = res.predictions[res.predictions.split == "val"]
        model, truth, reach = [], [], []
        for _, part in val.groupby("fold"):
            ids = part.patient_id.astype(str).to_numpy()
            t = patients.loc[ids, "pfs_time"].to_numpy()
            e = patients.loc[ids, "pfs_event"].to_numpy().astype(bool)
            model.append(harrell_c(t, e, part[column].to_numpy()))
            truth.append(harrell_c(t, e, gt.loc[ids, "true_pfs_risk"].to_numpy()))
            reach.append(harrell_c(t, e, ceiling.loc[ids].to_numpy()))
        row = {
            "endpoint": endpoint,
            "pfs_c_index": float(np.mean(model)),
            "pfs_c_index_sd": float(np.std(model)),
            "ground_truth_pfs_c_index": float(np.mean(truth)),
            "reachable_pfs_c_index": float(np.mean(reach)),
            "os_c_index": float(res.metrics.get("c_index_os", res.metrics["c_index"]))
            if endpoint != "pfs"
            else None,
            "seconds": round(seconds, 1),
        }
        rows.append(row)
        print(json.dumps(row))
    return rows


def section(rows: list[dict], cohort_path: Path) -> str:
    lines = [
        "## Progression on the synthetic cohort",
        "",
        "```bash",
        "python bench/progression_synthetic.py --write-docs",
        "```",
        "",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, no GPU; date {date.today()}. Cohort: "
        f"`{cohort_path}` (the demo's: 500 patients, seed 0, 20% missing per modality). Model: "
        "`configs/demo.yaml` with the endpoint changed, 5-fold CV. Harrell's C on "
        "(pfs_time, pfs_event) of the validation patients, mean over folds; the ground truth is "
        "the true progression log-hazard, the reachable truth its expected value given the "
        "modalities each patient has.",
        "",
        "| endpoint | PFS C-index (model) | ground truth | reachable truth | gap to truth | OS C-index | time |",
        "|:--|:--|:--|:--|:--|:--|:--|",
    ]
    for r in rows:
        os_c = "" if r["os_c_index"] is None else f"{r['os_c_index']:.3f}"
        lines.append(
            f"| {r['endpoint']} | {r['pfs_c_index']:.3f} ± {r['pfs_c_index_sd']:.3f} | "
            f"{r['ground_truth_pfs_c_index']:.3f} | {r['reachable_pfs_c_index']:.3f} | "
            f"{r['ground_truth_pfs_c_index'] - r['pfs_c_index']:.3f} | {os_c} | "
            f"{r['seconds'] / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohort", type=Path, default=ROOT / "runs/demo/cohort/cohort.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "runs/bench_progression_synthetic")
    parser.add_argument("--endpoints", nargs="+", default=["pfs", "multitask"])
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    if not args.cohort.exists():
        from multimodal.data.synth import generate_cohort

        generate_cohort(args.cohort.parent, n_patients=500, seed=0)
    rows = run(args.cohort, args.out, args.endpoints)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=2))
    if args.write_docs:
        shown = args.cohort.resolve()
        shown = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
        write_section(ROOT / "docs" / "benchmarks.md", section(rows, shown))


if __name__ == "__main__":
    main()
