"""Per-fold metric tables, fold summaries and the published MCAT (ICCV 2021) reference numbers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.survival.metrics import harrell_c

__all__ = [
    "cindex_by_group",
    "format_mean_std",
    "load_mcat_oof_predictions",
    "load_published_mcat",
    "mean_std",
    "summarize_folds",
]


def cindex_by_group(
    predictions: pd.DataFrame,
    by: Sequence[str] = ("model", "fold"),
    time: str = "time",
    event: str = "event",
    risk: str = "risk",
) -> pd.DataFrame:
    """Harrell's C of each group of a long predictions table.

    Returns
    -------
    DataFrame with the ``by`` columns, ``c_index`` and ``n``.
    """
    missing = [c for c in (*by, time, event, risk) if c not in predictions.columns]
    if missing:
        raise ValueError(f"predictions lacks columns {missing}; has {list(predictions.columns)}")
    rows = []
    for key, grp in predictions.groupby(list(by), sort=True):
        key = key if isinstance(key, tuple) else (key,)
        c = harrell_c(
            grp[time].to_numpy(float), grp[event].to_numpy(bool), grp[risk].to_numpy(float)
        )
        rows.append({**dict(zip(by, key, strict=True)), "c_index": c, "n": len(grp)})
    return pd.DataFrame(rows)


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and population standard deviation (``ddof=0``, the MCAT convention) of the finite
    values; ``(None, None)`` when there are none. Every fold summary of the package uses it."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=0))


def summarize_folds(
    results: pd.DataFrame,
    metrics: Sequence[str] = ("c_index", "uno_c", "ibs"),
    by: Sequence[str] = ("model",),
) -> pd.DataFrame:
    """Mean and standard deviation over folds (population std, ``ddof=0``, as the MCAT tables).

    Returns
    -------
    DataFrame indexed by ``by`` with columns ``<metric>_mean``, ``<metric>_std`` and ``n_folds``.
    """
    g = results.groupby(list(by), sort=False)
    out = pd.DataFrame(index=g.size().index)
    for m in metrics:
        out[f"{m}_mean"] = g[m].mean()
        out[f"{m}_std"] = g[m].agg(lambda s: mean_std(s)[1])
    out["n_folds"] = g.size()
    return out


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``"0.624 ± 0.034"``; NaN gives ``"n/a"``."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def load_published_mcat(path: str | Path) -> pd.DataFrame:
    """``benchmarks/published_cindex_mcat_iccv2021.csv``: one row per (method, cancer) with
    ``cindex_mean, cindex_std, cindex_fold0..4``; ``cancer`` is upper-case (BLCA, ...)."""
    df = pd.read_csv(path)
    need = {"method", "cancer", "cindex_mean", "cindex_std"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: expected columns {sorted(need)}; found {list(df.columns)}")
    df["cancer"] = df["cancer"].str.upper()
    return df


def load_mcat_oof_predictions(path: str | Path) -> pd.DataFrame:
    """The MCAT out-of-fold predictions in package conventions.

    Converts ``censorship`` (1 = censored, the mahmoodlab convention) to ``event`` (True = death)
    and ``survival_months`` to ``time``; ``cancer`` upper-case.
    """
    df = pd.read_csv(path)
    need = {"method", "cancer", "fold", "patient_id", "risk", "survival_months", "censorship"}
    if not need <= set(df.columns):
        raise ValueError(f"{path}: expected columns {sorted(need)}; found {list(df.columns)}")
    out = df.drop(columns=["censorship", "survival_months"]).assign(
        time=df["survival_months"].astype(float),
        event=df["censorship"].astype(int) == 0,
        cancer=df["cancer"].str.upper(),
    )
    return out
