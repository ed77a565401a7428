"""Cohort view: who is in the run, how the predicted risk groups fare, how good the model is."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats
from multimodal.dashboard.figures import Curve, calibration_figure, calibration_png, curves_figure
from multimodal.dashboard.landmark import landmark_metric_table
from multimodal.dashboard.vocabulary import fmt_horizon, time_axis, time_since_axis

from .common import (
    Ctx,
    at_risk_caption,
    csv_download,
    curve_downloads,
    fmt_time,
    get_attributes,
    get_groups,
    get_metric_table,
)

FILTERS = ("site", "sex", "stage", "age_band")


def _filters(attrs: pd.DataFrame, modalities: list[str]) -> pd.Index:
    cols = [c for c in FILTERS if c in attrs] + [
        c
        for c in attrs.columns
        if attrs[c].dtype == object and c not in FILTERS and c != "modalities"
    ]
    with st.expander("Filters", expanded=False):
        boxes = st.columns(max(1, min(len(cols) + 1, 5)))
        selected = {}
        for i, col in enumerate(cols):
            values = sorted(attrs[col].dropna().astype(str).unique())
            selected[col] = boxes[i % len(boxes)].multiselect(
                col.replace("_", " "), values, key=f"f_{col}"
            )
        need = boxes[-1].multiselect("modalities available", modalities, key="f_modalities")
    return cohort_stats.apply_filters(attrs, selected, need)


def _landmark_view(ctx: Ctx) -> Ctx:
    """A landmark run: the landmark to look at (a select box) and the run as seen there."""
    run = ctx.run
    setup = run.landmark_setup
    horizon = fmt_horizon(run.horizon, ctx.unit) if run.horizon is not None else "n/a"
    s = st.selectbox(
        "landmark",
        run.landmarks,
        format_func=lambda v: f"{v:g} {ctx.unit}",
        key="landmark",
        help="The patients still followed at this time, each predicted from what was measured "
        "up to it.",
    )
    view = run.at_landmark(s)
    st.caption(
        f"Landmark run: every patient still followed at a landmark is predicted from what was "
        f"measured up to it, for the next {horizon}. Shown: the landmark {s:g} {ctx.unit} — "
        f"times count from it and stop at the horizon, {horizon} later; events after it are "
        "censored there. Landmarks the model was trained at: "
        f"{', '.join(f'{t:g}' for t in (setup.times if setup else run.landmarks))} {ctx.unit}."
    )
    return replace(ctx, run=view)


def render(ctx: Ctx) -> None:
    st.header("Cohort")
    base = ctx
    if ctx.run.is_landmark:
        ctx = _landmark_view(ctx)
    run = ctx.run
    unit = ctx.unit
    cohort_path = ctx.cohort_path
    attrs = get_attributes(run, ctx.run_key, cohort_path)
    modalities = run.modalities
    ids = _filters(attrs, modalities) if cohort_path else attrs.index
    sub = attrs.loc[ids]
    summary = cohort_stats.cohort_summary(sub, modalities)
    filtered = len(ids) < len(attrs)

    cols = st.columns(3)
    cols[0].metric("patients", f"{summary['patients']:,}")
    cols[1].metric("events", f"{summary['events']:,}")
    cols[2].metric(
        "median follow-up",
        fmt_time(summary["median_follow_up"], unit),
        help="reverse Kaplan-Meier: the median time to censoring, events treated as censored",
    )
    if modalities:
        cov = st.columns(len(modalities))
        for i, m in enumerate(modalities):
            share = summary.get(f"coverage_{m}")
            cov[i].metric(
                f"{m} coverage",
                "n/a" if share is None else f"{100 * share:.0f}%",
                help=f"share of patients with {m}",
            )
    if len(sub) < 2 or not sub["event"].any():
        st.warning("Fewer than two patients or no events match the filters; widen them.")
        return

    endpoints = [e.name for e in run.endpoints]
    left, right = st.columns([1, 1])
    ep = (
        left.selectbox("endpoint", endpoints, format_func=lambda n: run.endpoint(n).label)
        if len(endpoints) > 1
        else endpoints[0]
    )
    n_groups = right.selectbox("risk groups", [2, 3, 4], index=1, key="n_groups")
    groups = get_groups(run, ctx.run_key, n_groups, ep)
    gs = cohort_stats.survival_by_group(run, groups, ids, ep)
    _km_section(ctx, gs, ep)
    if base.run.is_landmark:
        _landmark_metrics_section(base, filtered)
    else:
        _metrics_section(ctx, ep, ids if filtered else None)
    _calibration_section(ctx, sub, ep, ids)


def _km_section(ctx: Ctx, gs, ep: str) -> None:
    run, unit = ctx.run, ctx.unit
    st.subheader(f"Kaplan-Meier by predicted risk group ({run.endpoint(ep).label})")
    curves = [
        Curve(
            g,
            part["time"].to_numpy(),
            part["survival"].to_numpy(),
            part["lower"].to_numpy(),
            part["upper"].to_numpy(),
            step=True,
        )
        for g, part in gs.curves.groupby("group", sort=False)
    ]
    p = (
        "n/a"
        if np.isnan(gs.p_value)
        else (f"{gs.p_value:.2e}" if gs.p_value < 1e-3 else f"{gs.p_value:.3f}")
    )
    title = f"log-rank p = {p}"
    xlabel = time_axis(unit) if run.landmark_at is None else time_since_axis(unit)
    st.plotly_chart(
        curves_figure(curves, title, xlabel, at_risk=gs.at_risk),
        width="stretch",
        key="km_groups",
    )
    basis = (
        "Cut-points: quantiles of each fold's training risks, applied to its validation patients."
        if gs.fitted_on_training
        else "The run saved no training predictions: cut-points are quantiles of the validation risks."
    )
    st.caption(
        f"{basis} Curves use out-of-fold predictions; bands are 95% confidence intervals. "
        f"Log-rank p = {p} (chi² = {gs.statistic:.2f})."
    )
    at_risk_caption(gs.at_risk, unit)
    median_col = f"median survival ({unit})"
    # values formatted here: a pandas Styler would import jinja2 (about 1 s on a cold start)
    counts = gs.counts.assign(**{median_col: [fmt_time(t, unit) for t in gs.counts[median_col]]})
    st.dataframe(counts, width="content")
    table = gs.curves.rename(columns={"time": f"time ({unit})"})
    curve_downloads(
        curves, table, title, unit, "km_by_risk_group", "km", at_risk=gs.at_risk, xlabel=xlabel
    )


def _metrics_section(ctx: Ctx, ep: str, ids: pd.Index | None) -> None:
    run = ctx.run
    st.subheader("Discrimination and prediction error")
    table = get_metric_table(run, ctx.run_key, ep, tuple(ids) if ids is not None else None)
    number = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(
        table,
        width="stretch",
        hide_index=True,
        column_config={"estimate": number, "95% CI low": number, "95% CI high": number},
    )
    st.caption(cohort_stats.C_INDEX_NOTE)
    if ids is not None:
        st.caption(
            "With filters, the C-index is recomputed for each fold over its filtered validation "
            "patients; Uno's C, IBS and td-AUC stay those of the whole run."
        )


def _landmark_metrics_section(ctx: Ctx, filtered: bool) -> None:
    """A landmark run's metrics: the C-index and Brier score at each landmark it was scored at."""
    run = ctx.run
    horizon = fmt_horizon(run.horizon, ctx.unit) if run.horizon is not None else "n/a"
    title = f"C-index and Brier score at each landmark (horizon {run.horizon:g} {ctx.unit})"
    st.subheader(title)
    table = landmark_metric_table(run)
    if table.empty:
        st.info("metrics.json holds no per-landmark metrics: run `multimodal evaluate RUN_DIR`.")
        return
    number = st.column_config.NumberColumn(format="%.3f")
    count = st.column_config.NumberColumn(format="%d")
    st.dataframe(
        table,
        width="stretch",
        hide_index=True,
        column_config={
            "C-index": number,
            "Brier score": number,
            "patients at risk": count,
            table.columns[2]: count,
        },
    )
    st.caption(
        f"At each landmark s, the validation patients still followed at s, scored by the fold "
        f"model that did not train on them, on what happens in the next {horizon}: Harrell's "
        "C-index (0.5 = chance, 1 = perfect ranking) and the IPCW Brier score of the predicted "
        f"survival probability {horizon} after s (0 = perfect, 0.25 = always 50%); means over "
        "the folds with 95% t-intervals over folds. The last row, the mean over the landmarks, "
        "is the sidebar's C-index."
        + (" The table is for all patients of the run (filters do not apply)." if filtered else "")
    )
    csv_download("Download CSV", table, "landmark_metrics.csv", "dl_landmark_metrics")


def _calibration_section(ctx: Ctx, sub: pd.DataFrame, ep: str, ids: pd.Index) -> None:
    run, unit = ctx.run, ctx.unit
    st.subheader("Calibration")
    horizons = cohort_stats.calibration_horizons(run, float(sub["time"].max()))
    if not horizons:
        st.info(
            "No round horizon (1, 3, 5 years) lies inside both the follow-up of these patients "
            "and the run's evaluation times."
        )
        return
    labels = list(horizons)
    label = st.selectbox(
        "horizon",
        labels,
        format_func=lambda k: f"{k} ({horizons[k]:g} {unit})",
        key="horizon",
    )
    horizon = horizons[label]
    try:
        cal = cohort_stats.calibration(run, horizon, endpoint=ep, ids=ids)
    except (KeyError, ValueError) as exc:
        st.info(f"Calibration not available: {exc}")
        return
    shown = f"{label} ({horizon:g} {unit})"
    st.plotly_chart(calibration_figure(cal.table, shown), width="stretch", key="calibration")
    st.caption(
        f"Patients in groups of predicted survival probability at {shown}; observed = Kaplan-Meier "
        f"of each group. The predicted value at {horizon:g} {unit} is interpolated between the "
        "run's evaluation times. Calibration errors in probability: "
        f"ICI = {cal.ici:.3f}, E50 = {cal.e50:.3f}, E90 = {cal.e90:.3f} (0 = perfect)."
    )
    c1, c2 = st.columns(2)
    with c1:
        st.download_button(
            "Download PNG",
            data=lambda: calibration_png(cal.table, shown),
            file_name="calibration.png",
            mime="image/png",
            key="dl_cal_png",
        )
    with c2:
        csv_download("Download CSV", cal.table, "calibration.csv", "dl_cal_csv")
