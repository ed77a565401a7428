"""Classical survival baselines scored on the same folds as the deep models.

- ``clinical_cox``: ridge-penalised Cox (sksurv ``CoxPHSurvivalAnalysis``, Efron ties) on the
  clinical covariates (numeric z-scored, categorical one-hot with "missing" as its own level).
- ``coxnet``: elastic-net Cox (sksurv ``CoxnetSurvivalAnalysis``) on clinical + genomics
  (genomics: top-variance features on the training fold, z-scored on it); the penalty is chosen by
  an inner stratified CV on the training fold only; clinical covariates are left unpenalised.
- ``rsf``: random survival forest (sksurv ``RandomSurvivalForest``) on clinical + a smaller
  top-variance genomic subset.

Everything fitted (imputation, scaling, feature filter, penalty) sees only the training fold.
Metrics on each validation fold: Harrell's C, Uno's C and the IBS at times inside the fold's
follow-up (10th to 80th percentile of the validation times, below the largest training time);
Uno's C is truncated at the last of those times.
"""

from __future__ import annotations

import logging
import time as _time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError, LeakageError
from multimodal.survival.curves import step_values
from multimodal.survival.metrics import (
    default_eval_times,
    harrell_c,
    integrated_brier_score,
    uno_c,
)
from multimodal.types import is_outcome_column

__all__ = ["BASELINE_MODELS", "BaselineOptions", "run_baselines", "run_baselines_on_cohort"]

logger = logging.getLogger(__name__)

BASELINE_MODELS: tuple[str, ...] = ("clinical_cox", "coxnet", "rsf")


@dataclass
class BaselineOptions:
    """Hyper-parameters of the baselines (defaults keep a 5-fold run on ~1,000 patients fast)."""

    cox_alpha: float = 0.1
    coxnet_l1_ratio: float = 0.5
    coxnet_n_alphas: int = 25
    coxnet_alpha_min_ratio: float = 0.02
    coxnet_inner_folds: int = 3
    coxnet_genomic_features: int = 500
    rsf_n_estimators: int = 200
    rsf_min_samples_leaf: int = 15
    rsf_genomic_features: int = 100
    n_jobs: int = 2
    seed: int = 0


# --------------------------------------------------------------------------- preprocessing
class _ClinicalEncoder:
    """Median-impute + z-score numeric columns; one-hot categorical ones ("missing" level)."""

    def __init__(self, numeric: list[str], categorical: list[str]) -> None:
        self.numeric, self.categorical = numeric, categorical

    def fit(self, df: pd.DataFrame) -> _ClinicalEncoder:
        num = df[self.numeric].astype(float)
        self.median = num.median()
        filled = num.fillna(self.median)
        self.mean, self.std = filled.mean(), filled.std(ddof=0).replace(0, 1.0)
        self.levels = {c: sorted(self._cat(df[c]).unique()) for c in self.categorical}
        return self

    @staticmethod
    def _cat(s: pd.Series) -> pd.Series:
        return s.astype("string").fillna("missing").replace("", "missing").astype(str)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        parts = [(df[self.numeric].astype(float).fillna(self.median) - self.mean) / self.std]
        for c in self.categorical:
            values = self._cat(df[c])
            parts.append(
                pd.DataFrame(
                    {f"{c}={lv}": (values == lv).astype(float) for lv in self.levels[c]},
                    index=df.index,
                )
            )
        return pd.concat(parts, axis=1)


class _GenomicSelector:
    """Top-variance features on the training fold, median-imputed and z-scored on it."""

    def __init__(self, k: int) -> None:
        self.k = k

    def fit(self, df: pd.DataFrame) -> _GenomicSelector:
        x = df.astype(float)
        var = x.var(ddof=0).fillna(0.0)
        self.columns = list(var[var > 0].sort_values(ascending=False).index[: self.k])
        sub = x[self.columns]
        self.median = sub.median()
        filled = sub.fillna(self.median)
        self.mean, self.std = filled.mean(), filled.std(ddof=0).replace(0, 1.0)
        return self

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        sub = df[self.columns].astype(float).fillna(self.median)
        return ((sub - self.mean) / self.std).add_prefix("g:")


def _drop_constant(train: pd.DataFrame, *others: pd.DataFrame) -> list[pd.DataFrame]:
    keep = train.columns[train.nunique() > 1]
    return [train[keep], *(o[keep] for o in others)]


# --------------------------------------------------------------------------- models
def _surv_y(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(event=event.astype(bool), time=time.astype(float))


def _fit_clinical_cox(xtr, ytr, xva, opts: BaselineOptions):
    from sksurv.linear_model import CoxPHSurvivalAnalysis

    model = CoxPHSurvivalAnalysis(alpha=opts.cox_alpha, ties="efron").fit(xtr.to_numpy(), ytr)
    surv = model.predict_survival_function(xva.to_numpy(), return_array=True)
    return model.predict(xva.to_numpy()), model.unique_times_, surv


def _coxnet(opts: BaselineOptions, penalty: np.ndarray, alphas=None, baseline: bool = False):
    from sksurv.linear_model import CoxnetSurvivalAnalysis

    return CoxnetSurvivalAnalysis(
        l1_ratio=opts.coxnet_l1_ratio,
        n_alphas=opts.coxnet_n_alphas,
        alpha_min_ratio=opts.coxnet_alpha_min_ratio,
        alphas=alphas,
        penalty_factor=penalty,
        fit_baseline_model=baseline,
        max_iter=100_000,
    )


def _choose_coxnet_alpha(x: np.ndarray, y: np.ndarray, penalty, opts: BaselineOptions) -> tuple:
    """Penalty path on the whole training fold; best alpha by mean inner-CV Harrell C."""
    from sklearn.model_selection import StratifiedKFold

    # An unpenalised clinical column with (quasi-)complete separation (a stage level without events
    # in a small cohort) makes the unpenalised end of the path diverge: stop the path earlier, then
    # give the clinical columns a small penalty.
    clinical = penalty == 0
    tries = [(1.0, 0.0), (5.0, 0.0), (5.0, 0.01), (25.0, 0.1)]
    for k, (ratio_scale, clin_pen) in enumerate(tries):
        trial = replace(
            opts, coxnet_alpha_min_ratio=min(1.0, opts.coxnet_alpha_min_ratio * ratio_scale)
        )
        pen = np.where(clinical, clin_pen, penalty)
        try:
            path = _coxnet(trial, pen).fit(x, y).alphas_
        except ArithmeticError:
            if k == len(tries) - 1:
                raise
            continue
        if k:
            logger.warning(
                "coxnet path diverged; used alpha_min_ratio %g and clinical penalty factor %g",
                trial.coxnet_alpha_min_ratio,
                clin_pen,
            )
        opts, penalty = trial, pen
        break
    scores = np.full((opts.coxnet_inner_folds, path.size), np.nan)
    cv = StratifiedKFold(opts.coxnet_inner_folds, shuffle=True, random_state=opts.seed)
    for f, (tr, va) in enumerate(cv.split(x, y["event"])):
        try:
            m = _coxnet(opts, penalty, alphas=path).fit(x[tr], y[tr])
        except ArithmeticError:  # diverged on a small inner fold: leave this fold out
            continue
        for a_i, a in enumerate(m.alphas_):
            try:
                scores[f, a_i] = harrell_c(y["time"][va], y["event"][va], m.predict(x[va], alpha=a))
            except DataError:
                continue
    mean = np.nanmean(np.where(np.isnan(scores).all(0), -np.inf, scores), axis=0)
    return path, path[int(np.nanargmax(mean))], opts, penalty


def _fit_coxnet(xtr, ytr, xva, opts: BaselineOptions, n_clinical: int):
    x, xv = xtr.to_numpy(), xva.to_numpy()
    penalty = np.ones(x.shape[1])
    penalty[:n_clinical] = 0.0  # clinical covariates unpenalised: genomics must add beyond them
    path, alpha, opts, penalty = _choose_coxnet_alpha(x, ytr, penalty, opts)
    # refit the path only down to the chosen alpha (smaller ones can diverge and are not needed)
    model = _coxnet(opts, penalty, alphas=path[path >= alpha], baseline=True).fit(x, ytr)
    surv = model.predict_survival_function(xv, alpha=alpha, return_array=True)
    return model.predict(xv, alpha=alpha), model.unique_times_, surv


def _fit_rsf(xtr, ytr, xva, opts: BaselineOptions):
    from sksurv.ensemble import RandomSurvivalForest

    model = RandomSurvivalForest(
        n_estimators=opts.rsf_n_estimators,
        min_samples_leaf=opts.rsf_min_samples_leaf,
        max_features="sqrt",
        n_jobs=opts.n_jobs,
        random_state=opts.seed,
    ).fit(xtr.to_numpy(), ytr)
    surv = model.predict_survival_function(xva.to_numpy(), return_array=True)
    return model.predict(xva.to_numpy()), model.unique_times_, surv


# --------------------------------------------------------------------------- folds
def _positions(ids: Any, index: pd.Index, what: str) -> np.ndarray:
    arr = np.asarray(list(ids))
    if arr.dtype.kind in "iu" and not pd.api.types.is_integer_dtype(index):
        return arr.astype(int)
    pos = index.get_indexer(arr)
    if (pos < 0).any():
        missing = arr[pos < 0][:5].tolist()
        raise DataError(f"{what}: patient ids {missing} are not in the clinical table index")
    return pos


def _unpack_fold(fold: Any, k: int) -> tuple[int, Any, Any]:
    if hasattr(fold, "train_ids") and hasattr(fold, "val_ids"):
        return int(getattr(fold, "index", k)), fold.train_ids, fold.val_ids
    train, val = fold
    return k, train, val


def _split_columns(df: pd.DataFrame, numeric, categorical) -> tuple[list[str], list[str]]:
    if numeric is None:
        numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
    if categorical is None:
        categorical = [c for c in df.columns if c not in numeric]
    return list(numeric), list(categorical)


def run_baselines(
    X_clinical: pd.DataFrame,
    X_genomics: pd.DataFrame | None,
    time: Sequence[float] | np.ndarray,
    event: Sequence[bool] | np.ndarray,
    folds: Sequence[Any],
    models: Sequence[str] = BASELINE_MODELS,
    eval_times: np.ndarray | None = None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    options: BaselineOptions | None = None,
    return_predictions: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Fit and score the classical baselines on each fold.

    Parameters
    ----------
    X_clinical : DataFrame (n, p)
        Clinical covariates, one row per patient (index = patient id); outcome columns are refused.
    X_genomics : DataFrame (n, g) or None
        Molecular features in the same row order (needed by ``coxnet``; optional for ``rsf``).
    time, event : array (n,)
        Outcome aligned with the rows of ``X_clinical``; event True/1 = observed.
    folds : list of (train, val) or objects with ``train_ids`` / ``val_ids`` (``multimodal`` Folds)
        Patient ids (matched to ``X_clinical.index``) or integer row positions.
    models : names among ``"clinical_cox"``, ``"coxnet"``, ``"rsf"``
    eval_times : array, optional
        IBS times; default per fold: 10 times from the 10th to the 80th percentile of the
        validation times, below the largest training time.
    numeric, categorical : column lists; default by dtype.
    options : :class:`BaselineOptions`
    return_predictions : also return per-patient validation risks
        (``model, fold, patient_id, time, event, risk``).

    Returns
    -------
    DataFrame with columns ``model, fold, c_index, uno_c, ibs, n_train, n_val, n_features, seconds``
    (and the predictions DataFrame when asked).
    """
    opts = options or BaselineOptions()
    unknown = [m for m in models if m not in BASELINE_MODELS]
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; choose from {BASELINE_MODELS}")
    if "coxnet" in models and X_genomics is None:
        raise ValueError(
            "coxnet needs X_genomics; pass a genomics table or drop 'coxnet' from models"
        )
    for df in (X_clinical, X_genomics):
        leaks = [c for c in (df.columns if df is not None else []) if is_outcome_column(c)]
        if leaks:
            raise LeakageError(f"outcome columns {leaks} cannot be covariates; drop them from X")
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).astype(bool).reshape(-1)
    if t.size != len(X_clinical) or e.size != t.size:
        raise ValueError(
            f"time/event have {t.size}/{e.size} rows but X_clinical has {len(X_clinical)}"
        )
    if not np.isfinite(t).all() or (t < 0).any():
        bad = int(np.flatnonzero(~np.isfinite(t) | (t < 0))[0])
        raise DataError(
            f"time of patient {X_clinical.index[bad]!r} (row {bad}) is {t[bad]}; "
            "survival times must be finite and >= 0"
        )
    if X_genomics is not None and len(X_genomics) != len(X_clinical):
        raise ValueError("X_genomics must have the same rows (same order) as X_clinical")
    num, cat = _split_columns(X_clinical, numeric, categorical)
    rows, preds = [], []
    for k, fold in enumerate(folds):
        fold_id, tr_ids, va_ids = _unpack_fold(fold, k)
        tr = _positions(tr_ids, X_clinical.index, f"fold {fold_id} train")
        va = _positions(va_ids, X_clinical.index, f"fold {fold_id} val")
        if np.intersect1d(tr, va).size:
            raise LeakageError(f"fold {fold_id}: train and val share patients")
        enc = _ClinicalEncoder(num, cat).fit(X_clinical.iloc[tr])
        ctr, cva = _drop_constant(
            enc.transform(X_clinical.iloc[tr]), enc.transform(X_clinical.iloc[va])
        )
        ytr = _surv_y(t[tr], e[tr])
        times = (
            default_eval_times(t[va], train_time=t[tr])
            if eval_times is None
            else np.asarray(eval_times, dtype=float)
        )
        for name in models:
            start = _time.perf_counter()
            if name == "clinical_cox":
                xtr, xva = ctr, cva
                risk, knots, surv = _fit_clinical_cox(xtr, ytr, xva, opts)
            else:
                n_gen = (
                    opts.coxnet_genomic_features if name == "coxnet" else opts.rsf_genomic_features
                )
                xtr, xva = ctr, cva
                if X_genomics is not None and n_gen > 0:
                    sel = _GenomicSelector(n_gen).fit(X_genomics.iloc[tr])
                    gtr, gva = (
                        sel.transform(X_genomics.iloc[tr]),
                        sel.transform(X_genomics.iloc[va]),
                    )
                    gtr.index, gva.index = ctr.index, cva.index
                    xtr, xva = pd.concat([ctr, gtr], axis=1), pd.concat([cva, gva], axis=1)
                if name == "coxnet":
                    risk, knots, surv = _fit_coxnet(xtr, ytr, xva, opts, n_clinical=ctr.shape[1])
                else:
                    risk, knots, surv = _fit_rsf(xtr, ytr, xva, opts)
            rows.append(_score(name, fold_id, t, e, tr, va, risk, knots, surv, times, xtr.shape[1]))
            rows[-1]["seconds"] = _time.perf_counter() - start
            logger.info("baseline %s fold %s: C=%.4f", name, fold_id, rows[-1]["c_index"])
            if return_predictions:
                preds.append(
                    pd.DataFrame(
                        {
                            "model": name,
                            "fold": fold_id,
                            "patient_id": X_clinical.index[va],
                            "time": t[va],
                            "event": e[va],
                            "risk": risk,
                        }
                    )
                )
    results = pd.DataFrame(rows)
    if return_predictions:
        return results, pd.concat(preds, ignore_index=True)
    return results


def _score(name, fold_id, t, e, tr, va, risk, knots, surv, times, n_features) -> dict:
    s = step_values(np.asarray(knots), np.asarray(surv), times, before=1.0)
    try:
        ibs = integrated_brier_score(t[tr], e[tr], t[va], e[va], s, times, outside="drop")
    except ValueError as err:
        logger.warning("fold %s %s: IBS not computed (%s)", fold_id, name, err)
        ibs = float("nan")
    try:  # truncated at the last IBS time: the IPCW weights explode in the sparse tail
        uc = uno_c(t[tr], e[tr], t[va], e[va], risk, tau=float(np.max(times)))
    except DataError as err:
        logger.warning("fold %s %s: Uno C not computed (%s)", fold_id, name, err)
        uc = float("nan")
    return {
        "model": name,
        "fold": fold_id,
        "c_index": harrell_c(t[va], e[va], risk),
        "uno_c": uc,
        "ibs": ibs,
        "n_train": int(tr.size),
        "n_val": int(va.size),
        "n_features": int(n_features),
    }


def run_baselines_on_cohort(
    cohort: Any,
    folds: Sequence[Any],
    models: Sequence[str] = BASELINE_MODELS,
    clinical: str = "clinical",
    genomics: str | None = "genomics",
    **kwargs: Any,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`run_baselines` on a :class:`multimodal.Cohort` (see docs/architecture.md).

    Uses ``cohort.patients`` (``time``, ``event``), ``cohort.sources[clinical]`` (``.table``,
    ``.numeric``, ``.categorical``) and, when present, ``cohort.sources[genomics].table``; patients
    without a genomics row get training-fold medians. ``folds`` are ``Fold`` objects or
    (train_ids, val_ids) pairs.
    """
    patients = cohort.patients
    src = cohort.sources[clinical]
    cols = list(src.numeric) + list(src.categorical)
    x_clin = src.table.reindex(patients.index)[cols]
    x_gen = None
    if genomics is not None and genomics in cohort.sources:
        x_gen = cohort.sources[genomics].table.reindex(patients.index)
    elif "coxnet" in models:
        models = tuple(m for m in models if m != "coxnet")
        logger.warning("cohort has no %r source: skipping coxnet", genomics)
    return run_baselines(
        x_clin,
        x_gen,
        patients["time"].to_numpy(float),
        patients["event"].to_numpy(bool),
        folds,
        models=models,
        numeric=list(src.numeric),
        categorical=list(src.categorical),
        **kwargs,
    )
