"""One patient's prediction for the dashboard: survival curve with the fold-ensemble spread,
risk at fixed horizons, predicted median survival, conditional survival, similar patients.

A run holds one model per cross-validation fold. For a patient of the training cohort the main
curve is that of the fold model that did *not* see the patient (out-of-fold); for a new patient it
is the mean of the fold models (what :meth:`TrainedModel.predict` returns). The band is the range
of the fold models' curves -- how much the prediction depends on which patients a model was
trained on, not a confidence interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multimodal.models.run import TrainedModel, median_survival

__all__ = [
    "PatientPrediction",
    "conditional_survival",
    "curve_grid",
    "fold_predictions",
    "horizons_for",
    "similar_patients",
]


def horizons_for(time_unit: str) -> dict[str, float]:
    """1, 3 and 5 years in the cohort's time unit."""
    per_year = {"days": 365.25, "day": 365.25, "weeks": 52.18, "years": 1.0, "year": 1.0}
    f = per_year.get(str(time_unit).lower(), 12.0)  # months by default
    return {f"{y} year{'s' if y > 1 else ''}": round(y * f, 4) for y in (1, 3, 5)}


def curve_grid(max_time: float, n: int = 80, extra: list[float] | None = None) -> list[float]:
    """Times at which curves are drawn: ``n`` points on [0, max_time] plus ``extra``, rounded so
    that ``f"surv_{t:g}"`` names stay distinct."""
    t = np.round(np.linspace(0.0, float(max_time), n), 3)
    if extra:
        t = np.concatenate([t, np.round(np.asarray(extra, float), 4)])
    return [float(x) for x in np.unique(t)]


@dataclass
class PatientPrediction:
    """Per-fold-model predictions for a few patients.

    Attributes
    ----------
    ids : patient ids (n,).
    times : (T,) grid.
    fold_survival : (k, n, T) S(t) of each fold model.
    fold_risk : (k, n) risk of each fold model, centred on its mean training risk.
    folds : (k,) fold number of each model (``model/fold_<k>``).

    Methods take ``fold``: the fold number whose model gives the main curve (for a cohort patient,
    the fold where it was a validation patient: the other fold models were trained on its
    outcome). ``fold=None`` uses the mean over the fold models (a new patient).
    """

    ids: list[str]
    times: np.ndarray
    fold_survival: np.ndarray
    fold_risk: np.ndarray
    folds: list[int]

    def row(self, patient_id: str) -> int:
        return self.ids.index(str(patient_id))

    def _main(self, i: int, fold: int | None) -> np.ndarray:
        if fold is not None and fold in self.folds:
            return self.fold_survival[self.folds.index(fold), i]
        return self.fold_survival[:, i].mean(axis=0)

    def risk(self, patient_id: str, fold: int | None = None) -> float:
        i = self.row(patient_id)
        if fold is not None and fold in self.folds:
            return float(self.fold_risk[self.folds.index(fold), i])
        return float(self.fold_risk[:, i].mean())

    def curve(self, patient_id: str, fold: int | None = None) -> pd.DataFrame:
        """time, survival (main curve), mean (over fold models), lower/upper (fold range)."""
        i = self.row(patient_id)
        s = self.fold_survival[:, i]
        return pd.DataFrame(
            {
                "time": self.times,
                "survival": self._main(i, fold),
                "mean": s.mean(axis=0),
                "lower": s.min(axis=0),
                "upper": s.max(axis=0),
            }
        )

    def at(self, patient_id: str, t: float, fold: int | None = None) -> tuple[float, float, float]:
        """S(t) of the main curve and the fold range, linearly interpolated on the grid."""
        c = self.curve(patient_id, fold)
        return tuple(float(np.interp(t, self.times, c[k])) for k in ("survival", "lower", "upper"))

    def median(self, patient_id: str, fold: int | None = None) -> tuple[float, float, float]:
        """Predicted median survival of the main curve and its range over the fold models
        (NaN where S(t) stays above 0.5 on the grid)."""
        i = self.row(patient_id)
        main = float(median_survival(self._main(i, fold)[None, :], self.times)[0])
        per_fold = median_survival(self.fold_survival[:, i, :], self.times)
        if np.isnan(per_fold).all():
            return main, float("nan"), float("nan")
        return main, float(np.nanmin(per_fold)), float(np.nanmax(per_fold))


def fold_predictions(model: TrainedModel, cohort: Any, times: list[float]) -> PatientPrediction:
    """Predict with each fold model separately (ensemble mean and spread).

    Uses one :class:`TrainedModel` per fold, so the numbers are exactly those of
    :meth:`TrainedModel.predict` (whose mean over folds this is).
    """
    risks, survs = [], []
    cols = [f"surv_{t:g}" for t in times]
    for fm in model.folds:
        single = TrainedModel(model.run_dir, model.config, [fm], model.times, model.device)
        frame = single.predict(cohort, list(times))
        risks.append(frame["risk"].to_numpy(float))
        survs.append(frame[cols].to_numpy(float))
        ids = frame["patient_id"].astype(str).tolist()
    return PatientPrediction(
        ids=ids,
        times=np.asarray(times, float),
        fold_survival=np.stack(survs),
        fold_risk=np.stack(risks),
        folds=[int(fm.index) for fm in model.folds],
    )


def conditional_survival(times: np.ndarray, survival: np.ndarray, survived: float) -> pd.DataFrame:
    """S(survived + t) / S(survived): survival over the next ``t`` given ``survived`` already.

    Parameters
    ----------
    times : (T,) increasing grid. survival : (T,) or (m, T) S(t) on the grid (m curves, e.g. the
        mean and the fold range). survived : time already survived.

    Returns
    -------
    DataFrame with ``time`` (time from now, >= 0) and one column per curve (``s0``, ``s1``, ...).
    """
    times = np.asarray(times, float)
    s = np.atleast_2d(np.asarray(survival, float))
    if survived < 0:
        raise ValueError("time already survived must be >= 0")
    ahead = times[times >= survived] - survived
    out = {"time": ahead}
    for j, row in enumerate(s):
        base = float(np.interp(survived, times, row))
        vals = np.interp(ahead + survived, times, row)
        out[f"s{j}"] = np.clip(vals / base, 0.0, 1.0) if base > 0 else np.full(ahead.size, np.nan)
    return pd.DataFrame(out)


def similar_patients(
    oof: pd.DataFrame, percentile: float, k: int = 50, exclude: str | None = None
) -> pd.Index:
    """Ids of the ``k`` out-of-fold patients whose risk percentile is closest to ``percentile``."""
    pool = oof.drop(index=[exclude], errors="ignore") if exclude is not None else oof
    d = (pool["percentile"] - float(percentile)).abs().to_numpy()
    order = np.argsort(d, kind="stable")[: max(1, min(k, len(pool)))]
    return pool.index[order]
