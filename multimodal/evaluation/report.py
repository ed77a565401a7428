"""Metrics of a run folder, recomputed from its predictions (``multimodal evaluate RUN_DIR``)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from multimodal.exceptions import RunFolderError

__all__ = ["evaluate_run", "summarise_folds"]


def summarise_folds(per_fold: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and standard deviation over folds of each metric (population std, as the baselines
    and the published MCAT table, see :func:`multimodal.evaluation.compare.mean_std`)."""
    from multimodal.evaluation.compare import mean_std

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


_ENDPOINT_METRICS = ("c_index_", "cr_c_index_", "uno_c_", "ibs_")


def evaluate_run(run_dir: str | Path, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Recompute per-fold validation metrics (bootstrap CI of the C-index) and update metrics.json."""
    from multimodal.training.fold import evaluate_fold

    run_dir = Path(run_dir)
    pred_path, metrics_path = run_dir / "predictions.csv", run_dir / "metrics.json"
    for p in (pred_path, metrics_path):
        if not p.is_file():
            raise RunFolderError(f"{p} is missing: is {run_dir} a finished run folder?")
    try:
        preds = pd.read_csv(pred_path, dtype={"patient_id": str})
        metrics = json.loads(metrics_path.read_text())
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"cannot read {run_dir}: {exc}") from None
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
    metrics.update(summarise_folds(per_fold))
    metrics["folds"] = per_fold
    if endpoint in ("os", "pfs", "dss"):
        metrics[f"c_index_{endpoint}"] = metrics["c_index"]
    metrics_path.write_text(json.dumps(metrics, indent=2))
    return metrics
