"""Risk groups with cut-points fitted on training patients, and Kaplan-Meier curves per group.

Cut-points are quantiles of training-patient risks, never of the patients being grouped:

- with a run's predictions (``split`` column), each validation patient is grouped with the
  cut-points of its own fold's training patients (out-of-fold risk groups);
- with a trained model and a new cohort, the cut-points are the fold models' training-risk
  quantiles (centred like the ensemble's risks), averaged over the fold models;
- ``cut_points=[...]`` fixes them; ``fit_on="self"`` uses the grouped patients' own quantiles
  (exploration only: the groups are then balanced by construction).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from multimodal.cohort_analysis._inputs import (
    _is_model,
    as_predictions,
    run_predictions,
    validation_rows,
)
from multimodal.exceptions import DataError
from multimodal.runfolder import RunFolder

__all__ = [
    "group_labels",
    "km_by_group",
    "km_curves",
    "plot_km",
    "risk_groups",
    "rmst_variance",
]


def group_labels(n_groups: int) -> list[str]:
    """``low``/``high``, ``low``/``intermediate``/``high``, else ``G1`` (lowest risk) .. ``Gk``."""
    if n_groups == 2:
        return ["low", "high"]
    if n_groups == 3:
        return ["low", "intermediate", "high"]
    return [f"G{k + 1}" for k in range(n_groups)]


def _quantile_cuts(risk: np.ndarray, n_groups: int) -> np.ndarray:
    risk = np.asarray(risk, float)
    risk = risk[np.isfinite(risk)]
    if len(risk) < n_groups:
        raise DataError(f"{len(risk)} training risks cannot define {n_groups} risk groups")
    return np.quantile(risk, np.arange(1, n_groups) / n_groups)


def _assign(frame: pd.DataFrame, cuts: np.ndarray, labels: list[str]) -> pd.DataFrame:
    g = np.searchsorted(cuts, frame["risk"].to_numpy(float), side="right")
    bounds = np.concatenate([[-np.inf], cuts, [np.inf]])
    out = frame.assign(group=g, label=[labels[k] for k in g], lower=bounds[g], upper=bounds[g + 1])
    return out.reset_index(drop=True)


def _model_cuts(model: Any, n_groups: int) -> np.ndarray:
    run_dir = getattr(model, "run_dir", None)
    if run_dir is None or not RunFolder(run_dir).predictions_path.is_file():
        raise DataError(
            "fit_on='train' needs the run's predictions.csv (training-patient risks); pass "
            "cut_points=[...] or fit_on=<training cohort>"
        )
    preds = run_predictions(run_dir)
    train = preds[preds["split"] == "train"]
    return np.mean(
        [_quantile_cuts(g["risk"].to_numpy(), n_groups) for _, g in train.groupby("fold")], axis=0
    )


def risk_groups(
    source: Any,
    cohort: Any = None,
    n_groups: int = 3,
    cut_points: Sequence[float] | None = None,
    fit_on: Literal["train", "self"] | Any = "train",
) -> pd.DataFrame:
    """Assign patients to risk groups with cut-points fitted on training patients.

    Parameters
    ----------
    source : a run folder, its predictions DataFrame (``patient_id, fold, split, risk, ...``), a
        :class:`~multimodal.models.run.TrainedModel` (then ``cohort`` is required) or a DataFrame
        ``patient_id, risk`` (then ``cut_points`` or ``fit_on="self"``).
    cohort : the patients (outcomes, and the patients a model predicts for).
    n_groups : number of quantile groups (ignored with ``cut_points``).
    cut_points : fixed increasing risk thresholds (``len(cut_points) + 1`` groups).
    fit_on : ``"train"`` (training patients, see the module docstring), ``"self"``, or a cohort
        (for a model: quantiles of the ensemble's risks on that cohort, e.g. the training cohort).

    Returns
    -------
    DataFrame, one row per grouped patient: ``patient_id, risk, time, event, group`` (0 = lowest
    risk), ``label``, ``lower, upper`` (the group's cut-points) and ``fold`` when out-of-fold.
    """
    frame = as_predictions(source, cohort)
    if cut_points is not None:
        cuts = np.sort(np.asarray(cut_points, float))
        n_groups = len(cuts) + 1
    labels = group_labels(n_groups)
    if n_groups < 2:
        raise ValueError(f"n_groups is {n_groups}; risk groups need at least 2")
    if cut_points is not None:
        return _assign(validation_rows(frame), cuts, labels)
    if isinstance(fit_on, str) and fit_on == "self":
        rows = validation_rows(frame)
        return _assign(rows, _quantile_cuts(rows["risk"], n_groups), labels)
    if not isinstance(fit_on, str):  # a cohort to fit on
        if not _is_model(source):
            raise DataError("fit_on=<cohort> needs a TrainedModel as source")
        ref = source.predict_risk(fit_on).to_numpy()
        return _assign(frame, _quantile_cuts(ref, n_groups), labels)
    if fit_on != "train":
        raise ValueError(f"fit_on is {fit_on!r}; use 'train', 'self' or a training cohort")
    if _is_model(source):
        return _assign(frame, _model_cuts(source, n_groups), labels)
    if "split" not in frame.columns or not (frame["split"] == "train").any():
        raise DataError(
            "fit_on='train' needs training rows (split == 'train', as in a run's "
            "predictions.csv); pass cut_points=[...] or fit_on='self'"
        )
    parts = []
    for _, rows in frame.groupby("fold"):
        cuts = _quantile_cuts(rows.loc[rows["split"] == "train", "risk"], n_groups)
        parts.append(_assign(rows[rows["split"] != "train"], cuts, labels))
    return pd.concat(parts, ignore_index=True)


def rmst_variance(time: np.ndarray, event: np.ndarray, horizon: float) -> float:
    """Greenwood-type variance of the Kaplan-Meier RMST up to ``horizon``:
    ``sum_{t_i <= horizon} A_i^2 d_i / (n_i (n_i - d_i))`` with ``A_i`` the area under the curve
    from ``t_i`` to the horizon (Klein & Moeschberger 4.5). Written out because lifelines
    integrates the step function numerically, which is slow and loses accuracy."""
    t, e = np.asarray(time, float), np.asarray(event, bool)
    times = np.unique(t[e & (t <= horizon)])
    if not len(times):
        return 0.0
    at_risk = np.array([(t >= u).sum() for u in times], float)
    deaths = np.array([(e & (t == u)).sum() for u in times], float)
    surv = np.cumprod(1.0 - deaths / at_risk)
    edges = np.append(times, horizon)
    area = surv * np.diff(edges)  # S is constant on [t_i, t_{i+1})
    tail = np.cumsum(area[::-1])[::-1]  # A_i = integral of S from t_i to the horizon
    ok = at_risk > deaths
    return float(np.sum(tail[ok] ** 2 * deaths[ok] / (at_risk[ok] * (at_risk[ok] - deaths[ok]))))


def _default_horizon(groups: pd.DataFrame) -> float:
    """The shortest follow-up among the groups: every group is observed up to it."""
    return float(groups.groupby("group")["time"].max().min())


def km_by_group(groups: pd.DataFrame, horizon: float | None = None) -> pd.DataFrame:
    """Kaplan-Meier summary per risk group, log-rank tests and RMST differences (lifelines).

    Parameters
    ----------
    groups : output of :func:`risk_groups` (``time, event, group, label``).
    horizon : restriction time of the RMST and time of ``surv_at_horizon`` (default: the
        shortest follow-up among the groups).

    Returns
    -------
    DataFrame, one row per group: ``group, label, n, events, median_survival, horizon,
    surv_at_horizon, surv_low, surv_high, rmst, rmst_diff`` (vs the lowest-risk group, with
    ``rmst_diff_low, rmst_diff_high``: 95% normal CI), ``logrank_p_vs_low`` (two-group log-rank
    test of this group against the lowest-risk group; 1.0 on that group's row) and ``logrank_p``
    (multivariate log-rank over every group; the same on every row, NaN with a single group).
    """
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test, multivariate_logrank_test
    from lifelines.utils import restricted_mean_survival_time

    from multimodal.cohort_analysis._inputs import kaplan_meier_at

    if not len(groups):
        raise DataError("km_by_group: no patients")
    horizon = _default_horizon(groups) if horizon is None else float(horizon)
    t, e = groups["time"].to_numpy(float), groups["event"].to_numpy(bool)
    test = multivariate_logrank_test(t, groups["group"].to_numpy(), e)
    rows, ref = [], None
    for g, part in groups.groupby("group", sort=True):
        tg, eg = part["time"].to_numpy(float), part["event"].to_numpy(bool)
        kmf = KaplanMeierFitter().fit(tg, eg)
        rmst = restricted_mean_survival_time(kmf, t=horizon)
        var = rmst_variance(tg, eg, horizon)
        s, lo, hi = kaplan_meier_at(tg, eg, horizon)
        if ref is None:
            ref = (rmst, var, tg, eg)
        diff = rmst - ref[0]
        se = np.sqrt(var + ref[1]) if g != groups["group"].min() else 0.0
        p_low = logrank_test(tg, ref[2], eg, ref[3]).p_value if g != groups["group"].min() else 1.0
        rows.append(
            {
                "group": int(g),
                "label": part["label"].iloc[0],
                "n": len(part),
                "events": int(eg.sum()),
                "median_survival": float(kmf.median_survival_time_),
                "horizon": horizon,
                "surv_at_horizon": s,
                "surv_low": lo,
                "surv_high": hi,
                "rmst": float(rmst),
                "rmst_diff": float(diff),
                "rmst_diff_low": float(diff - 1.96 * se),
                "rmst_diff_high": float(diff + 1.96 * se),
                "logrank_p_vs_low": float(p_low),
                "logrank_p": float(test.p_value),
            }
        )
    return pd.DataFrame(rows)


def km_curves(groups: pd.DataFrame) -> pd.DataFrame:
    """Kaplan-Meier curves per group in long form: ``group, label, time, survival, ci_low,
    ci_high, at_risk`` (for plotting or export)."""
    from lifelines import KaplanMeierFitter

    frames = []
    for g, part in groups.groupby("group", sort=True):
        kmf = KaplanMeierFitter().fit(part["time"].to_numpy(float), part["event"].to_numpy(bool))
        ci = kmf.confidence_interval_survival_function_
        frames.append(
            pd.DataFrame(
                {
                    "group": int(g),
                    "label": part["label"].iloc[0],
                    "time": kmf.survival_function_.index.to_numpy(float),
                    "survival": kmf.survival_function_.iloc[:, 0].to_numpy(float),
                    "ci_low": ci.iloc[:, 0].to_numpy(float),
                    "ci_high": ci.iloc[:, 1].to_numpy(float),
                    "at_risk": kmf.event_table["at_risk"].to_numpy(int),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def plot_km(groups: pd.DataFrame, ax: Any = None, title: str | None = None) -> Any:
    """Kaplan-Meier curves per risk group with 95% bands on a matplotlib axis (returned)."""
    import matplotlib.pyplot as plt

    ax = ax or plt.subplots(figsize=(6, 4))[1]
    curves = km_curves(groups)
    p = km_by_group(groups)["logrank_p"].iloc[0]
    for (_, label), c in curves.groupby(["group", "label"], sort=True):
        line = ax.step(
            c["time"],
            c["survival"],
            where="post",
            label=f"{label} (n={len(groups[groups.label == label])})",
        )
        ax.fill_between(
            c["time"], c["ci_low"], c["ci_high"], step="post", alpha=0.15, color=line[0].get_color()
        )
    ax.set(xlabel="time", ylabel="survival", ylim=(0, 1.02))
    ax.set_title(title or f"Kaplan-Meier by risk group (log-rank p = {p:.2g})")
    ax.legend()
    return ax
