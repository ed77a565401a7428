"""Landmark runs (dynamic prediction) on the dashboard: the metrics at each landmark, a patient's
biomarker trajectories and the predicted risk at each of their visits.

A landmark run (``data.landmark``, :mod:`multimodal.data.landmark`) predicts
S(s + t | alive at s) from what was measured up to the landmark ``s``, for ``t`` up to its
horizon. The patient page asks it at every visit of a patient: "had we predicted at this visit,
what would the event probability within the horizon have been?" -- one call of
:meth:`~multimodal.models.run.TrainedModel.predict` with ``landmark=`` the visit time per visit
and fold model (:func:`risk_at_visits`), so the numbers are the model's own, input checks
included. Without the cohort, :func:`saved_landmark_risks` reads the same kind of numbers at the
run's training landmarks from ``predictions.csv``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multimodal.dashboard.cohort_stats import LANDMARK_C_INDEX
from multimodal.dashboard.patient import fold_predictions
from multimodal.dashboard.vocabulary import horizon_label

if TYPE_CHECKING:  # pragma: no cover
    from multimodal.dashboard.run_data import RunData
    from multimodal.models.run import TrainedModel

__all__ = [
    "landmark_metric_table",
    "measurements",
    "risk_at_visits",
    "saved_landmark_risks",
    "visit_times",
]

_LM_METRIC = re.compile(r"^(?P<metric>c_index|brier)_lm(?P<s>[0-9.eE+-]+)$")
#: Columns of :func:`risk_at_visits` and :func:`saved_landmark_risks`.
VISIT_COLUMNS = ["time", "event_probability", "low", "high", "status", "issues"]


def _ci(values: list[float]) -> tuple[float, str]:
    """Mean over folds and its 95% t-interval as text ("n/a" with fewer than two folds)."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return float("nan"), "n/a"
    if v.size < 2:
        return float(v.mean()), "n/a (one fold)"
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return float(v.mean()), f"{v.mean() - half:.3f} to {v.mean() + half:.3f}"


def landmark_metric_table(run: RunData) -> pd.DataFrame:
    """The C-index and Brier score at each landmark of a landmark run, from ``metrics.json``.

    One row per landmark scored (``c_index_lm<s>``, ``brier_lm<s>`` of each fold) and a last
    row with their means over the landmarks (``c_index_landmarks``, ``brier_landmarks``: the
    sidebar's C-index). Columns: ``landmark (<unit>)``, ``patients at risk`` (validation rows
    at the landmark, all folds), ``events within <horizon>``, ``C-index`` and ``Brier score``
    (means over folds) with their 95% t-intervals over folds (text). Empty for other runs.
    """
    folds = run.metrics.get("folds") or []
    found: dict[float, str] = {}
    for f in folds:
        for key in f:
            m = _LM_METRIC.match(str(key))
            if m:
                try:
                    found.setdefault(float(m.group("s")), m.group("s"))
                except ValueError:
                    continue
    if not found or not run.is_landmark:
        return pd.DataFrame()
    unit = run.time_unit
    horizon = run.horizon
    within = horizon_label(horizon, unit) if horizon is not None else "the horizon"
    p = run.predictions
    val = p[p["split"].astype(str) == "val"] if "split" in p else p
    lm = pd.to_numeric(val["landmark"], errors="coerce").to_numpy(float)
    rows = []
    for s in sorted(found):
        at = val[np.isclose(lm, s)]
        c, c_ci = _ci([f.get(f"c_index_lm{found[s]}") for f in folds])
        b, b_ci = _ci([f.get(f"brier_lm{found[s]}") for f in folds])
        rows.append((f"{s:g}", len(at), int(at["event"].astype(bool).sum()), c, c_ci, b, b_ci))
    c, c_ci = _ci([f.get(LANDMARK_C_INDEX) for f in folds])
    b, b_ci = _ci([f.get("brier_landmarks") for f in folds])
    rows.append(("mean over the landmarks", np.nan, np.nan, c, c_ci, b, b_ci))
    columns = [
        f"landmark ({unit})",
        "patients at risk",
        f"events within {within}",
        "C-index",
        "C-index 95% CI",
        "Brier score",
        "Brier score 95% CI",
    ]
    return pd.DataFrame(rows, columns=columns)


def measurements(cohort: Any, patient_id: str, modalities: list[str] | None = None) -> pd.DataFrame:
    """A patient's repeat measurements: ``modality``, ``time``, ``variable``, ``value`` (by
    time), from every longitudinal source of ``cohort`` (those in ``modalities`` when given)."""
    parts = []
    for m, src in getattr(cohort, "sources", {}).items():
        if src.kind != "longitudinal" or (modalities is not None and m not in modalities):
            continue
        t = src.table
        t = t[t["patient_id"].astype(str) == str(patient_id)]
        parts.append(t[["time", "variable", "value"]].assign(modality=m))
    if not parts:
        return pd.DataFrame(columns=["modality", "time", "variable", "value"])
    out = pd.concat(parts, ignore_index=True)[["modality", "time", "variable", "value"]]
    return out.sort_values(["time", "modality"], kind="stable").reset_index(drop=True)


def visit_times(table: pd.DataFrame) -> list[float]:
    """The distinct times of a patient's measurements (:func:`measurements`), in order."""
    t = pd.to_numeric(table["time"], errors="coerce").to_numpy(float) if len(table) else []
    return [float(v) for v in np.unique(np.asarray(t, float)[np.isfinite(t)])]


def risk_at_visits(
    model: TrainedModel,
    cohort: Any,
    patient_id: str,
    horizon: float,
    visits: list[float],
    fold: int | None = None,
) -> pd.DataFrame:
    """The predicted event probability within ``horizon`` had the patient been predicted at
    each visit: ``1 - S(s + horizon | alive at s)`` with ``s`` the visit time, from what was
    measured up to ``s`` (:meth:`TrainedModel.predict` with ``landmark=s``).

    Parameters
    ----------
    model : a landmark run's fold models.
    cohort : a cohort holding the patient (only the patient is predicted).
    patient_id : the patient.
    horizon : the model's horizon (``config.data.landmark.horizon``).
    visits : the landmarks (the patient's visit times).
    fold : the fold whose model gives the main value (a cohort patient's validation fold: the
        other fold models trained on it); None = the mean of the fold models (a new patient).

    Returns
    -------
    DataFrame, one row per visit: ``time``, ``event_probability`` (0-1), ``low``/``high`` (the
    fold models' range), ``status`` (``ok`` | ``warning`` | ``refused``, the model's input
    checks; a refused visit has NaN values) and ``issues`` (their messages).
    """
    one = cohort.subset([str(patient_id)])
    rows = []
    for s in visits:
        pred = fold_predictions(model, one, [float(horizon)], landmark=float(s))
        pid = str(patient_id)
        p, lo, hi = pred.event_probability(pid, float(horizon), fold)
        status = "refused" if pred.refused(pid) else pred.status.get(pid, "ok")
        rows.append((float(s), p, lo, hi, status, pred.issues.get(pid, "")))
    return pd.DataFrame(rows, columns=VISIT_COLUMNS)


def saved_landmark_risks(run: RunData, patient_id: str) -> pd.DataFrame:
    """A landmark run's saved predictions of one patient at the run's training landmarks
    (``predictions.csv``, no model needed): the event probability within the horizon of the
    fold model that did not train on the patient, and the range over every fold model that
    scored the patient at that landmark. Columns as :func:`risk_at_visits` (``time`` = the
    landmark); empty when the run saved no S(horizon)."""
    horizon = run.horizon
    rows = run.landmark_rows(patient_id)
    col = next(
        (
            c
            for t, c in run.endpoint().surv.items()
            if horizon is not None and abs(t - horizon) < 1e-6
        ),
        None,
    )
    if col is None or rows.empty:
        return pd.DataFrame(columns=VISIT_COLUMNS)
    out = []
    for s, part in rows.groupby("landmark", sort=True):
        p_all = 1.0 - part[col].to_numpy(float)
        val = part[part["split"].astype(str) == "val"] if "split" in part else part
        main = 1.0 - float(val[col].iloc[0]) if len(val) else float(np.nanmean(p_all))
        out.append((float(s), main, float(np.nanmin(p_all)), float(np.nanmax(p_all)), "ok", ""))
    return pd.DataFrame(out, columns=VISIT_COLUMNS)
