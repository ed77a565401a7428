"""Fusion models vs classical baselines vs published MCAT on TCGA (issue: real-data benchmark).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_benchmark.py \
        [--cancers blca brca gbmlgg luad ucec] [--data ../shared/data] [--out runs/bench] \
        [--config configs/tcga.yaml] [--write-docs docs/benchmarks.md]

For each cancer it calls :func:`multimodal.evaluation.benchmark.run_benchmark` (the code behind
``multimodal benchmark``) on the PORPOISE/MCAT 5-fold splits, then writes one table: mean ± std
C-index over the folds per model, the published MCAT C-index, and whether our best model beats the
best classical baseline. With ``--write-docs`` it rewrites the section named by ``--section`` of
docs/benchmarks.md (other sections are kept). ``--other`` runs the remaining TCGA cohorts in the
data folder with the same config (no published numbers exist for them).
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import sys
import time
from pathlib import Path

import pandas as pd
from _common import cpu_name, write_section

from multimodal.evaluation.benchmark import DEFAULT_VARIANTS, run_benchmark

ROOT = Path(__file__).resolve().parents[1]
MAIN = ("blca", "brca", "gbmlgg", "luad", "ucec")
BASELINES = ("clinical_cox", "coxnet", "rsf")
log = logging.getLogger("bench.tcga_benchmark")


def collect(summaries: dict[str, pd.DataFrame], primary: str | None = None) -> pd.DataFrame:
    """One row per cancer: each model's mean C-index, best of ours / baselines, published MCAT.

    ``primary`` (one of our models, fixed before the run) is the one compared with the best
    baseline; without it the best of ours is (which is a choice made on the reported folds)."""
    rows = []
    for cancer, s in summaries.items():
        row: dict[str, object] = {"cancer": cancer.upper()}
        for _, r in s.iterrows():
            if r["source"] == "published":
                if r["model"] == "published: MCAT":
                    row["MCAT (published)"] = r["c_index_mean"]
                continue
            row[r["model"]] = r["c_index_mean"]
            row[f"{r['model']}_std"] = r["c_index_std"]
        ours = {k: v for k, v in row.items() if str(k).startswith("mm_") and not k.endswith("_std")}
        base = {k: row[k] for k in BASELINES if k in row}
        if primary is not None and primary in ours:
            row["best_ours"] = primary
        else:
            row["best_ours"] = max(ours, key=ours.get) if ours else None
        row["best_baseline"] = max(base, key=base.get) if base else None
        row["ours_minus_best_baseline"] = (
            ours[row["best_ours"]] - base[row["best_baseline"]] if ours and base else None
        )
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, models: list[str], command: str, seconds: float, title: str):
    def cell(row, m):
        v = row.get(m)
        if v is None or pd.isna(v):
            return "—"
        sd = row.get(f"{m}_std")
        txt = f"{v:.3f} ± {sd:.3f}" if sd is not None and not pd.isna(sd) else f"{v:.3f}"
        return f"**{txt}**" if m == row.get("best_ours") or m == row.get("best_baseline") else txt

    has_mcat = "MCAT (published)" in table
    head = (
        ["cancer", *models]
        + (["MCAT (published)"] if has_mcat else [])
        + ["primary − best baseline"]
    )
    lines = [
        title,
        "",
        f"Command: `{command}`  ",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        f"date {dt.date.today().isoformat()}; wall time {seconds / 60:.1f} min.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join([":--"] * len(head)) + "|",
    ]
    for _, row in table.iterrows():
        cells = [row["cancer"], *[cell(row, m) for m in models]]
        if has_mcat:
            v = row.get("MCAT (published)")
            cells.append("—" if v is None or pd.isna(v) else f"{v:.3f}")
        d = row.get("ours_minus_best_baseline")
        cells.append("—" if d is None or pd.isna(d) else f"{d:+.3f}")
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    mean = table[[m for m in models if m in table]].mean()
    cells = ["**mean**", *[f"{mean[m]:.3f}" if m in mean else "—" for m in models]]
    if has_mcat:
        cells.append(f"{table['MCAT (published)'].mean():.3f}")
    cells.append(f"{table['ours_minus_best_baseline'].mean():+.3f}")
    lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cancers", nargs="+", default=list(MAIN))
    ap.add_argument("--other", action="store_true", help="the remaining TCGA cohorts instead")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "tcga.yaml")
    ap.add_argument("--baselines", default=",".join(BASELINES))
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--write-docs", type=Path)
    ap.add_argument("--section", default=None)
    ap.add_argument(
        "--collect",
        action="store_true",
        help="only read DIR/<cancer>/summary.csv of earlier runs and write the table",
    )
    ap.add_argument("--models", nargs="+", default=None, help="only these of our variants")
    ap.add_argument(
        "--primary",
        default="mm_clinical_genomics",
        help="our model compared with the best baseline (fixed in advance)",
    )
    ap.add_argument(
        "--merge",
        nargs=2,
        action="append",
        default=[],
        metavar=("DIR", "SUFFIX"),
        help="with --collect: add our models from another benchmark folder, names + SUFFIX",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cancers = args.cancers
    if args.other:
        tcga = args.data / "tcga"
        cancers = sorted(
            p.name for p in tcga.iterdir() if (p / "clinical.csv").is_file() and p.name not in MAIN
        )
    t0 = time.perf_counter()
    summaries = {}
    for cancer in cancers:
        if args.collect:
            frames = [pd.read_csv(args.out / cancer / "summary.csv")]
            for folder, suffix in args.merge:
                extra = pd.read_csv(Path(folder) / cancer / "summary.csv")
                extra = extra[extra.source == "ours"].copy()
                extra["model"] = extra["model"] + suffix
                frames.append(extra)
            summaries[cancer] = pd.concat(frames, ignore_index=True)
            continue
        log.info("=== %s", cancer)
        res = run_benchmark(
            args.data / "tcga" / cancer,
            args.out / cancer,
            config=args.config,
            variants={m: DEFAULT_VARIANTS[m] for m in args.models} if args.models else None,
            baselines=tuple(b for b in args.baselines.split(",") if b),
            overrides=args.overrides,
        )
        summaries[cancer] = res.summary
        print(res.summary.to_string(index=False), flush=True)
    table = collect(summaries, args.primary)
    table.to_csv(
        args.out / ("summary_other.csv" if args.other else "summary_main.csv"), index=False
    )
    models = [c for c in table.columns if str(c).startswith("mm_") and not c.endswith("_std")]
    models += [b for b in BASELINES if b in table]
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_benchmark.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    title = args.section or (
        "## TCGA: other cohorts, same default config"
        if args.other
        else "## TCGA: fusion vs classical baselines vs MCAT (PORPOISE/MCAT 5-fold)"
    )
    md = markdown(table, models, command.strip(), time.perf_counter() - t0, title)
    print(md)
    if args.write_docs:
        write_section(args.write_docs, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
