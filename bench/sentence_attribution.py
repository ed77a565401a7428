"""Do sentence attributions point at content? How often the top-ranked report sentences are the
ones the synthetic generator wrote a finding into (grade, margin, lymphovascular invasion, nodes).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \\
        .venv/bin/python bench/sentence_attribution.py [--out runs/bench_sentences] [--seed 0]
    .venv/bin/python bench/sentence_attribution.py --run runs/demo/fusion   # reuse a trained run

Two models, both trained with 5-fold CV on the demo's cohort (``multimodal synth``: 500 patients,
seed ``--seed``, 20 % missing per modality):

- ``demo``: ``configs/demo.yaml`` as ``multimodal demo`` trains it (linear Cox terms on the clinical
  covariates, genomics, the pooled report embedding and frozen CT embeddings, plus the deep fusion
  residual); the report is one of four risk components (a model of the report alone reaches a
  C-index of about 0.56, docs/benchmarks.md). ``--run`` reuses such a run instead of training one.
- ``report``: the same config's linear members on the clinical covariates and the report only, no
  deep residual, with the outcomes redrawn from the report's findings alone (exponential times,
  hazard ``exp(risk_text)`` standardised, every death observed): a report term that has learned
  the findings.

The sentences are explained (``model.explain(cohort, methods=["text"])``, averaged over the fold
models) on a held-out synthetic cohort drawn from the same generator with seed ``--seed + 1000``
(``--n-eval`` patients no fold model saw). The generator records every sentence's role
(``report_sentences.csv``); a sentence is *signal-bearing* when it states one of the four findings.

For every held-out patient whose report has at least one signal sentence, sentences are ranked by
``|attribution|`` (ties share the places they straddle, as a random tie-break would on average):

- ``top-1``: the share of patients whose top sentence is signal-bearing;
- ``precision@3``: the mean share of signal sentences among each patient's top 3;
- ``chance``: the mean share of signal sentences in a report (both figures under a random ranking);
- ``filler share``: the mean share of a patient's total ``|attribution|`` that falls on sentences
  without a finding (boilerplate and addenda).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from _common import cpu_name

ROOT = Path(__file__).resolve().parents[1]
#: The demo's cohort settings (``multimodal demo``).
DEMO_COHORT = {"n_patients": 500, "missing_rate": 0.2, "image_size": 64}
#: The demo run's training settings, without bootstrap CIs (not needed here).
OVERRIDES = {
    "demo": ["eval.bootstrap=0", "train.progress=false"],
    "report": [
        "eval.bootstrap=0",
        "train.progress=false",
        "data.modalities=[clinical,report]",
        "members.linear=[report]",
        "members.deep=false",
    ],
}


def precision_at(attribution: np.ndarray, signal: np.ndarray, k: int) -> float:
    """Share of signal sentences among the top ``k`` by ``|attribution|``; sentences tied at the
    cut-off share the remaining places (the expected value under a random tie-break)."""
    a = np.abs(np.asarray(attribution, float))
    signal = np.asarray(signal, bool)
    k = min(k, len(a))
    cut = np.sort(a)[::-1][k - 1]
    above, tied = a > cut, a == cut
    left = k - int(above.sum())
    hits = signal[above].sum() + left * signal[tied].mean()
    return float(hits / k)


def hit_rates(spans: pd.DataFrame, written: pd.DataFrame) -> dict[str, float]:
    """The figures of the module docstring from ``text_spans`` and ``report_sentences.csv``."""
    from multimodal.data.synth_text import signal_spans

    by_patient = {p: list(zip(g["sentence"], g["role"])) for p, g in written.groupby("patient_id")}
    rows = []
    for pid, g in spans.groupby("patient_id"):
        signal = signal_spans(g["sentence"], by_patient.get(str(pid), []))
        if not signal.any():
            continue
        a = g["attribution"].to_numpy(float)
        total = np.abs(a).sum()
        rows.append(
            {
                "top1": precision_at(a, signal, 1),
                "p3": precision_at(a, signal, 3),
                "chance": signal.mean(),
                "filler_share": np.abs(a[~signal]).sum() / total if total > 0 else np.nan,
            }
        )
    table = pd.DataFrame(rows)
    return {"patients": len(table), **table.mean().to_dict()}


def cohort(folder: Path, seed: int, n_patients: int, with_images: bool = True) -> Path:
    """A synthetic cohort in ``folder`` (written when absent); its manifest."""
    from multimodal.data.synth import generate_cohort

    manifest = folder / "cohort.yaml"
    if not (manifest.is_file() and (folder / "report_sentences.csv").is_file()):
        settings = {**DEMO_COHORT, "n_patients": n_patients, "with_images": with_images}
        generate_cohort(folder, seed=seed, **settings)
    return manifest


def report_driven(folder: Path, seed: int) -> Path:
    """The demo's cohort without images, outcomes redrawn from the report's findings only."""
    manifest = cohort(folder, seed, DEMO_COHORT["n_patients"], with_images=False)
    truth = pd.read_csv(folder / "ground_truth.csv", dtype={"patient_id": str})
    z = truth["risk_text"].to_numpy()
    z = (z - z.mean()) / z.std()
    patients = pd.read_csv(folder / "patients.csv", dtype={"patient_id": str})
    rng = np.random.default_rng(seed)
    patients["time"] = np.round(rng.exponential(24.0 * np.exp(-z)), 2) + 0.01
    patients["event"] = 1
    patients.to_csv(folder / "patients.csv", index=False)
    return manifest


def trained(setting: str, out: Path, seed: int) -> Path:
    """The run folder of ``setting`` (trained when absent)."""
    import multimodal

    run_dir = out / setting
    if (run_dir / "metrics.json").is_file():
        return run_dir
    if setting == "demo":
        manifest = cohort(out / "cohort", seed, DEMO_COHORT["n_patients"])
    else:
        manifest = report_driven(out / "cohort_report_outcomes", seed)
    multimodal.train(
        ROOT / "configs" / "demo.yaml",
        cohort=multimodal.Cohort.load(manifest),
        out=run_dir,
        overrides=OVERRIDES[setting],
    )
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_sentences")
    parser.add_argument("--seed", type=int, default=0, help="training cohort's seed")
    parser.add_argument("--n-eval", type=int, default=300, help="held-out patients")
    parser.add_argument("--run", type=Path, help="a trained demo run to reuse (no training)")
    parser.add_argument("--settings", nargs="+", default=["demo", "report"], choices=OVERRIDES)
    args = parser.parse_args()

    import multimodal

    held_out = cohort(args.out / f"heldout_seed{args.seed + 1000}", args.seed + 1000, args.n_eval)
    held = multimodal.Cohort.load(held_out)
    written = pd.read_csv(held_out.parent / "report_sentences.csv", dtype={"patient_id": str})
    rows = []
    for setting in args.settings:
        t0 = time.perf_counter()
        run_dir = (
            args.run if (args.run and setting == "demo") else trained(setting, args.out, args.seed)
        )
        t1 = time.perf_counter()
        ex = multimodal.load_run(run_dir).explain(held, methods=["text"])
        t2 = time.perf_counter()
        figures = hit_rates(ex.text_spans, written)
        print(f"{setting}: run {run_dir} (training {t1 - t0:.0f} s), explain {t2 - t1:.1f} s")
        rows.append((setting, figures))

    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    print("command: " + " ".join(["python", *map(shlex.quote, sys.argv)]))
    print(
        f"machine: {cpu_name()}, {os.cpu_count()} cores, {platform.system()}; "
        f"OMP_NUM_THREADS={threads}; date {date.today()}; held-out cohort {held_out}"
    )
    print(
        "| model | patients | top-1 signal | precision@3 | chance | filler share of abs(attribution) |"
    )
    print("|---|---|---|---|---|---|")
    for setting, f in rows:
        print(
            f"| {setting} | {f['patients']} | {f['top1']:.3f} | {f['p3']:.3f} | {f['chance']:.3f} "
            f"| {f['filler_share']:.3f} |"
        )


if __name__ == "__main__":
    main()
