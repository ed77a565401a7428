"""Classical landmark baselines of dynamic prediction, on the same folds as our models.

At each landmark ``s`` a separate ridge Cox model is fitted on the training patients still
followed at ``s`` (outcome: the time after ``s``, censored at ``s + horizon``) and scored on the
validation patients at risk at ``s`` (:mod:`multimodal.evaluation.dynamic`):

- ``baseline``: the longitudinal variables' first (baseline-visit) values;
- ``last``: their last values up to ``s``, plus the OLS slope over the visits up to ``s`` of
  ``slope_variables`` (the classical "last value + slope" landmark model).

Both add the clinical covariates (numeric as given, categorical one-hot). Skewed variables
(``log_variables``) are log-transformed; every column is standardised on the training patients and
a value never measured takes the training mean. The ridge penalty is fixed in advance (``alpha``)
or chosen by inner cross-validation on the training patients (``alpha="cv"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.data.landmark import landmark_cohort
from multimodal.data.longitudinal import LongitudinalSource, ols_slope
from multimodal.evaluation.dynamic import horizon_brier
from multimodal.survival.metrics import harrell_c

__all__ = ["LANDMARK_BASELINES", "landmark_design", "run_landmark_baselines"]

LANDMARK_BASELINES = ("baseline", "last")
_ALPHAS = (0.1, 1.0, 3.0, 10.0, 30.0, 100.0)


def landmark_design(
    cohort: Any,
    s: float,
    mode: str = "last",
    slope_variables: Sequence[str] = (),
    log_variables: Sequence[str] = (),
) -> pd.DataFrame:
    """Per patient of ``cohort`` (already at landmark ``s``): the baseline's covariates
    (unstandardised; NaN = never measured)."""
    labs = next(src for src in cohort.sources.values() if isinstance(src, LongitudinalSource))
    table = labs.table.copy()
    logged = table["variable"].isin(list(log_variables))
    table.loc[logged, "value"] = np.log(np.maximum(table.loc[logged, "value"], 1e-12))
    table = table.sort_values(["patient_id", "time"], kind="stable")
    by = table.groupby(["patient_id", "variable"], sort=False)["value"]
    wide = (by.first() if mode == "baseline" else by.last()).unstack("variable")
    wide = wide.reindex(index=cohort.patients.index, columns=labs.variables)
    if mode == "last":
        for v in slope_variables:
            part = table[table["variable"] == v]
            slopes = {
                pid: ols_slope(g["time"].to_numpy(float), g["value"].to_numpy(float))
                for pid, g in part.groupby("patient_id", sort=False)
            }
            wide[f"{v}_slope"] = pd.Series(slopes).reindex(wide.index).fillna(0.0)
    clinical = next((src for src in cohort.sources.values() if src.kind == "clinical"), None)
    if clinical is not None:
        rows = clinical.table.reindex(wide.index)
        for col in clinical.numeric:
            wide[f"clin_{col}"] = pd.to_numeric(rows[col], errors="coerce")
        for col in clinical.categorical:
            dummies = pd.get_dummies(rows[col].astype("string"), prefix=f"clin_{col}", dtype=float)
            wide = pd.concat([wide, dummies.iloc[:, 1:]], axis=1)
    return wide


def _standardise(train: pd.DataFrame, other: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    mean = train.mean()
    sd = train.std().replace(0.0, 1.0).fillna(1.0)
    mean = mean.fillna(0.0)
    a = ((train - mean) / sd).fillna(0.0).to_numpy(float)
    b = ((other.reindex(columns=train.columns) - mean) / sd).fillna(0.0).to_numpy(float)
    return a, b


def _structured(time: np.ndarray, event: np.ndarray):
    from sksurv.util import Surv

    return Surv.from_arrays(event.astype(bool), time.astype(float))


def _fit(x: np.ndarray, time: np.ndarray, event: np.ndarray, alpha: float):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    return CoxPHSurvivalAnalysis(alpha=alpha, ties="efron").fit(x, _structured(time, event))


def _choose_alpha(x, time, event, groups_seed: int = 0) -> float:
    """Ridge penalty by 3-fold CV (Harrell's C) on the training patients only."""
    from sklearn.model_selection import StratifiedKFold

    splitter = StratifiedKFold(3, shuffle=True, random_state=groups_seed)
    scores = {}
    for alpha in _ALPHAS:
        vals = []
        for a, b in splitter.split(x, event):
            if event[a].sum() < 2 or event[b].sum() < 1:
                continue
            model = _fit(x[a], time[a], event[a], alpha)
            vals.append(harrell_c(time[b], event[b], model.predict(x[b])))
        scores[alpha] = np.mean(vals) if vals else -np.inf
    best = max(scores.values())
    return max(a for a, v in scores.items() if v >= best - 1e-3)  # ties: the larger penalty


def run_landmark_baselines(
    cohort: Any,
    folds: Sequence[Any],
    landmarks: Sequence[float],
    horizon: float,
    models: Sequence[str] = LANDMARK_BASELINES,
    slope_variables: Sequence[str] = (),
    log_variables: Sequence[str] = (),
    alpha: float | str = 1.0,
) -> pd.DataFrame:
    """Per (model, fold, landmark): ``n``, ``events``, ``c_index`` (Harrell within the horizon)
    and ``brier`` (IPCW, at the horizon) on the validation patients at risk at the landmark.

    ``folds``: folds over the patients of ``cohort`` (e.g. ``cohort.folds(k=5, seed=0)``, what
    ``multimodal train`` uses with ``data.folds: 5`` and ``train.seed: 0``).
    """
    rows = []
    for s in landmarks:
        at = landmark_cohort(cohort, float(s), horizon)
        pt = at.patients
        designs = {
            m: landmark_design(at, float(s), m, slope_variables, log_variables) for m in models
        }
        for fold in folds:
            tr = [i for i in fold.train_ids if i in pt.index]
            va = [i for i in fold.val_ids if i in pt.index]
            t_tr = pt.loc[tr, "time"].to_numpy(float)
            e_tr = pt.loc[tr, "event"].to_numpy(bool)
            t_va = pt.loc[va, "time"].to_numpy(float)
            e_va = pt.loc[va, "event"].to_numpy(bool)
            for m in models:
                x_tr, x_va = _standardise(designs[m].loc[tr], designs[m].loc[va])
                lam = _choose_alpha(x_tr, t_tr, e_tr) if alpha == "cv" else float(alpha)
                model = _fit(x_tr, t_tr, e_tr, lam)
                risk = model.predict(x_va)
                surv = np.array(
                    [fn(min(horizon, fn.x[-1])) for fn in model.predict_survival_function(x_va)]
                )
                rows.append(
                    {
                        "model": m,
                        "fold": fold.index,
                        "landmark": float(s),
                        "n": len(va),
                        "events": int(e_va.sum()),
                        "alpha": lam,
                        "c_index": float(harrell_c(t_va, e_va, risk)),
                        "brier": horizon_brier(t_tr, e_tr, t_va, e_va, surv, horizon),
                    }
                )
    return pd.DataFrame(rows)
