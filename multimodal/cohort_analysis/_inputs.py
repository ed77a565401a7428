"""Predictions for cohort analyses, from a run folder, a trained model or a DataFrame.

Three sources give a per-patient table ``patient_id, risk, time, event, [fold, split], surv_<t>``:

- a run folder (or its ``predictions.csv`` as a DataFrame): out-of-fold predictions, each patient
  predicted by the fold model that did not train on it; ``split == "train"`` rows are kept for
  fitting cut-points. Risks are centred per fold on the fold's mean training risk, as the
  ensemble centres them (Cox risks are defined up to a constant per model).
- a :class:`~multimodal.models.run.TrainedModel` and a cohort: the ensemble's predictions.
- any DataFrame with ``patient_id`` and ``risk`` (outcomes taken from the cohort if absent).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError
from multimodal.runfolder import RunFolder

__all__ = ["as_predictions", "kaplan_meier_at", "run_predictions", "survival_at"]

_SURV = re.compile(r"^surv_(\d+(?:\.\d+)?(?:e[+-]?\d+)?)$")


def run_predictions(run_dir: str | Path) -> pd.DataFrame:
    """A run folder's ``predictions.csv`` with risks centred per fold on the mean training risk.

    The folder's checks are the run folder's own (:meth:`RunFolder.require`,
    :meth:`RunFolder.read_predictions`), as ``multimodal evaluate`` meets them: a folder that is
    not a run, and a run whose training did not finish (how to resume it), are named as such."""
    return centre_per_fold(RunFolder(run_dir).require().read_predictions())


def centre_per_fold(frame: pd.DataFrame) -> pd.DataFrame:
    """Subtract each fold's mean training-row risk (a run's ``risk_center``) from its risks."""
    if not {"fold", "split"} <= set(frame.columns):
        return frame.copy()
    frame = frame.copy()
    centre = frame[frame["split"] == "train"].groupby("fold")["risk"].mean()
    frame["risk"] = frame["risk"] - frame["fold"].map(centre).fillna(0.0)
    return frame


def _is_model(source: Any) -> bool:
    return hasattr(source, "predict") and hasattr(source, "folds")


def _with_outcomes(frame: pd.DataFrame, cohort: Any, endpoint: tuple[str, str]) -> pd.DataFrame:
    tcol, ecol = endpoint
    if {"time", "event"} <= set(frame.columns) and endpoint == ("time", "event"):
        return frame
    if cohort is None:
        raise DataError("the predictions lack time/event columns; pass the cohort they refer to")
    ids = frame["patient_id"].astype(str)
    unknown = sorted(set(ids) - set(cohort.patients.index.astype(str)))
    if unknown:
        raise DataError(
            f"{len(unknown)} patient(s) of the predictions are not in cohort "
            f"{getattr(cohort, 'name', '')!r} (e.g. {unknown[:3]}), so they have no outcome: pass "
            "the cohort the predictions were made for, or drop those rows"
        )
    pt = cohort.patients.reindex(ids)
    frame = frame.copy()
    frame["time"] = pt[tcol].to_numpy(float)
    frame["event"] = pt[ecol].fillna(False).to_numpy(bool)
    return frame


def as_predictions(
    source: Any,
    cohort: Any = None,
    times: list[float] | None = None,
    endpoint: tuple[str, str] = ("time", "event"),
) -> pd.DataFrame:
    """Per-patient predictions from a run folder, a TrainedModel (+ cohort) or a DataFrame.

    Rows without an observed time are dropped. A run folder keeps its ``train`` rows (``split``).
    """
    if isinstance(source, (str, Path)):
        frame = run_predictions(source)
    elif _is_model(source):
        if cohort is None:
            raise DataError("predicting with a trained model needs the cohort of the patients")
        grid = sorted(set(map(float, source.times)) | set(map(float, times or [])))
        frame = source.predict(cohort, grid)
        refused = frame["status"].eq("refused") if "status" in frame else None
        if refused is not None and refused.any():
            # the input checks refused them (non-finite or implausible inputs): no risk to score
            logging.getLogger(__name__).warning(
                "%d patient(s) of %r were refused by the input checks and are left out: %s",
                int(refused.sum()),
                getattr(cohort, "name", "the cohort"),
                "; ".join(frame.loc[refused, "input_issues"].astype(str).head(3)),
            )
            frame = frame[~refused]
    elif isinstance(source, pd.DataFrame):
        missing = {"patient_id", "risk"} - set(source.columns)
        if missing:
            raise DataError(
                f"predictions lack columns {sorted(missing)}; need patient_id and risk "
                "(higher = worse), e.g. a run's predictions.csv"
            )
        frame = centre_per_fold(source)
    else:
        raise TypeError(
            f"cannot read predictions from {type(source).__name__}: pass a run folder, a "
            "TrainedModel (multimodal.load_run) or a DataFrame with patient_id and risk"
        )
    frame["patient_id"] = frame["patient_id"].astype(str)
    frame = _with_outcomes(frame, cohort, endpoint)
    frame = frame[np.isfinite(frame["time"].to_numpy(float))]
    frame["event"] = frame["event"].astype(bool)
    return frame.reset_index(drop=True)


def validation_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Out-of-fold rows (``split == "val"``) of a run's predictions; every row otherwise."""
    if "split" in frame.columns:
        return frame[frame["split"] != "train"].reset_index(drop=True)
    return frame


def survival_at(frame: pd.DataFrame, horizon: float) -> np.ndarray:
    """Predicted S(horizon) per row, linearly interpolated between the ``surv_<t>`` columns
    (S(0) = 1; flat after the last column)."""
    cols = {float(m.group(1)): c for c in frame.columns if (m := _SURV.match(str(c)))}
    if not cols:
        raise DataError(
            "the predictions have no surv_<t> columns; predict survival (TrainedModel.predict) "
            "or use a run's predictions.csv"
        )
    ts = np.array(sorted(cols))
    if float(horizon) in cols:
        return frame[cols[float(horizon)]].to_numpy(float)
    s = frame[[cols[t] for t in ts]].to_numpy(float)
    grid = np.concatenate([[0.0], ts])
    s = np.concatenate([np.ones((len(frame), 1)), s], axis=1)
    return np.array([np.interp(horizon, grid, row) for row in s])


def kaplan_meier_at(
    time: np.ndarray, event: np.ndarray, horizon: float
) -> tuple[float, float, float]:
    """Kaplan-Meier S(horizon) with its 95% confidence interval (lifelines)."""
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter().fit(np.asarray(time, float), np.asarray(event, bool))
    s = float(kmf.survival_function_at_times(horizon).iloc[0])
    ci = kmf.confidence_interval_survival_function_
    pos = max(int(np.searchsorted(ci.index.to_numpy(), horizon, side="right")) - 1, 0)
    return s, float(ci.iloc[pos, 0]), float(ci.iloc[pos, 1])
