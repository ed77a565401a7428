"""One default configuration against the classical baselines on all 14 TCGA cohorts.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_accuracy.py \
        [--cancers blca brca ...] [--data ../shared/data] [--out runs/bench_accuracy] \
        [--config configs/tcga.yaml] [--folds 0 1 2 3 4] [--write-docs docs/benchmarks.md]

Per cohort (the published PORPOISE/MCAT 5 folds, which all 14 cohorts have):

- ``ours``: ``configs/tcga.yaml`` unchanged, on every modality the cohort has among clinical,
  genomics, report and report_structured (no per-cancer setting);
- the classical baselines (clinical Cox, CoxNet, random survival forest) on the same training
  patients, fitted once and kept in ``OUT/<cancer>/baselines`` (``--refit-baselines`` refits);
- Harrell's C of each fold's validation patients, mean ± SD over the folds; the best baseline
  is the one with the highest mean (chosen on the reported folds, which favours the baselines);
- the paired bootstrap 95 % CI of (ours - best baseline): patients resampled within each fold,
  the same resample for both models;
- fold 0 alone (``fold-0`` columns): the fold no choice of the default config looked at;
- the wall time of ours and of the baselines.

Our run folders are kept in ``OUT/<cancer>/ours/runs/ours``; the members table (which members the
stacked second stage kept in each fold and their mean weights) is read from their ``model.json``.
Nothing here chooses anything on the validation folds.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import machine_line, write_section

from multimodal.config import load_config
from multimodal.evaluation.benchmark import run_benchmark
from multimodal.evaluation.compare import load_published_mcat
from multimodal.survival.metrics import harrell_c

ROOT = Path(__file__).resolve().parents[1]
CANCERS = (
    "blca", "brca", "gbmlgg", "luad", "ucec",  # the five with published MCAT figures
    "coadread", "hnsc", "kirc", "kirp", "lihc", "lusc", "paad", "skcm", "stad",
)  # fmt: skip
MAIN = CANCERS[:5]
BASELINES = ("clinical_cox", "coxnet", "rsf")
MODALITIES = ("clinical", "genomics", "report", "report_structured")
log = logging.getLogger("bench.tcga_accuracy")


def fold_c(pred: pd.DataFrame) -> pd.Series:
    """Harrell's C per fold of one model's validation predictions."""
    return pd.Series(
        {
            k: harrell_c(g.time.to_numpy(float), g.event.to_numpy(bool), g.risk.to_numpy(float))
            for k, g in pred.groupby("fold")
        }
    )


def paired_bootstrap(
    ours: pd.DataFrame, base: pd.DataFrame, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile CI of mean-over-folds C(ours) - C(base), patients resampled within each
    fold with the same indices for both models."""
    rng = np.random.default_rng(seed)
    per_fold = []
    for k, g in ours.groupby("fold"):
        b = base[base.fold == k].set_index("patient_id").loc[g.patient_id]
        per_fold.append(
            (
                g.time.to_numpy(float),
                g.event.to_numpy(bool),
                g.risk.to_numpy(float),
                b.risk.to_numpy(float),
            )
        )
    diffs = []
    for _ in range(n_boot):
        d = []
        for t, e, r1, r2 in per_fold:
            idx = rng.integers(0, len(t), len(t))
            if e[idx].any():
                d.append(harrell_c(t[idx], e[idx], r1[idx]) - harrell_c(t[idx], e[idx], r2[idx]))
        if d:
            diffs.append(np.mean(d))
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return float(lo), float(hi)


def members_of(run: Path) -> dict[str, object]:
    """Mean stacked weight of each member over the folds, and folds where the deep residual was
    kept, from the run folder's fold ``model.json`` and ``metrics.json``."""
    weights: dict[str, list[float]] = {}
    n = 0
    for meta_path in sorted((run / "model").glob("fold_*/model.json")):
        fit = json.loads(meta_path.read_text()).get("linear_fit") or {}
        n += 1
        for m, w in (fit.get("weights") or {}).items():
            weights.setdefault(m, []).append(float(np.mean(w)))
    metrics = json.loads((run / "metrics.json").read_text())
    deep = sum(int(f.get("best_epoch", 0) or 0) > 0 for f in metrics.get("folds", []))
    row: dict[str, object] = {m: float(np.mean(w)) for m, w in weights.items()}
    row["kept"] = {m: sum(x > 1e-6 for x in w) for m, w in weights.items()}
    row["deep residual kept"] = f"{deep} of {n}"
    return row


def run_cancer(args, cancer: str) -> dict[str, object]:
    from multimodal.data.cohort import Cohort

    data = args.data / "tcga" / cancer
    out = args.out / cancer
    cohort = Cohort.load(data)
    mods = [m for m in MODALITIES if m in cohort.modalities]
    base_dir = out / "baselines"
    # the baselines read the cohort with the config's clinical covariates, as ours do
    covariates = load_config(args.config, list(args.overrides)).data.cohort_options()
    stamp = base_dir / "covariates.json"
    read_with = json.loads(stamp.read_text()) if stamp.is_file() else {}
    t0 = time.perf_counter()
    if (
        args.refit_baselines
        or not (base_dir / "predictions.csv").is_file()
        or read_with != covariates
    ):
        run_benchmark(
            data,
            base_dir,
            config=args.config,
            overrides=list(args.overrides),  # with no variant, only the covariates are read
            variants={},
            baselines=BASELINES,
            n_boot=0,
            fold_indices=args.folds,
        )
        (base_dir / "seconds.txt").write_text(f"{time.perf_counter() - t0:.1f}\n")
        stamp.write_text(json.dumps(covariates) + "\n")
    base_seconds = float((base_dir / "seconds.txt").read_text())
    t0 = time.perf_counter()
    ours_dir = out / "ours"
    if args.reuse_ours and (ours_dir / "predictions.csv").is_file():
        ours_seconds = float((ours_dir / "seconds.txt").read_text())
    else:
        run_benchmark(
            data,
            ours_dir,
            config=args.config,
            variants={"ours": tuple(mods)},
            baselines=(),
            n_boot=0,
            fold_indices=args.folds,
            overrides=args.overrides,
        )
        ours_seconds = time.perf_counter() - t0
        (ours_dir / "seconds.txt").write_text(f"{ours_seconds:.1f}\n")
    frames = [pd.read_csv(base_dir / "predictions.csv"), pd.read_csv(ours_dir / "predictions.csv")]
    text = [m for m in mods if m.startswith("report")]
    if args.text_ablation and text:  # the same config without the report text
        plain_dir = out / "ours_no_text"
        if not (args.reuse_ours and (plain_dir / "predictions.csv").is_file()):
            run_benchmark(
                data,
                plain_dir,
                config=args.config,
                variants={"ours_no_text": tuple(m for m in mods if m not in text)},
                baselines=(),
                n_boot=0,
                fold_indices=args.folds,
                overrides=args.overrides,
            )
        frames.append(pd.read_csv(plain_dir / "predictions.csv"))
    preds = pd.concat(frames, ignore_index=True)
    preds["patient_id"] = preds["patient_id"].astype(str)
    row: dict[str, object] = {"cancer": cancer.upper(), "modalities": ", ".join(mods)}
    per_fold = {}
    for model in ("ours", *BASELINES):
        c = fold_c(preds[preds.model == model])
        per_fold[model] = c
        row[model] = float(c.mean())
        row[f"{model}_std"] = float(c.std(ddof=1)) if len(c) > 1 else float("nan")
    if (preds.model == "ours_no_text").any():
        plain = preds[preds.model == "ours_no_text"]
        row["ours_no_text"] = float(fold_c(plain).mean())
        lo, hi = paired_bootstrap(preds[preds.model == "ours"], plain, args.boot)
        row["text_gain_lo"], row["text_gain_hi"] = lo, hi
    best = max(BASELINES, key=lambda b: row[b])
    row["best_baseline"] = best
    row["diff"] = row["ours"] - row[best]
    lo, hi = paired_bootstrap(preds[preds.model == "ours"], preds[preds.model == best], args.boot)
    row["diff_lo"], row["diff_hi"] = lo, hi
    if 0 in per_fold["ours"].index:
        best0 = max(BASELINES, key=lambda b: per_fold[b].get(0, -1))
        row["fold0_ours"] = float(per_fold["ours"][0])
        row["fold0_best"] = float(per_fold[best0][0])
        row["fold0_best_name"] = best0
    row["ours_seconds"] = ours_seconds
    row["baseline_seconds"] = base_seconds
    row["members"] = members_of(ours_dir / "runs" / "ours")
    return row


def published_mcat(data: Path) -> dict[str, float]:
    path = data / "benchmarks" / "published_cindex_mcat_iccv2021.csv"
    if not path.is_file():
        return {}
    df = load_published_mcat(path)
    df = df[df.method.str.upper() == "MCAT"]
    return dict(zip(df.cancer, df.cindex_mean))


def markdown(rows: list[dict], mcat: dict[str, float], command: str, seconds: float) -> str:
    lines = [
        "## TCGA: one default config on all 14 cohorts (issue #16)",
        "",
        f"Command: `{command}`  ",
        machine_line(seconds),
        "",
        "Harrell's C on the validation patients of the published PORPOISE/MCAT 5 folds, mean ± SD "
        "over folds. *ours*: `configs/tcga.yaml` as shipped, every modality the cohort has. Best "
        "baseline: the baseline with the highest mean on these folds. Δ: ours − best baseline, "
        "with the paired bootstrap 95 % CI. Fold 0: the fold untouched by any choice.",
        "",
        "| cancer | modalities | ours | clinical_cox | coxnet | rsf | best baseline | Δ (95 % CI) "
        "| fold 0: ours / best | MCAT (published) | time ours / baselines |",
        "|:--|:--|--:|--:|--:|--:|:--|:--|:--|--:|:--|",
    ]

    def cell(r, m):
        txt = f"{r[m]:.3f} ± {r[f'{m}_std']:.3f}"
        return f"**{txt}**" if m == "ours" or m == r["best_baseline"] else txt

    for r in rows:
        f0 = f"{r['fold0_ours']:.3f} / {r['fold0_best']:.3f}" if "fold0_ours" in r else "—"
        m = mcat.get(r["cancer"])
        lines.append(
            f"| {r['cancer']} | {r['modalities']} | "
            + " | ".join(cell(r, k) for k in ("ours", *BASELINES))
            + f" | {r['best_baseline']} | {r['diff']:+.3f} ({r['diff_lo']:+.3f}, "
            f"{r['diff_hi']:+.3f}) | {f0} | {'—' if m is None else f'{m:.3f}'} | "
            f"{r['ours_seconds'] / 60:.1f} / {r['baseline_seconds'] / 60:.1f} min |"
        )
    ours = np.mean([r["ours"] for r in rows])
    best = np.mean([r[r["best_baseline"]] for r in rows])
    means = " | ".join(f"{np.mean([r[k] for r in rows]):.3f}" for k in ("ours", *BASELINES))
    lines.append(
        f"| **mean of {len(rows)}** | | {means} | {best:.3f} (per-cohort best) | "
        f"{ours - best:+.3f} | | | |"
    )
    worst = min(rows, key=lambda r: r["diff"])
    lines += [
        "",
        f"Mean over the cohorts: ours {ours:.3f}, per-cohort best baseline {best:.3f} "
        f"(Δ {ours - best:+.3f}); worst cohort {worst['cancer']} ({worst['diff']:+.3f}); "
        f"ours below the best baseline by more than 0.005 in "
        f"{sum(r['diff'] < -0.005 for r in rows)} of {len(rows)} cohorts.",
    ]
    ablated = [r for r in rows if "ours_no_text" in r]
    if ablated:
        lines += [
            "",
            "### What the report text adds (same config, same folds, text modalities removed)",
            "",
            "| cancer | ours | ours without text | gain (paired 95 % CI) |",
            "|:--|--:|--:|:--|",
        ]
        for r in ablated:
            lines.append(
                f"| {r['cancer']} | {r['ours']:.3f} | {r['ours_no_text']:.3f} | "
                f"{r['ours'] - r['ours_no_text']:+.3f} ({r['text_gain_lo']:+.3f}, "
                f"{r['text_gain_hi']:+.3f}) |"
            )
    main = [r for r in rows if r["cancer"].lower() in MAIN]
    if main:
        names = sorted({k for r in main for k in r["members"] if k not in ("kept",)})
        names = [n for n in names if n != "deep residual kept"] + ["deep residual kept"]
        lines += [
            "",
            "### Members the stacked second stage kept (five main cancers)",
            "",
            "Mean weight over the 5 folds (1 = as fitted alone, 0 = dropped), folds where the "
            "weight is > 0 in brackets; the clinical member always counts fully.",
            "",
            "| cancer | " + " | ".join(names) + " |",
            "|:--|" + "|".join(["--:"] * len(names)) + "|",
        ]
        for r in main:
            mem = r["members"]
            cells = []
            for n in names:
                v = mem.get(n)
                if n == "deep residual kept":
                    cells.append(str(v))
                elif v is None:
                    cells.append("—")
                else:
                    cells.append(f"{v:.2f} ({mem['kept'][n]})")
            lines.append(f"| {r['cancer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cancers", nargs="+", default=list(CANCERS))
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench_accuracy")
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "tcga.yaml")
    ap.add_argument("--folds", type=int, nargs="+", default=None)
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--refit-baselines", action="store_true")
    ap.add_argument("--reuse-ours", action="store_true", help="only re-score earlier runs")
    ap.add_argument(
        "--text-ablation",
        action="store_true",
        help="also run the config without report text where a cohort has it (text's own gain)",
    )
    ap.add_argument("--write-docs", type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    rows = []
    for cancer in args.cancers:
        log.info("=== %s", cancer)
        r = run_cancer(args, cancer)
        rows.append(r)
        log.info(
            "%s: ours %.3f, best baseline %s %.3f, diff %+.3f (%+.3f, %+.3f)",
            cancer, r["ours"], r["best_baseline"], r[r["best_baseline"]], r["diff"],
            r["diff_lo"], r["diff_hi"],
        )  # fmt: skip
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([{k: v for k, v in r.items() if k != "members"} for r in rows]).to_csv(
        args.out / "summary.csv", index=False
    )
    command = "OMP_NUM_THREADS=1 .venv/bin/python bench/tcga_accuracy.py " + " ".join(
        sys.argv[1:] if argv is None else argv
    )
    md = markdown(rows, published_mcat(args.data), command.strip(), time.perf_counter() - t0)
    print(md)
    if args.write_docs:
        write_section(args.write_docs, md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
