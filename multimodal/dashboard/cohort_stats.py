"""Cohort-level numbers for the dashboard: risk groups, Kaplan-Meier curves, log-rank test,
metrics with confidence intervals, calibration, filters.

Risk-group cut-points are quantiles of the *training* risks of each fold (never of the patients
they are applied to); a validation patient is placed with its own fold's cut-points. Kaplan-Meier
estimates and the log-rank test come from lifelines, the calibration table from
:func:`multimodal.survival.calibration.calibration_at_horizon`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.dashboard.run_data import RunData

__all__ = [
    "GroupSurvival",
    "apply_filters",
    "calibration",
    "cohort_summary",
    "group_labels",
    "km_curve",
    "metric_table",
    "patient_attributes",
    "pooled_cutpoints",
    "risk_groups",
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


def km_curve(time: np.ndarray, event: np.ndarray, label: str = "KM") -> pd.DataFrame:
    """Kaplan-Meier estimate with its 95% CI (lifelines; Greenwood, exponential transform).

    Returns
    -------
    DataFrame with columns time, survival, lower, upper, at_risk (one row per step, from t=0).
    """
    from lifelines import KaplanMeierFitter

    kmf = KaplanMeierFitter(label=label).fit(np.asarray(time, float), np.asarray(event, bool))
    sf = kmf.survival_function_.iloc[:, 0]
    ci = kmf.confidence_interval_survival_function_
    table = kmf.event_table
    return pd.DataFrame(
        {
            "time": sf.index.to_numpy(float),
            "survival": sf.to_numpy(float),
            "lower": ci.iloc[:, 0].to_numpy(float),
            "upper": ci.iloc[:, 1].to_numpy(float),
            "at_risk": table["at_risk"].reindex(sf.index).to_numpy(),
        }
    )


@dataclass
class GroupSurvival:
    """Kaplan-Meier curves per risk group and the log-rank test between groups.

    Attributes
    ----------
    curves : DataFrame (group, time, survival, lower, upper, at_risk).
    counts : DataFrame indexed by group: n, events, median_time (KM median, NaN if not reached).
    p_value : multivariate log-rank p-value (NaN with fewer than two non-empty groups).
    statistic : its chi-square statistic.
    fitted_on_training : whether the cut-points came from training risks.
    """

    curves: pd.DataFrame
    counts: pd.DataFrame
    p_value: float
    statistic: float
    fitted_on_training: bool


def survival_by_group(
    run: RunData, groups: pd.Series, ids: pd.Index | None = None, endpoint: str | None = None
) -> GroupSurvival:
    """Kaplan-Meier per risk group (optionally restricted to ``ids``) with the log-rank test."""
    from lifelines.statistics import multivariate_logrank_test

    oof = run.oof(endpoint)
    if ids is not None:
        oof = oof.loc[oof.index.intersection(ids)]
    g = groups.reindex(oof.index)
    curves, counts = [], []
    for label in g.cat.categories:
        m = (g == label).to_numpy()
        if not m.any():
            continue
        t, e = oof["time"].to_numpy(float)[m], oof["event"].to_numpy(bool)[m]
        c = km_curve(t, e, str(label))
        curves.append(c.assign(group=str(label)))
        below = c.loc[c["survival"] <= 0.5, "time"]
        counts.append(
            {
                "group": str(label),
                "n": int(m.sum()),
                "events": int(e.sum()),
                "median_time": float(below.iloc[0]) if len(below) else float("nan"),
            }
        )
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


def metric_table(
    run: RunData, n_boot: int = 200, endpoint: str | None = None, ids: pd.Index | None = None
) -> pd.DataFrame:
    """Validation metrics with 95% confidence intervals.

    Rows: Harrell's C pooled over the out-of-fold predictions (percentile bootstrap CI), then the
    per-fold mean of each metric in ``metrics.json`` (C-index, Uno's C, IBS, td-AUC; t-interval
    over folds). With ``ids`` the pooled C-index is over those patients only (the per-fold rows
    stay those of the whole run). Columns: metric, estimate, ci_low, ci_high, method.
    """
    from multimodal.survival.metrics import bootstrap_ci, harrell_c

    rows = []
    oof = run.oof(endpoint)
    if ids is not None:
        oof = oof.loc[oof.index.intersection(ids)]
    if oof["event"].any() and len(oof) > 1:
        est, lo, hi = bootstrap_ci(
            harrell_c,
            oof["time"].to_numpy(float),
            oof["event"].to_numpy(bool),
            oof["risk_centered"].to_numpy(float),
            n_boot=n_boot,
        )
        rows.append(
            {
                "metric": "C-index (pooled out-of-fold)",
                "estimate": est,
                "ci_low": lo,
                "ci_high": hi,
                "method": f"bootstrap, {n_boot} resamples",
            }
        )
    folds = run.metrics.get("folds") or []
    ep = run.endpoint(endpoint).name
    main = run.endpoint().name
    names = {"c_index": "C-index", "uno_c": "Uno's C", "ibs": "IBS", "td_auc": "td-AUC"}
    for key, label in names.items():
        fold_key = key if ep == main else f"{key}_{ep}"
        values = [f.get(fold_key) for f in folds]
        if not any(v is not None for v in values):
            continue
        mean, _, lo, hi = _fold_ci(values)
        rows.append(
            {
                "metric": f"{label} (mean of {len(values)} folds)",
                "estimate": mean,
                "ci_low": lo,
                "ci_high": hi,
                "method": "t-interval over folds",
            }
        )
    return pd.DataFrame(rows, columns=["metric", "estimate", "ci_low", "ci_high", "method"])


def calibration(
    run: RunData,
    horizon: float,
    n_groups: int = 10,
    endpoint: str | None = None,
    ids: pd.Index | None = None,
):
    """Predicted vs observed (Kaplan-Meier) S(horizon) in groups of predicted survival, on the
    out-of-fold predictions (optionally of ``ids`` only); ``horizon`` must be one of the run's
    eval times."""
    from multimodal.survival.calibration import calibration_at_horizon

    oof = run.oof(endpoint)
    if ids is not None:
        oof = oof.loc[oof.index.intersection(ids)]
    col = f"surv_{horizon:g}"
    if col not in oof:
        raise KeyError(f"no predicted S(t) at t={horizon:g}; choose one of {run.eval_times}")
    ok = np.isfinite(oof[col].to_numpy(float))
    return calibration_at_horizon(
        oof["time"].to_numpy(float)[ok],
        oof["event"].to_numpy(bool)[ok],
        oof[col].to_numpy(float)[ok],
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
    """Patients, events, median follow-up (reverse Kaplan-Meier) and modality coverage."""
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
