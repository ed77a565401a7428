"""Cohort-level numbers for the dashboard: risk groups, Kaplan-Meier curves with numbers at
risk, log-rank test, metrics with confidence intervals, calibration at round horizons, filters.

Risk-group cut-points are quantiles of the *training* risks of each fold (never of the patients
they are applied to); a validation patient is placed with its own fold's cut-points. Kaplan-Meier
estimates are the package's own (equal to lifelines', tested), the log-rank test comes from
lifelines, the calibration table from
:func:`multimodal.survival.calibration.calibration_at_horizon`.

One C-index is shown everywhere (:func:`c_index_summary`): Harrell's C of each fold's validation
patients, averaged over the folds -- the number ``metrics.json`` holds as ``c_index``. Pooling the
out-of-fold risks of different fold models into one C-index would compare risks of different
models, whose scales differ.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.dashboard.run_data import RunData

#: A landmark run's fold metric: the mean of its per-landmark C-indices.
LANDMARK_C_INDEX = "c_index_landmarks"

__all__ = [
    "C_INDEX_NOTE",
    "LANDMARK_C_INDEX",
    "GroupSurvival",
    "apply_filters",
    "c_index_summary",
    "calibration",
    "calibration_horizons",
    "cohort_summary",
    "group_labels",
    "km_curve",
    "metric_table",
    "numbers_at_risk",
    "patient_attributes",
    "pooled_cutpoints",
    "risk_groups",
    "risk_position",
    "survival_by_group",
]


def group_labels(n_groups: int) -> list[str]:
    """Names of ``n_groups`` risk groups, lowest risk first."""
    if n_groups == 2:
        return ["low", "high"]
    if n_groups == 3:
        return ["low", "intermediate", "high"]
    return [f"Q{i + 1}" for i in range(n_groups)]


def _cuts(risk: np.ndarray, n_groups: int) -> np.ndarray:
    return np.quantile(risk, np.linspace(0, 1, n_groups + 1)[1:-1])


def risk_groups(run: RunData, n_groups: int = 3, endpoint: str | None = None) -> pd.Series:
    """Risk group of every out-of-fold patient (index patient_id, ordered categorical).

    Cut-points are the ``1/n_groups`` quantiles of the fold's training risks (or, for a run that
    saved validation rows only, of all validation risks -- then the groups are not fitted on
    training data and :func:`survival_by_group` says so).
    """
    if n_groups < 2:
        raise ValueError("n_groups must be >= 2")
    oof = run.oof(endpoint)
    train = run.training_rows(endpoint)
    codes = np.zeros(len(oof), dtype=int)
    for k, part in oof.groupby("fold"):
        ref = train.loc[train["fold"] == k, "risk"].to_numpy(float)
        if ref.size < n_groups:
            ref = oof["risk"].to_numpy(float)
        pos = oof.index.get_indexer(part.index)
        codes[pos] = np.searchsorted(_cuts(ref, n_groups), part["risk"].to_numpy(float), "right")
    labels = group_labels(n_groups)
    return pd.Series(
        pd.Categorical.from_codes(codes, categories=labels, ordered=True),
        index=oof.index,
        name="group",
    )


def pooled_cutpoints(run: RunData, n_groups: int = 3, endpoint: str | None = None) -> np.ndarray:
    """Cut-points on the *centred* risk scale of :meth:`TrainedModel.predict` (fold-ensemble
    risk), from every fold's training risks centred on their fold mean; used to place patients
    scored by the loaded model (a new patient)."""
    train = run.training_rows(endpoint)
    ref = train["risk_centered"].to_numpy(float)
    if ref.size < n_groups:
        ref = run.oof(endpoint)["risk_centered"].to_numpy(float)
    return _cuts(ref, n_groups)


def risk_position(
    run: RunData, risk_centered: float, fold: int | None = None, n_groups: int = 3
) -> tuple[str, float]:
    """Risk group and percentile (0-100) of a risk scored by the loaded fold models (centred on
    the fold's mean training risk, as :meth:`TrainedModel.predict` centres it): among the
    training rows of fold ``fold``, or of every fold (centred per fold) for the fold ensemble
    (``fold=None``, a new patient). A landmark run's training rows are its (patient, landmark)
    rows. ``("n/a", nan)`` for a NaN risk."""
    if not np.isfinite(risk_centered):
        return "n/a", float("nan")
    train = run.training_rows()
    if fold is not None and (train["fold"] == fold).sum() >= n_groups:
        ref = train.loc[train["fold"] == fold, "risk_centered"].to_numpy(float)
        cuts = _cuts(ref, n_groups)
    else:
        ref = train["risk_centered"].to_numpy(float)
        cuts = pooled_cutpoints(run, n_groups)
    group = group_labels(n_groups)[int(np.searchsorted(cuts, risk_centered, side="right"))]
    pct = 100.0 * float((ref < risk_centered).mean()) if ref.size else float("nan")
    return group, pct


def km_curve(time: np.ndarray, event: np.ndarray, label: str = "KM") -> pd.DataFrame:
    """Kaplan-Meier estimate with its 95% CI (Greenwood variance, exponential -- log(-log) --
    transform; equal to lifelines' ``KaplanMeierFitter``, tested). Computed here rather than by
    lifelines, whose import (a third of a second) the patient page would pay on its first render.

    Returns
    -------
    DataFrame with columns time, survival, lower, upper, at_risk (one row per observed time, from
    t=0). ``label`` is kept for the callers; the curve does not depend on it.
    """
    from multimodal.survival.curves import km_counts

    t = np.asarray(time, float)
    grid, deaths, at_risk = km_counts(t, np.asarray(event, bool))
    if not grid.size or grid[0] > 0:  # the curve starts at t = 0, everyone at risk
        grid, deaths, at_risk = (
            np.r_[a, b] for a, b in ((0.0, grid), (0.0, deaths), (len(t), at_risk))
        )
    with np.errstate(divide="ignore", invalid="ignore"):
        survival = np.cumprod(1.0 - deaths / at_risk)
        greenwood = np.cumsum(
            np.where(at_risk > deaths, deaths / (at_risk * (at_risk - deaths)), 0.0)
        )
        log_s = np.log(survival)
        half = _Z95 * np.sqrt(greenwood) / np.abs(log_s)
        lower = np.exp(-np.exp(np.log(-log_s) + half))
        upper = np.exp(-np.exp(np.log(-log_s) - half))
    flat = survival >= 1.0  # no event yet: the interval is the point
    lower[flat], upper[flat] = 1.0, 1.0
    return pd.DataFrame(
        {"time": grid, "survival": survival, "lower": lower, "upper": upper, "at_risk": at_risk}
    )


#: The standard normal's 97.5 % quantile (two-sided 95 % intervals).
_Z95 = 1.959963984540054


def numbers_at_risk(groups: dict[str, np.ndarray], ticks: list[float]) -> pd.DataFrame:
    """Patients still at risk (observed time >= t) at each tick, per group.

    Parameters
    ----------
    groups : group label -> observed times of its patients.
    ticks : times of the table (e.g. :func:`multimodal.dashboard.vocabulary.at_risk_ticks`).

    Returns
    -------
    DataFrame indexed by group, one int column per tick (lifelines' ``at_risk`` convention:
    a patient whose event or censoring is at t still counts at t).
    """
    rows = {}
    for label, times in groups.items():
        t = np.sort(np.asarray(times, float))
        rows[str(label)] = [int(t.size - np.searchsorted(t, tick, side="left")) for tick in ticks]
    return pd.DataFrame.from_dict(rows, orient="index", columns=list(ticks))


@dataclass
class GroupSurvival:
    """Kaplan-Meier curves per risk group and the log-rank test between groups.

    Attributes
    ----------
    curves : DataFrame (group, time, survival, lower, upper, at_risk).
    counts : DataFrame indexed by group: patients, events, median survival (KM median, NaN if not
        reached; in the cohort's time unit).
    p_value : multivariate log-rank p-value (NaN with fewer than two non-empty groups).
    statistic : its chi-square statistic.
    fitted_on_training : whether the cut-points came from training risks.
    at_risk : numbers at risk per group (rows) at ``at_risk.columns`` (times).
    """

    curves: pd.DataFrame
    counts: pd.DataFrame
    p_value: float
    statistic: float
    fitted_on_training: bool
    at_risk: pd.DataFrame | None = None


def survival_by_group(
    run: RunData,
    groups: pd.Series,
    ids: pd.Index | None = None,
    endpoint: str | None = None,
    ticks: list[float] | None = None,
) -> GroupSurvival:
    """Kaplan-Meier per risk group (optionally restricted to ``ids``) with the log-rank test and
    the numbers at risk at ``ticks`` (default: round times of the cohort's unit)."""
    from lifelines.statistics import multivariate_logrank_test

    from multimodal.dashboard.vocabulary import at_risk_ticks

    oof = run.oof(endpoint)
    if ids is not None:
        oof = oof.loc[oof.index.intersection(ids)]
    g = groups.reindex(oof.index)
    curves, counts, times = [], [], {}
    median_col = f"median survival ({run.time_unit})"
    for label in g.cat.categories:
        m = (g == label).to_numpy()
        if not m.any():
            continue
        t, e = oof["time"].to_numpy(float)[m], oof["event"].to_numpy(bool)[m]
        c = km_curve(t, e, str(label))
        curves.append(c.assign(group=str(label)))
        times[str(label)] = t
        below = c.loc[c["survival"] <= 0.5, "time"]
        counts.append(
            {
                "group": str(label),
                "patients": int(m.sum()),
                "events": int(e.sum()),
                median_col: float(below.iloc[0]) if len(below) else float("nan"),
            }
        )
    if ticks is None:
        ticks = at_risk_ticks(float(oof["time"].max()) if len(oof) else 1.0, run.time_unit)
    p, stat = float("nan"), float("nan")
    if len(counts) >= 2:
        res = multivariate_logrank_test(
            oof["time"].to_numpy(float), g.astype(str).to_numpy(), oof["event"].to_numpy(bool)
        )
        p, stat = float(res.p_value), float(res.test_statistic)
    return GroupSurvival(
        curves=pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
        counts=pd.DataFrame(counts).set_index("group") if counts else pd.DataFrame(),
        p_value=p,
        statistic=stat,
        fitted_on_training=not run.training_rows(endpoint).empty,
        at_risk=numbers_at_risk(times, ticks),
    )


def _fold_ci(values: list[float]) -> tuple[float, float, float, float]:
    """Mean, sd and a 95% t-interval of the mean over folds."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], float)
    if v.size == 0:
        return (np.nan,) * 4
    mean = float(v.mean())
    if v.size < 2:
        return mean, np.nan, np.nan, np.nan
    sd = float(v.std(ddof=1))
    half = float(stats.t.ppf(0.975, v.size - 1) * sd / np.sqrt(v.size))
    return mean, sd, mean - half, mean + half


#: How the one C-index of the dashboard is computed (shown next to it).
C_INDEX_NOTE = (
    "Harrell's C-index of each fold's validation patients, scored by the fold model that did not "
    "train on them, averaged over the folds (95% t-interval over folds); the run's `c_index`. "
    "The out-of-fold risks of different fold models are not pooled into one C-index: each model "
    "has its own risk scale, and ranking patients across models would mix them. 0.5 = chance, "
    "1 = every comparable pair ranked right."
)

_SCALES = {
    "c_index": "0.5 = chance, 1 = perfect ranking",
    "uno_c": "0.5 = chance, 1 = perfect ranking",
    "td_auc": "0.5 = chance, 1 = perfect ranking",
    "ibs": "squared error of S(t), integrated over time: 0 = perfect, 0.25 = always 50%",
}


def _fold_c_indices(run: RunData, endpoint: str | None, ids: pd.Index | None) -> list[float]:
    """Harrell's C of each fold's validation patients (those in ``ids`` when given)."""
    from multimodal.survival.metrics import harrell_c

    oof = run.oof(endpoint)
    if ids is not None:
        oof = oof.loc[oof.index.intersection(ids)]
    out = []
    for _, part in oof.groupby("fold"):
        t, e = part["time"].to_numpy(float), part["event"].to_numpy(bool)
        r = part["risk"].to_numpy(float)
        ok = np.isfinite(r)
        if ok.sum() < 2 or not e[ok].any():
            continue
        try:
            out.append(float(harrell_c(t[ok], e[ok], r[ok])))
        except ValueError:  # no comparable pair among these patients
            continue
    return out


def c_index_summary(
    run: RunData, endpoint: str | None = None, ids: pd.Index | None = None
) -> dict[str, float | int | str]:
    """The dashboard's one C-index (:data:`C_INDEX_NOTE`): ``estimate``, ``ci_low``, ``ci_high``,
    ``n_folds``, ``label`` and ``scope``.

    For the whole run the fold values are those of ``metrics.json`` (``folds[*].c_index``);
    with ``ids`` (filters) each fold's C-index is recomputed from ``predictions.csv`` over the
    fold's validation patients in ``ids``. A run without per-fold metrics gets them recomputed.
    A landmark run's C-index is the mean over its landmarks of the per-landmark C-index
    (``c_index_landmarks``); ``scope`` then says so ("" otherwise).
    """
    ep = run.endpoint(endpoint).name
    key = "c_index" if ep == run.endpoint().name else f"c_index_{ep}"
    folds = run.metrics.get("folds") or []
    scope = ""
    if run.is_landmark and ep == run.endpoint().name and ids is None:
        if any(f.get(LANDMARK_C_INDEX) is not None for f in folds):
            # a landmark run: the mean of the per-landmark C-indices, not the C over every
            # (patient, landmark) row pooled (a patient's rows are not independent pairs)
            key, scope = LANDMARK_C_INDEX, "mean over the landmarks"
    values = [f.get(key) for f in folds] if ids is None else []
    values = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not values:
        values = _fold_c_indices(run, endpoint, ids)
    mean, _, lo, hi = _fold_ci(values)
    label = f"C-index{', ' + scope if scope else ''} (mean of {len(values)} folds)"
    return {
        "estimate": mean,
        "ci_low": lo,
        "ci_high": hi,
        "n_folds": len(values),
        "label": label,
        "scope": scope,
    }


def metric_table(
    run: RunData, endpoint: str | None = None, ids: pd.Index | None = None
) -> pd.DataFrame:
    """Validation metrics with 95% confidence intervals, one row per metric.

    Rows: the C-index of :func:`c_index_summary` (over ``ids`` when given), then the per-fold
    mean of Uno's C, IBS and td-AUC from ``metrics.json`` (whole run; t-interval over folds).
    Columns: metric, estimate, 95% CI low, 95% CI high, scale (how to read the number; they are
    unitless), method.
    """
    c = c_index_summary(run, endpoint, ids)
    rows = []
    if c["n_folds"]:
        method = "Harrell's C per fold, mean over folds; t-interval over folds"
        if ids is not None:
            method += " (filtered patients)"
        rows.append(
            (c["label"], c["estimate"], c["ci_low"], c["ci_high"], _SCALES["c_index"], method)
        )
    folds = run.metrics.get("folds") or []
    ep = run.endpoint(endpoint).name
    main = run.endpoint().name
    names = {"uno_c": "Uno's C", "td_auc": "td-AUC", "ibs": "IBS"}
    for key, label in names.items():
        fold_key = key if ep == main else f"{key}_{ep}"
        values = [f.get(fold_key) for f in folds]
        if not any(v is not None for v in values):
            continue
        mean, _, lo, hi = _fold_ci(values)
        method = "mean over folds; t-interval over folds"
        if ids is not None:
            method += " (all patients of the run)"
        rows.append((f"{label} (mean of {len(values)} folds)", mean, lo, hi, _SCALES[key], method))
    columns = ["metric", "estimate", "95% CI low", "95% CI high", "scale", "method"]
    return pd.DataFrame(rows, columns=columns)


def calibration_horizons(run: RunData, max_time: float | None = None) -> dict[str, float]:
    """Round horizons for the calibration plot: 1, 3 and 5 years (or 6-month steps when the
    follow-up is shorter than a year), in the cohort's unit, up to the last evaluation time of the
    run (predicted S(t) is interpolated between evaluation times) and ``max_time``."""
    from multimodal.dashboard.vocabulary import horizon_label, round_horizons

    last = max(run.eval_times) if run.eval_times else 0.0
    limit = min(last, max_time) if max_time is not None else last
    out = {k: t for k, t in round_horizons(run.time_unit, (1, 2, 3, 4, 5)).items() if t <= limit}
    if out:
        keep = {k: t for k, t in out.items() if k in ("1 year", "3 years", "5 years")}
        return keep or out
    half = round_horizons(run.time_unit, (1,))["1 year"] / 2
    steps = [half * i for i in (1,) if half * i <= limit]
    return {horizon_label(t, run.time_unit): t for t in steps}


def calibration(
    run: RunData,
    horizon: float,
    n_groups: int = 10,
    endpoint: str | None = None,
    ids: pd.Index | None = None,
):
    """Predicted vs observed (Kaplan-Meier) S(horizon) in groups of predicted survival, on the
    out-of-fold predictions (optionally of ``ids`` only).

    ``horizon`` may be any time up to the run's last evaluation time: the predicted S(horizon) is
    interpolated between the evaluation times (:meth:`RunData.survival_at`).
    """
    from multimodal.survival.calibration import calibration_at_horizon

    oof = run.oof(endpoint)
    last = max(run.endpoint(endpoint).surv, default=0.0)
    if not 0 < horizon <= last + 1e-9:
        raise KeyError(
            f"no predicted S(t) at t={horizon:g}: the run's evaluation times end at {last:g}; "
            f"choose a horizon up to {last:g}"
        )
    surv = run.survival_at(horizon, endpoint)
    if ids is not None:
        keep = oof.index.intersection(ids)
        oof, surv = oof.loc[keep], surv.loc[keep]
    ok = np.isfinite(surv.to_numpy(float))
    return calibration_at_horizon(
        oof["time"].to_numpy(float)[ok],
        oof["event"].to_numpy(bool)[ok],
        surv.to_numpy(float)[ok],
        horizon,
        n_groups=min(n_groups, max(2, int(ok.sum()) // 10)),
    )


def _age_band(age: pd.Series) -> pd.Series:
    edges = [-np.inf, 40, 50, 60, 70, 80, np.inf]
    labels = ["<40", "40-49", "50-59", "60-69", "70-79", "80+"]
    return pd.cut(age.astype(float), edges, right=False, labels=labels).astype(object)


def patient_attributes(run: RunData, cohort=None) -> pd.DataFrame:
    """One row per out-of-fold patient: outcome, risk, group-free attributes to filter on.

    Columns: time, event, risk_centered, percentile, fold; ``site`` when the cohort has it; each
    categorical clinical covariate; ``age_band`` when there is an ``age`` column; one bool column
    per modality (``has_<modality>``) and ``modalities`` (comma-joined).
    """
    oof = run.oof()
    out = oof[["time", "event", "risk", "risk_centered", "percentile", "fold"]].copy()
    if cohort is None:
        return out
    pt = cohort.patients.reindex(out.index)
    if "site" in pt:
        out["site"] = pt["site"].astype(object)
    for name in cohort.modalities:
        src = cohort.sources[name]
        if src.kind != "clinical":
            continue
        table = src.table.reindex(out.index)
        for col in src.categorical:
            out[col] = table[col].astype(object)
        for col in src.numeric:
            out[col] = table[col].astype(float)
        if "age" in src.numeric:
            out["age_band"] = _age_band(table["age"])
    avail = cohort.availability().reindex(out.index).fillna(False).astype(bool)
    for m in avail.columns:
        out[f"has_{m}"] = avail[m].to_numpy()
    names = np.asarray(avail.columns, dtype=object)
    out["modalities"] = [",".join(names[row]) for row in avail.to_numpy(bool)]
    return out


def apply_filters(
    attrs: pd.DataFrame, selected: dict[str, list], required_modalities: list[str] | None = None
) -> pd.Index:
    """Patient ids matching every filter: ``selected`` maps a column to its allowed values (an
    empty list = no filter); ``required_modalities`` must all be present."""
    keep = np.ones(len(attrs), dtype=bool)
    for col, values in selected.items():
        if values and col in attrs:
            keep &= attrs[col].astype(str).isin([str(v) for v in values]).to_numpy()
    for m in required_modalities or []:
        col = f"has_{m}"
        if col in attrs:
            keep &= attrs[col].to_numpy(bool)
    return attrs.index[keep]


def cohort_summary(attrs: pd.DataFrame, modalities: list[str]) -> dict[str, float]:
    """Patients, events, median follow-up (reverse Kaplan-Meier; in the cohort's time unit) and
    modality coverage (share of patients, 0-1)."""
    from multimodal.survival.curves import kaplan_meier

    n = len(attrs)
    out: dict[str, float] = {"patients": n, "events": int(attrs["event"].sum()) if n else 0}
    if n:
        t, s = kaplan_meier(attrs["time"].to_numpy(float), ~attrs["event"].to_numpy(bool))
        below = t[s <= 0.5]
        out["median_follow_up"] = float(below[0]) if below.size else float(attrs["time"].max())
    else:
        out["median_follow_up"] = float("nan")
    for m in modalities:
        col = f"has_{m}"
        if col in attrs:
            out[f"coverage_{m}"] = float(attrs[col].mean()) if n else float("nan")
    return out
