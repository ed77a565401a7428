"""Our fusion models against the classical baselines on the same folds of one cohort.

``multimodal benchmark --data ../shared/data/tcga/blca --out DIR`` (and :func:`run_benchmark`)
trains each model variant with :func:`multimodal.train` on the given folds (the published
PORPOISE/MCAT 5-fold splits by default), fits the classical baselines
(:mod:`multimodal.evaluation.baselines`) on exactly the same training patients, and scores every
model's validation predictions the same way:

- Harrell's C and Uno's C (truncated at the last evaluation time) recomputed here from each
  model's per-patient validation risks, so that no model is scored by a different routine;
- IBS on one time grid shared by all models (the run's reporting grid);
- a bootstrap CI of the mean-over-folds C-index (patients resampled within each fold).

Hyperparameters come from the config alone (fixed defaults); nothing here looks at the
validation folds to choose them.

Files written to ``DIR``: ``results.csv`` (model, fold, c_index, uno_c, ibs, n_train, n_val,
seconds), ``predictions.csv`` (validation risk per model, fold and patient), ``summary.csv`` and
``summary.md`` (mean ± std over folds, bootstrap CI, the published MCAT rows when the table is
found), and ``runs/<model>/`` (the run folders of our models).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.evaluation.baselines import BASELINE_MODELS, run_baselines_on_cohort
from multimodal.evaluation.compare import format_mean_std, load_published_mcat, mean_std
from multimodal.exceptions import ConfigError
from multimodal.shipped import shipped_dir
from multimodal.survival.metrics import harrell_c, uno_c

__all__ = [
    "DEFAULT_VARIANTS",
    "OPTIONAL_MODALITIES",
    "BenchmarkResult",
    "bootstrap_mean_c",
    "default_config_path",
    "run_benchmark",
    "variant_modalities",
]

log = logging.getLogger(__name__)

#: Our model variants: name -> modalities (a variant is skipped when the cohort lacks one, but
#: for the :data:`OPTIONAL_MODALITIES`). The text variant is what ``bench/tcga_accuracy.py``
#: reports as "ours": every modality of a TCGA folder.
DEFAULT_VARIANTS: dict[str, tuple[str, ...]] = {
    "mm_clinical": ("clinical",),
    "mm_clinical_genomics": ("clinical", "genomics"),
    "mm_clinical_genomics_text": ("clinical", "genomics", "report", "report_structured"),
}
#: Modalities a variant uses where the cohort has them (TCGA's structured reports cover four of
#: the 14 cohorts), instead of being skipped where it does not.
OPTIONAL_MODALITIES: tuple[str, ...] = ("report_structured",)

PUBLISHED_TABLE = Path("benchmarks") / "published_cindex_mcat_iccv2021.csv"


@dataclass
class BenchmarkResult:
    """What :func:`run_benchmark` wrote.

    Attributes
    ----------
    results : one row per (model, fold): ``model, fold, c_index, uno_c, ibs, n_train, n_val,
        seconds``.
    predictions : validation risks: ``model, fold, patient_id, time, event, risk``.
    summary : one row per model: mean/std of each metric over folds, ``c_index_ci_low``,
        ``c_index_ci_high``, ``source`` (``ours``, ``baseline`` or ``published``).
    out : the output folder.
    """

    results: pd.DataFrame
    predictions: pd.DataFrame
    summary: pd.DataFrame
    out: Path


def default_config_path() -> Path:
    """The shipped ``configs/tcga.yaml`` (the benchmark's default config; a wheel carries it)."""
    path = shipped_dir("configs") / "tcga.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no default benchmark config at {path} (installed without the configs/ folder); "
            "pass --config CONFIG"
        )
    return path


def bootstrap_mean_c(
    predictions: pd.DataFrame, n_boot: int = 200, seed: int = 0, alpha: float = 0.05
) -> tuple[float, float]:
    """Percentile CI of the mean-over-folds Harrell's C, resampling patients within each fold.

    ``predictions`` holds one model's validation rows: ``fold, time, event, risk``.
    """
    if n_boot <= 0 or predictions.empty:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    per_fold = [
        (g.time.to_numpy(float), g.event.to_numpy(bool), g.risk.to_numpy(float))
        for _, g in predictions.groupby("fold")
    ]
    stats = []
    for _ in range(n_boot):
        cs = []
        for t, e, r in per_fold:
            idx = rng.integers(0, len(t), len(t))
            if not e[idx].any():
                continue
            cs.append(harrell_c(t[idx], e[idx], r[idx]))
        if cs:
            stats.append(np.mean(cs))
    if not stats:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _uno(train: pd.DataFrame, val: pd.DataFrame, tau: float) -> float:
    try:
        return float(
            uno_c(
                train.time.to_numpy(float),
                train.event.to_numpy(bool),
                val.time.to_numpy(float),
                val.event.to_numpy(bool),
                val.risk.to_numpy(float),
                tau=tau,
            )
        )
    except Exception as exc:  # undefined on this fold (no events before tau, ...)
        log.warning("Uno's C not computed: %s", exc)
        return float("nan")


def variant_modalities(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """A variant's modalities on a cohort with ``available`` ones: ``wanted`` without the
    :data:`OPTIONAL_MODALITIES` the cohort lacks (the others it lacks skip the variant)."""
    return [m for m in wanted if m in available or m not in OPTIONAL_MODALITIES]


def _train_variant(
    name: str,
    modalities: Sequence[str],
    config: Any,
    cohort: Any,
    out: Path,
    split_overrides: list[str],
    extra: Sequence[str],
) -> tuple[pd.DataFrame, pd.DataFrame, list[float]]:
    from multimodal.training.trainer import train

    overrides = [*split_overrides, f"data.modalities=[{', '.join(modalities)}]", *extra]
    t0 = time.perf_counter()
    result = train(config, cohort=cohort, out=out / "runs" / name, overrides=overrides)
    seconds = time.perf_counter() - t0
    folds = result.metrics["folds"]
    rows = pd.DataFrame(
        {
            "model": name,
            "fold": [f["fold"] for f in folds],
            "ibs": [f.get("ibs") for f in folds],
            "n_train": [f.get("n_train") for f in folds],
            "n_val": [f.get("n_val") for f in folds],
            "seconds": seconds / max(len(folds), 1),
        }
    )
    return rows, result.predictions, [float(t) for t in result.metrics.get("eval_times", [])]


def run_benchmark(
    data: str | Path,
    out: str | Path,
    config: str | Path | dict | None = None,
    folds: str = "porpoise_mcat_5fold",
    fold_indices: Sequence[int] | None = None,
    variants: dict[str, Sequence[str]] | None = None,
    baselines: Sequence[str] = BASELINE_MODELS,
    overrides: Sequence[str] = (),
    n_boot: int = 200,
    published: str | Path | None = None,
) -> BenchmarkResult:
    """Train our variants and the baselines on the same folds of one cohort and score them alike.

    Parameters
    ----------
    data : cohort (TCGA cancer folder, manifest file or folder).
    out : output folder.
    config : our models' config (default ``configs/tcga.yaml``).
    folds : split name (``<data>/splits/<folds>/fold_<k>.csv``), a folder of fold files, or a
        number k for k stratified folds (seed 0) of a cohort without published splits.
    fold_indices : only these folds (e.g. ``[0]`` for a quick check).
    variants : model name -> modalities (default :data:`DEFAULT_VARIANTS`; variants needing a
        modality the cohort lacks are skipped with a log line; :data:`OPTIONAL_MODALITIES` are
        used where the cohort has them and left out where it does not).
    baselines : classical baselines (``clinical_cox``, ``coxnet``, ``rsf``); ``()`` for none.
    overrides : extra ``key=value`` config overrides for our models.
    n_boot : bootstrap resamples for the CI of the mean C-index (0 = none).
    published : the published MCAT C-index table; default: looked up beside ``data``
        (``<data>/../../benchmarks/published_cindex_mcat_iccv2021.csv``).
    """
    from multimodal.config import load_config
    from multimodal.data.cohort import Cohort

    data = Path(data)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = default_config_path() if config is None else config
    # the config's clinical covariates (data.clinical_*), for our models and the baselines alike
    cohort = Cohort.load(data, **load_config(config, list(overrides)).data.cohort_options())
    split = Path(str(folds))
    if str(folds).isdigit():  # k stratified folds (a cohort without published splits)
        all_folds = cohort.folds(k=int(folds), seed=0)
    elif split.is_dir():
        all_folds = cohort.folds(split_dir=split)
    else:
        all_folds = cohort.folds(name=folds)
    if fold_indices is not None:
        wanted = set(int(i) for i in fold_indices)
        bad = sorted(wanted - {f.index for f in all_folds})
        if bad:
            raise ConfigError(f"fold(s) {bad} do not exist (folds: 0..{len(all_folds) - 1})")
        all_folds = [f for f in all_folds if f.index in wanted]
    by_k = str(folds).isdigit()
    # our models must train on exactly the folds the baselines get
    by_k_overrides = [f"data.folds={folds}", "train.seed=0", "data.group_by=null"]
    split_overrides = [
        *(["data.split=null", *by_k_overrides] if by_k else [f"data.split={folds}"]),
        f"data.fold_indices=[{', '.join(str(f.index) for f in all_folds)}]",
    ]
    variants = dict(DEFAULT_VARIANTS if variants is None else variants)
    result_rows, pred_frames, times = [], [], None
    train_frames = []
    for name, wanted in variants.items():
        mods = variant_modalities(wanted, cohort.modalities)
        lacking = [m for m in mods if m not in cohort.modalities]
        if lacking:
            log.info("%s: skipped, the cohort has no %s", name, lacking)
            continue
        log.info("%s: training on %d fold(s) (%s)", name, len(all_folds), ", ".join(mods))
        rows, preds, grid = _train_variant(
            name, mods, config, cohort, out, split_overrides, overrides
        )
        times = times or grid
        result_rows.append(rows)
        keep = ["fold", "patient_id", "time", "event", "risk"]
        pred_frames.append(preds.loc[preds.split == "val", keep].assign(model=name))
        train_frames.append(preds.loc[preds.split == "train", keep].assign(model=name))
    if baselines:
        log.info("baselines: %s", ", ".join(baselines))
        t0 = time.perf_counter()
        eval_times = np.asarray(times, dtype=float) if times else None
        base, base_preds = run_baselines_on_cohort(
            cohort,
            all_folds,
            models=tuple(baselines),
            eval_times=eval_times,
            return_predictions=True,
        )
        base = base.assign(seconds=(time.perf_counter() - t0) / max(len(base), 1))
        result_rows.append(base[["model", "fold", "ibs", "n_train", "n_val", "seconds"]])
        pred_frames.append(base_preds[["model", "fold", "patient_id", "time", "event", "risk"]])
    if not result_rows:
        raise ConfigError("nothing to benchmark: no variant matches the cohort and no baselines")
    results = pd.concat(result_rows, ignore_index=True)
    predictions = pd.concat(pred_frames, ignore_index=True)
    predictions["patient_id"] = predictions["patient_id"].astype(str)
    results = _score(results, predictions, cohort, all_folds, times)
    summary = _summary(results, predictions, n_boot, cohort, data, published)
    cols = ["model", "fold", "c_index", "uno_c", "ibs", "n_train", "n_val", "seconds"]
    results = results[cols]
    results.to_csv(out / "results.csv", index=False)
    predictions[["model", "fold", "patient_id", "time", "event", "risk"]].to_csv(
        out / "predictions.csv", index=False
    )
    summary.to_csv(out / "summary.csv", index=False)
    (out / "summary.md").write_text(summary_markdown(summary, cohort_name(data)) + "\n")
    return BenchmarkResult(results, predictions, summary, out)


def cohort_name(data: Path) -> str:
    return Path(data).resolve().name.upper()


def _score(results, predictions, cohort, folds, times) -> pd.DataFrame:
    """Harrell's and Uno's C of every (model, fold) from the validation risks."""
    patients = cohort.patients
    tau = float(max(times)) if times else None
    by_fold = {f.index: f for f in folds}
    c, u = [], []
    for model, fold in zip(results.model, results.fold):
        val = predictions[(predictions.model == model) & (predictions.fold == fold)]
        c.append(
            harrell_c(val.time.to_numpy(float), val.event.to_numpy(bool), val.risk.to_numpy(float))
        )
        train_ids = [str(i) for i in by_fold[int(fold)].train_ids]
        train = patients.loc[train_ids, ["time", "event"]]
        u.append(_uno(train, val, tau) if tau is not None else float("nan"))
    return results.assign(c_index=c, uno_c=u)


def _summary(results, predictions, n_boot, cohort, data, published) -> pd.DataFrame:
    rows = []
    for model, g in results.groupby("model", sort=False):
        row: dict[str, Any] = {
            "model": model,
            "source": "baseline" if model in BASELINE_MODELS else "ours",
        }
        for m in ("c_index", "uno_c", "ibs"):
            row[f"{m}_mean"], row[f"{m}_std"] = mean_std(g[m].tolist())
        row["c_index_ci_low"], row["c_index_ci_high"] = bootstrap_mean_c(
            predictions[predictions.model == model], n_boot=n_boot
        )
        row["n_folds"] = len(g)
        rows.append(row)
    summary = pd.DataFrame(rows)
    pub = _published_rows(data, published)
    if pub is not None and not pub.empty:
        summary = pd.concat([summary, pub], ignore_index=True)
    return summary


def _published_rows(data: Path, published) -> pd.DataFrame | None:
    path = Path(published) if published else Path(data).resolve().parents[1] / PUBLISHED_TABLE
    if not path.is_file():
        return None
    table = load_published_mcat(path)
    mine = table[table.cancer == cohort_name(data)]
    if mine.empty:
        return None
    return pd.DataFrame(
        {
            "model": "published: " + mine.method.astype(str),
            "source": "published",
            "c_index_mean": mine.cindex_mean.to_numpy(float),
            "c_index_std": mine.cindex_std.to_numpy(float),
            "n_folds": 5,
        }
    )


def summary_markdown(summary: pd.DataFrame, title: str = "") -> str:
    """A Markdown table of a benchmark summary (C-index with its CI, Uno's C, IBS)."""

    def fmt(row, m):
        mean, std = row.get(f"{m}_mean"), row.get(f"{m}_std")
        if mean is None or not np.isfinite(mean):
            return ""
        return format_mean_std(mean, std if std is not None and np.isfinite(std) else 0.0)

    lines = [f"**{title}**", ""] if title else []
    lines += [
        "| model | C-index | 95% CI | Uno's C | IBS |",
        "|:--|:--|:--|:--|:--|",
    ]
    for _, row in summary.iterrows():
        lo, hi = row.get("c_index_ci_low"), row.get("c_index_ci_high")
        ci = f"{lo:.3f}–{hi:.3f}" if lo is not None and np.isfinite(lo) else ""
        lines.append(
            f"| {row['model']} | {fmt(row, 'c_index')} | {ci} | {fmt(row, 'uno_c')} | "
            f"{fmt(row, 'ibs')} |"
        )
    return "\n".join(lines)
