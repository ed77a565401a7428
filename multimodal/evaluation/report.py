"""Metrics of a run folder, recomputed from its predictions (``multimodal evaluate RUN_DIR``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from multimodal.evaluation.compare import mean_std
from multimodal.evaluation.fold_metrics import evaluate_fold
from multimodal.runfolder import RunFolder
from multimodal.survival.endpoints import get_endpoint

__all__ = ["evaluate_run", "run_metrics", "summarise_folds"]


def summarise_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over folds of each metric (population std, as the baselines
    and the published MCAT table, see :func:`multimodal.evaluation.compare.mean_std`)."""
    out: dict[str, Any] = {}
    keys = ["c_index", "uno_c", "ibs", "td_auc"]
    # per-endpoint / per-cause metrics of the progression endpoints (c_index_os, ibs_cif_death, ...)
    for f in per_fold:
        keys += [k for k in f if k.startswith(_ENDPOINT_METRICS) and k not in keys]
    for key in keys:
        if key == "c_index_ci":
            continue
        out[key], out[f"{key}_std"] = mean_std([f.get(key) for f in per_fold])
    return out


_ENDPOINT_METRICS = ("c_index_", "cr_c_index_", "uno_c_", "ibs_", "brier_")


def run_metrics(endpoint: str, per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's metrics from its folds' (written to ``metrics.json``): the summary over folds
    (:func:`summarise_folds`), ``c_index_<endpoint>`` for single-outcome endpoints (multi-output
    ones have theirs per outcome already) and the per-fold values under ``folds``."""
    metrics = summarise_folds(per_fold)
    if not get_endpoint(endpoint).multi_output:
        metrics[f"c_index_{endpoint}"] = metrics["c_index"]
    metrics["folds"] = per_fold
    return metrics


def evaluate_run(run_dir: str | Path, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Recompute per-fold validation metrics (bootstrap CI of the C-index) and update metrics.json."""
    folder = RunFolder(run_dir)
    preds = folder.read_predictions()
    metrics = folder.read_metrics()
    times = metrics.get("eval_times") or [
        float(c[5:]) for c in preds.columns if re.fullmatch(r"surv_[0-9.eE+-]+", c)
    ]
    old = {f["fold"]: f for f in metrics.get("folds", [])}
    per_fold = []
    endpoint = metrics.get("endpoint", "os")
    for k, part in preds.groupby("fold", sort=True):
        f = dict(old.get(int(k), {"fold": int(k)}))
        f.update(evaluate_fold(part, times, n_boot=n_boot, seed=seed + int(k), endpoint=endpoint))
        per_fold.append(f)
    metrics.update(run_metrics(endpoint, per_fold))
    folder.write_metrics(metrics)
    return metrics
