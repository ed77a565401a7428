"""Dynamic-prediction metrics: discrimination and calibration at each landmark, within a horizon.

At landmark ``s`` the patients still followed at ``s`` are scored on what happens in
``(s, s + horizon]`` (the residual time of a landmark cohort, :mod:`multimodal.data.landmark`,
already censored at the horizon):

- ``c_index_lm<s>``: Harrell's C of the predicted risk on those patients (the time-dependent
  C-index of the dynamic-prediction literature, e.g. van Houwelingen & Putter 2011);
- ``brier_lm<s>``: the IPCW Brier score of the predicted survival at the horizon,
  ``S(s + horizon | alive at s)``, with the censoring distribution estimated on the training
  rows of the same landmark (Graf et al. 1999).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.survival.metrics import harrell_c

__all__ = ["dynamic_metrics", "horizon_brier", "landmark_fold_metrics", "landmark_key"]


def landmark_key(s: float) -> str:
    """``lm1``, ``lm2.5``: the suffix of a landmark's metric names."""
    return f"lm{float(s):g}"


def _km_censoring_left(time: np.ndarray, event: np.ndarray, at: np.ndarray) -> np.ndarray:
    """G(at-): the Kaplan-Meier of the censoring times, just before ``at`` (the product over
    censoring times u < at of 1 - censored(u) / at_risk(u))."""
    uniq, inverse = np.unique(time, return_inverse=True)
    censored = np.bincount(inverse, weights=~event, minlength=uniq.size)
    at_risk = time.size - np.r_[0, np.cumsum(np.bincount(inverse, minlength=uniq.size))[:-1]]
    cum = np.cumprod(1.0 - censored / np.maximum(at_risk, 1))
    idx = np.searchsorted(uniq, at, side="left")  # number of times strictly before ``at``
    return np.where(idx == 0, 1.0, cum[np.maximum(idx - 1, 0)])


def horizon_brier(
    train_time: np.ndarray,
    train_event: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    surv_h: np.ndarray,
    horizon: float,
) -> float:
    """IPCW Brier score of ``surv_h`` = S(horizon) for patients (``time``, ``event``), the
    censoring weights from (``train_time``, ``train_event``)."""
    time, event = np.asarray(time, float), np.asarray(event, bool)
    surv_h = np.asarray(surv_h, float)
    died = event & (time <= horizon)
    alive = time >= horizon
    g_died = _km_censoring_left(np.asarray(train_time, float), np.asarray(train_event, bool), time)
    g_h = _km_censoring_left(
        np.asarray(train_time, float), np.asarray(train_event, bool), np.asarray([horizon])
    )[0]
    with np.errstate(divide="ignore", invalid="ignore"):
        w = np.where(died, 1.0 / np.maximum(g_died, 1e-12), 0.0)
        w = np.where(alive & ~died, 1.0 / max(g_h, 1e-12), w)
    target = np.where(died, 0.0, 1.0)
    return float(np.mean(w * (target - surv_h) ** 2))


def _surv_column(frame: pd.DataFrame, horizon: float) -> str | None:
    cols = [c for c in frame.columns if c.startswith("surv_")]
    for c in cols:
        try:
            if abs(float(c[5:]) - horizon) < 1e-6:
                return c
        except ValueError:
            continue
    return None


def dynamic_metrics(
    preds: pd.DataFrame,
    landmarks: Sequence[float],
    horizon: float,
    train: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Per landmark: rows, events within the horizon, ``c_index`` and ``brier`` (at the horizon;
    NaN without an ``surv_<horizon>`` column or training rows for the censoring weights).

    ``preds``: rows with ``landmark``, ``time``, ``event``, ``risk`` (a landmark run's
    predictions); ``train``: the training rows of the same fold (censoring weights).
    """
    col = _surv_column(preds, horizon)
    rows = []
    for s in landmarks:
        part = preds[np.isclose(preds["landmark"].to_numpy(float), float(s))]
        t = part["time"].to_numpy(float)
        e = part["event"].to_numpy().astype(bool)
        row: dict[str, Any] = {"landmark": float(s), "n": len(part), "events": int(e.sum())}
        row["c_index"] = (
            float(harrell_c(t, e, part["risk"].to_numpy(float))) if e.any() else float("nan")
        )
        row["brier"] = float("nan")
        if col is not None and train is not None and len(part):
            tr = train[np.isclose(train["landmark"].to_numpy(float), float(s))]
            if len(tr):
                row["brier"] = horizon_brier(
                    tr["time"].to_numpy(float),
                    tr["event"].to_numpy().astype(bool),
                    t,
                    e,
                    part[col].to_numpy(float),
                    horizon,
                )
        rows.append(row)
    return pd.DataFrame(rows)


def landmark_fold_metrics(preds: pd.DataFrame, landmarks: Sequence[float], horizon: float) -> dict:
    """A fold's per-landmark metrics from its prediction frame (``split`` train/val):
    ``c_index_lm<s>``, ``brier_lm<s>`` and their means over the landmarks
    (``c_index_landmarks``, ``brier_landmarks``)."""
    val = preds[preds["split"] == "val"]
    train = preds[preds["split"] == "train"]
    table = dynamic_metrics(val, landmarks, horizon, train)
    out: dict[str, float] = {}
    for _, r in table.iterrows():
        out[f"c_index_{landmark_key(r['landmark'])}"] = r["c_index"]
        out[f"brier_{landmark_key(r['landmark'])}"] = r["brier"]
    out["c_index_landmarks"] = float(np.nanmean(table["c_index"])) if len(table) else float("nan")
    out["brier_landmarks"] = (
        float(np.nanmean(table["brier"])) if table["brier"].notna().any() else float("nan")
    )
    return out
