"""Classical baselines on TCGA with the PORPOISE/MCAT 5-fold splits, next to the published MCAT table.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/baselines_tcga.py [--cancers BLCA BRCA ...]
        [--data ../shared/data] [--write-docs docs/benchmarks.md] [--out-csv FILE]

Runs ``clinical_cox``, ``coxnet`` and ``rsf`` (multimodal.evaluation.baselines) on each cancer's
5 folds and rewrites the section "## Classical baselines on TCGA (PORPOISE/MCAT 5-fold)" of
docs/benchmarks.md (other sections are kept).
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
from _common import write_section

from multimodal.evaluation.baselines import BASELINE_MODELS, BaselineOptions, run_baselines
from multimodal.evaluation.compare import format_mean_std, load_published_mcat, summarize_folds

ROOT = Path(__file__).resolve().parents[1]
SECTION = "## Classical baselines on TCGA (PORPOISE/MCAT 5-fold)"
CANCERS = ("BLCA", "BRCA", "GBMLGG", "LUAD", "UCEC")
CLINICAL = ["age", "sex", "stage"]

log = logging.getLogger("bench.baselines_tcga")


def load_cancer(data: Path, cancer: str):
    """Clinical covariates, genomics, time, event and the 5 folds of one cancer (read from CSVs).

    The CSV reader keeps the benchmark independent of the Cohort class; it converts the labels once
    here (``event`` column: 1 = death).
    """
    folder = data / "tcga" / cancer.lower()
    clin = pd.read_csv(folder / "clinical.csv", dtype={"stage": "string"}).set_index("patient_id")
    gen = pd.read_csv(folder / "genomics.csv.gz").set_index("patient_id").reindex(clin.index)
    folds = []
    for k in range(5):
        f = pd.read_csv(folder / "splits" / "porpoise_mcat_5fold" / f"fold_{k}.csv")
        folds.append(
            (f.patient_id[f.split == "train"].tolist(), f.patient_id[f.split == "val"].tolist())
        )
    x = clin[CLINICAL].copy()
    return x, gen, clin["survival_months"].to_numpy(float), clin["event"].to_numpy(int) == 1, folds


def markdown_section(
    summary: pd.DataFrame, published: pd.DataFrame, command: str, seconds: float
) -> str:
    lines = [
        SECTION,
        "",
        f"Command: `{command}`  ",
        f"Machine: {os.cpu_count()}-core CPU ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}; date {dt.date.today().isoformat()}; "
        f"wall time {seconds / 60:.1f} min.",
        "",
        "Overall survival, the 5 PORPOISE/MCAT validation folds (`splits/porpoise_mcat_5fold`), "
        "mean ± std over folds (population std, as the MCAT table). Published numbers: MCAT ICCV 2021 "
        "(`benchmarks/published_cindex_mcat_iccv2021.csv`). Baselines: `clinical_cox` = ridge Cox on "
        "age, sex, stage (one-hot, missing stage its own level; GBMLGG has no stage); `coxnet` = "
        "elastic-net Cox on clinical (unpenalised) + top-500-variance genomic features, penalty by "
        "3-fold inner CV on the training fold; `rsf` = random survival forest (200 trees, min leaf 15) "
        "on clinical + top-100-variance genomic features. All fitting on the training fold only.",
        "",
        "The published MCAT models use WSI and/or genomics only (no clinical covariates), and the "
        "clinical stage here comes from TCGA-CDR; read the comparison as 'how strong are the "
        "clinical covariates on these folds', not as a like-for-like model comparison.",
        "",
        "### Harrell's C-index",
        "",
        "| cancer | clinical_cox | coxnet | rsf | MCAT (published) | best published (method) |",
        "|:--|:--|:--|:--|:--|:--|",
    ]
    for cancer in summary.index.get_level_values("cancer").unique():
        cells = [
            format_mean_std(*summary.loc[(cancer, m), ["c_index_mean", "c_index_std"]])
            if (cancer, m) in summary.index
            else "n/a"
            for m in BASELINE_MODELS
        ]
        pub = published[published.cancer == cancer]
        mcat = pub[pub.method == "MCAT"].iloc[0]
        best = pub.loc[pub.cindex_mean.idxmax()]
        cells.append(format_mean_std(mcat.cindex_mean, mcat.cindex_std))
        cells.append(f"{format_mean_std(best.cindex_mean, best.cindex_std)} ({best.method})")
        lines.append(f"| {cancer} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Uno's C (truncated at the last IBS time) and integrated Brier score",
        "",
        "IBS over 10 times from the 10th to the 80th percentile of each validation fold's times "
        "(below the largest training time); lower is better. Not reported by MCAT.",
        "",
        "| cancer | model | Uno's C | IBS |",
        "|:--|:--|:--|:--|",
    ]
    for (cancer, model), row in summary.iterrows():
        lines.append(
            f"| {cancer} | {model} | {format_mean_std(row.uno_c_mean, row.uno_c_std)} | "
            f"{format_mean_std(row.ibs_mean, row.ibs_std)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--cancers", nargs="+", default=list(CANCERS))
    parser.add_argument("--models", nargs="+", default=list(BASELINE_MODELS))
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--write-docs", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--out-csv", type=Path, default=None, help="also save the per-fold table")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    start = time.perf_counter()
    per_fold = []
    for cancer in args.cancers:
        x, gen, t, e, folds = load_cancer(args.data, cancer)
        res = run_baselines(
            x,
            gen,
            t,
            e,
            folds,
            models=args.models,
            numeric=["age"],
            categorical=["sex", "stage"],
            options=BaselineOptions(n_jobs=args.n_jobs),
        )
        per_fold.append(res.assign(cancer=cancer.upper()))
        log.info("%s done after %.0f s", cancer, time.perf_counter() - start)
    results = pd.concat(per_fold, ignore_index=True)
    if args.out_csv:
        results.to_csv(args.out_csv, index=False)
    summary = summarize_folds(results, by=("cancer", "model"))
    published = load_published_mcat(args.data / "benchmarks" / "published_cindex_mcat_iccv2021.csv")
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/baselines_tcga.py " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    section = markdown_section(summary, published, command.strip(), time.perf_counter() - start)
    if args.write_docs:
        write_section(args.write_docs, section)
    sys.stdout.write(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
