"""Progression models on TCGA with the PORPOISE/MCAT 5-fold splits: OS, PFI and progression.

Usage::

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python bench/progression_tcga.py
        [--cancers BLCA LUAD BRCA] [--models os pfs multitask competing multistate]
        [--data ../shared/data] [--runs runs/bench_progression] [--write-docs docs/benchmarks.md]
        [--set train.epochs=50 ...]

Deep models (clinical + genomics, ``configs/tcga.yaml`` unchanged apart from the endpoint, the
modalities and ``eval.bootstrap=0``): single-task OS, single-task PFI, multi-task OS + PFI,
competing risks (cause-specific Cox heads) and illness-death. Classical baselines
(:mod:`multimodal.evaluation.progression_baselines`): clinical Cox for OS and PFI, cause-specific
clinical Cox for progression, and the Aalen-Johansen marginal CIF. Every C-index is computed here
from the validation rows of each run's ``predictions.csv`` against the cohort's labels: OS, the
CDR PFI as given, and the first event (progression vs death without progression,
:func:`multimodal.survival.competing.first_event`). Run folders are reused when present (training
resumes), so an interrupted benchmark continues where it stopped.

Rewrites the section "## Progression (TCGA, PORPOISE/MCAT 5-fold)" of docs/benchmarks.md.
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

import numpy as np
import pandas as pd
from _common import write_section

import multimodal
from multimodal.evaluation.compare import format_mean_std, mean_std
from multimodal.evaluation.progression_baselines import run_progression_baselines
from multimodal.runfolder import RunFolder
from multimodal.survival.competing import cause_specific_c_index, first_event
from multimodal.survival.metrics import harrell_c

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Progression (TCGA, PORPOISE/MCAT 5-fold)"
CANCERS = ("BLCA", "LUAD", "BRCA")
DEEP = ("os", "pfs", "multitask", "competing", "multistate")
SPLIT = "porpoise_mcat_5fold"
#: model -> (risk column for OS, for PFI, for progression) in predictions.csv
RISK_COLUMNS = {
    "os": ("risk", None, None),
    "pfs": (None, "risk", None),
    "multitask": ("risk_os", "risk_pfs", None),
    "competing": (None, "risk_pfs", "risk_progression"),
    "multistate": ("risk_os", "risk_pfs", "risk_progression"),
}
METRICS = ("c_index_os", "c_index_pfi", "c_index_progression", "ibs_cif_progression")

log = logging.getLogger("bench.progression_tcga")


def eval_times(patients: pd.DataFrame, n: int = 10) -> list[float]:
    """One reporting grid for every model of a cancer: quantiles of the PFI event times."""
    ev = patients.loc[patients.pfs_event.astype(bool), "pfs_time"].to_numpy(float)
    return [float(round(t, 4)) for t in np.unique(np.quantile(ev, np.linspace(0.1, 0.9, n)))]


def deep_fold_metrics(run_dir: Path, model: str, patients: pd.DataFrame) -> pd.DataFrame:
    """Per-fold C-indices of one run against the cohort's OS, PFI and first-event labels."""
    run = RunFolder(run_dir)
    preds = run.read_predictions()
    folds = {f["fold"]: f for f in run.read_metrics()["folds"]}
    os_col, pfi_col, prog_col = RISK_COLUMNS[model]
    rows = []
    for k, part in preds[preds.split == "val"].groupby("fold"):
        p = patients.loc[part.patient_id]
        first_t, etype = first_event(p.time, p.event, p.pfs_time, p.pfs_event)
        row = {"model": model, "fold": int(k)}
        if os_col:
            row["c_index_os"] = harrell_c(p.time, p.event.astype(bool), part[os_col])
        if pfi_col:
            row["c_index_pfi"] = harrell_c(p.pfs_time, p.pfs_event.astype(bool), part[pfi_col])
        if prog_col:
            row["c_index_progression"] = cause_specific_c_index(first_t, etype, part[prog_col], 1)
            row["ibs_cif_progression"] = folds[int(k)].get("ibs_cif_progression")
        rows.append(row)
    return pd.DataFrame(rows)


def run_cancer(args, cancer: str) -> pd.DataFrame:
    cohort = multimodal.Cohort.load(args.data / "tcga" / cancer.lower())
    patients = cohort.patients
    times = eval_times(patients)
    overrides = [
        "data.modalities=[clinical, genomics]",
        f"data.split={SPLIT}",
        "eval.bootstrap=0",
        f"eval.times={times}",
        "train.progress=false",
        *args.set,
    ]
    results = []
    for model in args.models:
        out = args.runs / cancer.lower() / model
        start = time.perf_counter()
        multimodal.train(
            ROOT / "configs" / "tcga.yaml",
            cohort=cohort,
            out=out,
            overrides=[*overrides, f"endpoint={model}"],
        )
        log.info("%s %s: %.0f s", cancer, model, time.perf_counter() - start)
        results.append(deep_fold_metrics(out, model, patients))
    clinical = cohort.sources["clinical"]
    folds = cohort.folds(name=SPLIT)
    base = run_progression_baselines(
        clinical.table.reindex(patients.index),
        patients.time,
        patients.event,
        patients.pfs_time,
        patients.pfs_event,
        folds,
        eval_times=times,
        numeric=list(clinical.numeric),
        categorical=list(clinical.categorical),
    ).rename(columns={"c_index_pfs": "c_index_pfi"})
    results.append(base)
    return pd.concat(results, ignore_index=True).assign(cancer=cancer.upper())


def markdown_section(results: pd.DataFrame, command: str, seconds: float) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
        f"shared with other jobs; Python {platform.python_version()}; date "
        f"{dt.date.today().isoformat()}; wall time {seconds / 60:.0f} min.",
        "",
        "Clinical (age, sex, stage) + genomics (PORPOISE table), `configs/tcga.yaml` as it is "
        "(attention-gated fusion, linear clinical path with warm start, early stopping on 15% of "
        "each training fold, refit); only the endpoint changes. Harrell's C on the 5 validation "
        "folds (mean ± population sd). OS = overall survival; PFI = TCGA-CDR progression-free "
        "interval (`cdr_pfi_*`, as given); progression = cause-specific C of the first event "
        "being a progression (death without progression as the competing event); CIF IBS = IPCW "
        "integrated Brier score of the progression CIF (lower is better) at quantiles of the PFI "
        "event times inside each fold's follow-up. `competing` and `multistate` rank PFI by their "
        "restricted mean event-free time; `aalen_johansen` is the marginal CIF (C = 0.5 by "
        "construction), the reference for the CIF Brier score.",
        "",
        "| cancer | model | OS C | PFI C | progression C | progression CIF IBS |",
        "|:--|:--|:--|:--|:--|:--|",
    ]
    for (cancer, model), part in results.groupby(["cancer", "model"], sort=False):
        cells = []
        for m in METRICS:
            mean, sd = mean_std(part[m].tolist()) if m in part else (None, None)
            cells.append(format_mean_std(mean, sd) if mean is not None else "")
        lines.append(f"| {cancer} | {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cancers", nargs="+", default=list(CANCERS))
    parser.add_argument("--models", nargs="+", default=list(DEEP), choices=DEEP)
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "bench_progression")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--write-docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--out-csv", type=Path, default=None, help="also save the per-fold table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    results = pd.concat([run_cancer(args, c) for c in args.cancers], ignore_index=True)
    if args.out_csv:
        results.to_csv(args.out_csv, index=False)
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/progression_tcga.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    section = markdown_section(results, command.strip(), time.perf_counter() - start)
    if args.write_docs:
        write_section(args.write_docs, section)
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
