"""One patient's prediction for the dashboard: survival curve with the fold-ensemble spread,
event probabilities at round horizons, predicted median survival, hazard ratio against the
cohort's median patient, conditional survival, similar patients.

A run holds one model per cross-validation fold. For a patient of the training cohort the main
curve is that of the fold model that did *not* see the patient (out-of-fold); for a new patient it
is the mean of the fold models (what :meth:`TrainedModel.predict` returns). The band is the range
of the fold models' curves -- how much the prediction depends on which patients a model was
trained on, not a confidence interval.

Two sources: :func:`fold_predictions` scores patients with the loaded fold models (any time grid,
any cohort, new patients); :func:`oof_prediction` reads the same fold models' predictions of the
run's own patients from ``predictions.csv`` (the run's evaluation times only, no model needed).
The model is imported only when a prediction needs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from multimodal.dashboard.vocabulary import hazard_ratio, horizon_label, round_horizons

if TYPE_CHECKING:  # pragma: no cover
    from multimodal.dashboard.run_data import RunData
    from multimodal.models.run import TrainedModel

__all__ = [
    "PatientPrediction",
    "conditional_survival",
    "curve_grid",
    "curve_limit",
    "fold_predictions",
    "horizons_for",
    "latest_landmark_prediction",
    "oof_prediction",
    "run_horizons",
    "similar_patients",
]


def horizons_for(time_unit: str) -> dict[str, float]:
    """1, 3 and 5 years in the cohort's time unit (:func:`~multimodal.dashboard.vocabulary.round_horizons`)."""
    return round_horizons(time_unit)


def run_horizons(run: RunData) -> dict[str, float]:
    """The horizons of a run's tiles and tables: 1, 3 and 5 years; for a landmark run those
    within its horizon (times count from the landmark and stop there) and the horizon itself."""
    horizon = run.horizon
    if horizon is None:
        return horizons_for(run.time_unit)
    out = {k: t for k, t in horizons_for(run.time_unit).items() if t <= horizon + 1e-9}
    if not any(abs(t - horizon) < 1e-9 for t in out.values()):
        out[horizon_label(horizon, run.time_unit)] = float(horizon)
    return out


def curve_limit(run: RunData) -> float:
    """How far a run's curves are drawn: a landmark run's horizon (it predicts no further),
    else the longest follow-up."""
    return float(run.horizon) if run.horizon is not None else float(run.max_time)


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
    reference : (k,) the median centred training risk of each fold model (the cohort's median
        patient for that model; NaN when unknown): hazard ratios are taken against it.
    pooled_reference : the median of every fold's centred training risks: the reference of the
        fold ensemble's risk (a new patient).
    status : patient -> ``ok`` | ``warning`` | ``refused`` (the model's input checks).
    issues : patient -> the input checks' messages ("" when none).
    modalities : patient -> the modalities the prediction rests on.

    Methods take ``fold``: the fold number whose model gives the main curve (for a cohort patient,
    the fold where it was a validation patient: the other fold models were trained on its
    outcome). ``fold=None`` uses the mean over the fold models (a new patient).
    """

    ids: list[str]
    times: np.ndarray
    fold_survival: np.ndarray
    fold_risk: np.ndarray
    folds: list[int]
    reference: np.ndarray | None = None
    pooled_reference: float | None = None
    status: dict[str, str] = field(default_factory=dict)
    issues: dict[str, str] = field(default_factory=dict)
    modalities: dict[str, list[str]] = field(default_factory=dict)

    def row(self, patient_id: str) -> int:
        return self.ids.index(str(patient_id))

    def refused(self, patient_id: str) -> bool:
        """Whether the model refused the patient's inputs (its curves are NaN)."""
        i = self.row(patient_id)
        return self.status.get(str(patient_id)) == "refused" or bool(
            np.isnan(self.fold_survival[:, i]).all()
        )

    def _k(self, fold: int | None) -> int | None:
        return self.folds.index(fold) if fold is not None and fold in self.folds else None

    def _main(self, i: int, fold: int | None) -> np.ndarray:
        k = self._k(fold)
        if k is not None:
            return self.fold_survival[k, i]
        return self.fold_survival[:, i].mean(axis=0)

    def risk(self, patient_id: str, fold: int | None = None) -> float:
        i = self.row(patient_id)
        k = self._k(fold)
        if k is not None:
            return float(self.fold_risk[k, i])
        return float(self.fold_risk[:, i].mean())

    def hazard_ratios(self, patient_id: str, fold: int | None = None) -> tuple[float, float, float]:
        """Hazard ratio against the cohort's median patient: of the main model (or the ensemble
        for ``fold=None``) and its range over the fold models (each against its own median
        training patient). NaN when the references are unknown."""
        if self.reference is None:
            return (float("nan"),) * 3
        i = self.row(patient_id)
        per_fold = np.asarray(hazard_ratio(self.fold_risk[:, i] - self.reference, 0.0))
        if np.isnan(per_fold).all():
            return (float("nan"),) * 3
        k = self._k(fold)
        if k is not None:
            main = float(per_fold[k])
        else:  # the ensemble's risk is the mean of the centred fold risks
            ref = self.pooled_reference
            ref = float(np.nanmedian(self.reference)) if ref is None or np.isnan(ref) else ref
            main = hazard_ratio(float(self.fold_risk[:, i].mean()), ref)
        return main, float(np.nanmin(per_fold)), float(np.nanmax(per_fold))

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
        """S(t) of the main curve and the fold range, linearly interpolated on the grid; NaN
        beyond the grid's last time."""
        c = self.curve(patient_id, fold)
        if t > float(self.times[-1]) + 1e-9:
            return (float("nan"),) * 3
        return tuple(float(np.interp(t, self.times, c[k])) for k in ("survival", "lower", "upper"))

    def event_probability(
        self, patient_id: str, t: float, fold: int | None = None
    ) -> tuple[float, float, float]:
        """Event probability by ``t`` (1 - S(t)) of the main curve and its fold range (low, high)."""
        s, lo, hi = self.at(patient_id, t, fold)
        return 1.0 - s, 1.0 - hi, 1.0 - lo

    def median(self, patient_id: str, fold: int | None = None) -> tuple[float, float, float]:
        """Predicted median survival of the main curve and its range over the fold models
        (NaN where S(t) stays above 0.5 on the grid; the upper end of the range is ``inf``
        when some fold models' curves do not reach 0.5, NaN when none does)."""
        i = self.row(patient_id)
        main = float(_median_survival(self._main(i, fold)[None, :], self.times)[0])
        per_fold = _median_survival(self.fold_survival[:, i, :], self.times)
        if np.isnan(per_fold).all():
            return main, float("nan"), float("nan")
        high = float("inf") if np.isnan(per_fold).any() else float(np.nanmax(per_fold))
        return main, float(np.nanmin(per_fold)), high


def _median_survival(survival: np.ndarray, times: np.ndarray) -> np.ndarray:
    from multimodal.models.run import median_survival

    return median_survival(np.nan_to_num(survival, nan=1.0), times)


def fold_predictions(
    model: TrainedModel,
    cohort: Any,
    times: list[float],
    reference: dict[int, float] | None = None,
    pooled_reference: float | None = None,
    landmark: float | None = None,
) -> PatientPrediction:
    """Predict with each fold model separately (ensemble mean and spread).

    Uses one :class:`TrainedModel` per fold, so the numbers are exactly those of
    :meth:`TrainedModel.predict` (whose mean over folds this is), input checks included: a
    patient the checks refuse has NaN curves and ``status`` ``refused``.

    Parameters
    ----------
    model : the run's fold models (``multimodal.load_run``).
    cohort : the patients.
    times : the grid of the curves.
    reference : fold -> median centred training risk of its model
        (:meth:`~multimodal.dashboard.run_data.RunData.reference_risks`), for hazard ratios.
    pooled_reference : the ensemble's reference
        (:meth:`~multimodal.dashboard.run_data.RunData.pooled_reference`).
    landmark : a landmark run's landmark (:meth:`TrainedModel.predict`): S(s + t | alive at s)
        from what was measured up to ``s``, ``times`` counting from ``s`` (up to the horizon).
        None: a landmark run predicts at each patient's latest measurement.
    """
    from multimodal.models.run import TrainedModel

    risks, survs = [], []
    cols = [f"surv_{t:g}" for t in times]
    frame = None
    for fm in model.folds:
        single = TrainedModel(model.run_dir, model.config, [fm], model.times, model.device)
        frame = single.predict(cohort, list(times), landmark=landmark)
        risks.append(frame["risk"].to_numpy(float))
        survs.append(frame[cols].to_numpy(float))
    ids = frame["patient_id"].astype(str).tolist()
    folds = [int(fm.index) for fm in model.folds]
    status = dict(zip(ids, frame.get("status", pd.Series("ok", index=frame.index)).astype(str)))
    issues = dict(zip(ids, frame.get("input_issues", pd.Series("", index=frame.index)).astype(str)))
    present = frame.get("modalities_present", pd.Series("", index=frame.index)).fillna("")
    return PatientPrediction(
        ids=ids,
        times=np.asarray(times, float),
        fold_survival=np.stack(survs),
        fold_risk=np.stack(risks),
        folds=folds,
        reference=None
        if reference is None
        else np.asarray([reference.get(f, np.nan) for f in folds], float),
        pooled_reference=pooled_reference,
        status=status,
        issues=issues,
        modalities={p: [m for m in str(v).split(",") if m] for p, v in zip(ids, present)},
    )


def oof_prediction(run: RunData, ids: list[str], endpoint: str | None = None) -> PatientPrediction:
    """The fold models' predictions of the run's own patients, read from ``predictions.csv``.

    Every fold model scored every patient (as a validation patient in one fold, as a training
    patient in the others), so the main out-of-fold curve and the fold range need no model. The
    grid is 0 plus the run's evaluation times; beyond the last one the curves are unknown (NaN).
    """
    ep = run.endpoint(endpoint)
    table = run.fold_table(ep.name)
    times = np.asarray([0.0, *sorted(ep.surv)], float)
    folds = sorted(int(k) for k in table["fold"].unique())
    surv = np.full((len(folds), len(ids), len(times)), np.nan)
    surv[:, :, 0] = 1.0
    risk = np.full((len(folds), len(ids)), np.nan)
    cols = [ep.surv[t] for t in sorted(ep.surv)]
    for k, fold in enumerate(folds):
        part = table[table["fold"] == fold]
        part = part[~part.index.duplicated()].reindex([str(i) for i in ids])
        risk[k] = part["risk_centered"].to_numpy(float)
        if cols:
            surv[k, :, 1:] = part[cols].to_numpy(float)
    refs = run.reference_risks(ep.name)
    return PatientPrediction(
        ids=[str(i) for i in ids],
        times=times,
        fold_survival=surv,
        fold_risk=risk,
        folds=folds,
        reference=np.asarray([refs.get(f, np.nan) for f in folds], float),
        pooled_reference=run.pooled_reference(ep.name),
        status=dict.fromkeys(map(str, ids), "ok"),
    )


def latest_landmark_prediction(run: RunData, ids: list[str]) -> PatientPrediction:
    """A landmark run's saved predictions (``predictions.csv``, no model needed) of its
    patients, each at the latest landmark the run predicted it at: :func:`oof_prediction` of
    those (patient, landmark) rows, under the patients' ids. Times count from the landmark."""
    rows = [run.landmark_rows(str(p)) for p in ids]
    pred = oof_prediction(run, [str(r["patient_id"].iloc[-1]) for r in rows])
    pred.ids = [str(p) for p in ids]
    pred.status = dict.fromkeys(pred.ids, "ok")
    return pred


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
