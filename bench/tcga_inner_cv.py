"""Compare candidate settings of the TCGA default config on training patients only.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_inner_cv.py \
        --candidate "stack=members.stack_penalty=auto" \
        [--candidate "NAME=KEY=VALUE;KEY=VALUE" ...] [--cancers blca ...] [--outer-fold 0] \
        [--inner-folds 5] [--out runs/tcga_inner_cv] [--baselines] \
        [--write-docs docs/benchmarks.md]

Per cohort, the *training* patients of one published fold (``--outer-fold``, default 0) are
written to a sub-cohort under ``OUT/<cancer>/cohort`` (every table filtered to them; nothing is
copied into the repository) and split into ``--inner-folds`` stratified folds. ``configs/tcga.yaml``
as shipped (``default``) and every candidate are trained and scored by Harrell's C on those inner
folds. The outer fold's validation patients are never read, so a choice made from this table
leaves that fold's reported figure untouched; the other published folds' validation patients
are among these training patients, which is why the TCGA table also reports fold 0 alone.
Finished runs are reused; each records its config file's hash and overrides (``candidate.json``),
and one trained under another config is refused (``--cached-only`` only warns). ``--baselines``
also scores the classical baselines (clinical Cox, CoxNet, RSF) on the same inner folds, so the
table shows where the default trails one on training patients too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd
from _common import machine_line, write_section
from tcga_accuracy import BASELINES, CANCERS, MODALITIES, fold_c

from multimodal.data.cohort import Cohort
from multimodal.evaluation.benchmark import run_benchmark

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("clinical.csv", "genomics.csv.gz", "reports.csv", "reports_structured.csv")
log = logging.getLogger("bench.tcga_inner_cv")


def sub_cohort(source: Path, target: Path, outer_fold: int) -> int:
    """Write the training patients of ``source``'s published fold ``outer_fold`` to ``target``
    (the TCGA tables filtered row-wise); returns their number."""
    split = source / "splits" / "porpoise_mcat_5fold" / f"fold_{outer_fold}.csv"
    folds = pd.read_csv(split, dtype={"patient_id": str})
    train = set(folds.loc[folds.split == "train", "patient_id"])
    if (target / "clinical.csv").is_file():
        return len(train)
    target.mkdir(parents=True, exist_ok=True)
    for name in TABLES:
        if (source / name).is_file():
            table = pd.read_csv(source / name, dtype={"patient_id": str}, low_memory=False)
            table[table.patient_id.isin(train)].to_csv(target / name, index=False)
    return len(train)


def check_stamp(out: Path, stamp: dict, cached_only: bool) -> None:
    """Refuse (or, tabulating only, warn about) a finished run of another config or overrides:
    the table would compare it as if it were this one."""
    path = out / "candidate.json"
    if not path.is_file():
        log.warning("%s has no candidate.json (trained before stamps): its config is unknown", out)
        return
    if json.loads(path.read_text()) != stamp:
        message = (
            f"{out} was trained with another config file or overrides than this command's "
            f"({path}); use another --out, or delete that folder to retrain it"
        )
        if not cached_only:
            raise SystemExit(message)
        log.warning(message)


def parse_candidate(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE;KEY=VALUE`` -> (NAME, [KEY=VALUE, ...])."""
    name, sep, rest = text.partition("=")
    if not sep or not rest:
        raise SystemExit(f"--candidate {text!r}: expected NAME=KEY=VALUE[;KEY=VALUE]")
    return name, [o.strip() for o in rest.split(";") if o.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cancers", nargs="+", default=list(CANCERS))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "tcga_inner_cv")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "tcga.yaml")
    ap.add_argument("--outer-fold", type=int, default=0)
    ap.add_argument("--inner-folds", type=int, default=5)
    ap.add_argument("--candidate", action="append", default=[], metavar="NAME=KEY=VALUE[;...]")
    ap.add_argument("--write-docs", type=Path)
    ap.add_argument(
        "--baselines",
        action="store_true",
        help="also score the classical baselines on the same inner folds (OUT/<cancer>/baselines)",
    )
    ap.add_argument(
        "--cached-only",
        action="store_true",
        help="train nothing: tabulate the runs already in OUT (a missing one shows as a dash)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    candidates = {"default": [], **dict(parse_candidate(c) for c in args.candidate)}
    t_all = time.perf_counter()
    config_sha = hashlib.sha256(args.config.read_bytes()).hexdigest()
    rows = []
    for cancer in args.cancers:
        source = args.data / "tcga" / cancer
        cohort_dir = args.out / cancer / "cohort"
        n = sub_cohort(source, cohort_dir, args.outer_fold)
        mods = [m for m in MODALITIES if m in Cohort.load(cohort_dir).modalities]
        for name, overrides in candidates.items():
            out = args.out / cancer / name
            t0 = time.perf_counter()
            stamp = {"config_sha256": config_sha, "overrides": overrides}
            if (out / "predictions.csv").is_file():
                check_stamp(out, stamp, args.cached_only)
            else:
                if args.cached_only:
                    rows.append({"cancer": cancer.upper(), "patients": n, "candidate": name})
                    continue
                run_benchmark(
                    cohort_dir,
                    out,
                    config=args.config,
                    folds=str(args.inner_folds),
                    variants={"ours": tuple(mods)},
                    baselines=(),
                    n_boot=0,
                    overrides=overrides,
                )
                (out / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
                (out / "candidate.json").write_text(json.dumps(stamp, indent=1) + "\n")
            c = fold_c(pd.read_csv(out / "predictions.csv"))
            rows.append(
                {
                    "cancer": cancer.upper(),
                    "patients": n,
                    "candidate": name,
                    "c": float(c.mean()),
                    "seconds": float((out / "seconds.txt").read_text())
                    if (out / "seconds.txt").is_file()
                    else float("nan"),
                }
            )
            log.info("%s %s: inner-CV C %.4f", cancer, name, c.mean())
        if args.baselines:
            rows.extend(inner_baselines(cohort_dir, args.out / cancer / "baselines", args))
            for row in rows[-len(BASELINES) :]:
                row.update(cancer=cancer.upper(), patients=n)
    frame = pd.DataFrame(rows).reindex(columns=["cancer", "patients", "candidate", "c", "seconds"])
    table = frame.pivot(index=["cancer", "patients"], columns="candidate", values="c")
    baselines = list(BASELINES) if args.baselines else []
    table = table.reindex(columns=list(candidates) + baselines)
    for name in list(candidates)[1:]:
        table[f"{name} - default"] = table[name] - table["default"]
    if baselines:
        table["default - best baseline"] = table["default"] - table[baselines].max(axis=1)
    # a C column's mean only over every cohort (else cohorts differ between columns); a
    # difference column's over the cohorts it has
    mean = table.mean().where(table.notna().all() | table.columns.str.contains(" - "))
    mean = mean.rename(("mean", ""))
    shown = pd.concat([table, mean.to_frame().T])
    shown.index = [f"{c}" if p == "" else f"{c} (n={p})" for c, p in shown.index]
    text = "\n".join(
        [
            "| cohort | " + " | ".join(shown.columns) + " |",
            "|:--|" + "--:|" * len(shown.columns),
            *(
                f"| {name} | "
                + " | ".join(
                    "—" if pd.isna(v) else f"{v:+.4f}" if " - " in c else f"{v:.4f}"
                    for c, v in row.items()
                )
                + " |"
                for name, row in shown.iterrows()
            ),
        ]
    )
    wins = {
        name: (int((d > 0).sum()), int((d < 0).sum()), int(d.notna().sum()))
        for name in list(candidates)[1:]
        for d in [table[f"{name} - default"]]
    }
    lines = [
        "## TCGA: candidate settings compared on training patients only (inner CV)",
        "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_inner_cv.py "
        + " ".join(f'--candidate "{c}"' for c in args.candidate)
        + f" --outer-fold {args.outer_fold}"
        + (" --baselines" if args.baselines else "")
        + "`  ",
        machine_line(time.perf_counter() - t_all)
        + f" Training time of the runs in the table: {frame.seconds.sum() / 60:.1f} min.",
        "",
        f"Harrell's C, mean over {args.inner_folds} stratified folds of the training patients of "
        f"published fold {args.outer_fold} (its validation patients never read). Candidates: "
        + "; ".join(
            f"`{k}` = {', '.join(v) or 'configs/tcga.yaml as shipped'}"
            for k, v in candidates.items()
        ),
        "",
        text,
        "",
        "Cohorts where the candidate is above / below the default: "
        + ", ".join(f"`{k}` {up} / {down} of {n}" for k, (up, down, n) in wins.items())
        + ". A dash: not run; the mean of a difference is over the cohorts it has."
        + (
            f" Baselines ({', '.join(baselines)}) on the same inner folds; the default is above "
            "the best of them in "
            f"{int((table['default - best baseline'] > 0).sum())} of "
            f"{int(table['default - best baseline'].notna().sum())} cohorts."
            if baselines
            else ""
        ),
        "",
    ]
    print("\n".join(lines))
    if args.write_docs:
        write_section(args.write_docs, "\n".join(lines))
    return 0


def inner_baselines(cohort_dir: Path, out: Path, args) -> list[dict]:
    """The classical baselines on the inner folds of ``cohort_dir`` (reused when finished): one
    row per baseline with its mean C over the folds."""
    t0 = time.perf_counter()
    if not (out / "predictions.csv").is_file():
        run_benchmark(
            cohort_dir,
            out,
            config=args.config,
            folds=str(args.inner_folds),
            variants={},
            baselines=BASELINES,
            n_boot=0,
        )
        (out / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
    pred = pd.read_csv(out / "predictions.csv")
    seconds = float((out / "seconds.txt").read_text()) if (out / "seconds.txt").is_file() else 0.0
    return [
        {
            "candidate": name,
            "c": float(fold_c(pred[pred.model == name]).mean()),
            "seconds": seconds / len(BASELINES),
        }
        for name in BASELINES
    ]


if __name__ == "__main__":
    sys.exit(main())
