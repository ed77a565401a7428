"""Cohort view: who is in the run, how the predicted risk groups fare, how good the model is."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import cohort_stats
from multimodal.dashboard.figures import Curve, calibration_figure, calibration_png, curves_figure

from .common import Ctx, csv_download, curve_downloads, get_attributes, get_groups, get_metric_table

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


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.header("Cohort")
    cohort_path = ctx.cohort_path
    attrs = get_attributes(run, ctx.run_dir, cohort_path)
    modalities = run.modalities
    ids = _filters(attrs, modalities) if cohort_path else attrs.index
    sub = attrs.loc[ids]
    summary = cohort_stats.cohort_summary(sub, modalities)

    cols = st.columns(3 + len(modalities))
    cols[0].metric("patients", f"{summary['patients']:,}")
    cols[1].metric("events", f"{summary['events']:,}")
    cols[2].metric(f"median follow-up ({ctx.unit})", f"{summary['median_follow_up']:.1f}")
    for i, m in enumerate(modalities):
        cov = summary.get(f"coverage_{m}")
        cols[3 + i].metric(
            m, "n/a" if cov is None else f"{100 * cov:.0f}%", help=f"share of patients with {m}"
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
    groups = get_groups(run, ctx.run_dir, n_groups, ep)
    gs = cohort_stats.survival_by_group(run, groups, ids, ep)

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
    st.plotly_chart(
        curves_figure(curves, title, f"time ({ctx.unit})"), width="stretch", key="km_groups"
    )
    basis = (
        "Cut-points: quantiles of each fold's training risks, applied to its validation patients."
        if gs.fitted_on_training
        else "The run saved no training predictions: cut-points are quantiles of the validation risks."
    )
    st.caption(
        f"{basis} Curves use out-of-fold predictions. Log-rank p = {p} (chi² = {gs.statistic:.2f})."
    )
    st.dataframe(gs.counts, width="content")
    curve_downloads(curves, gs.curves, title, ctx.unit, "km_by_risk_group", "km")

    st.subheader("Discrimination and prediction error")
    table = get_metric_table(run, ctx.run_dir, ep, tuple(ids) if len(ids) < len(attrs) else None)
    st.dataframe(
        table.style.format({"estimate": "{:.3f}", "ci_low": "{:.3f}", "ci_high": "{:.3f}"}),
        width="stretch",
        hide_index=True,
    )
    if len(ids) < len(attrs):
        st.caption(
            "The pooled C-index is over the filtered patients; the per-fold rows are the whole run's."
        )

    st.subheader("Calibration")
    times = [t for t in run.eval_times if t < sub["time"].max()]
    if not times:
        st.info("No eval time lies inside the follow-up of these patients.")
        return
    default = int(np.argmin([abs(t - 12.0) for t in times]))
    horizon = st.selectbox(
        "horizon", times, index=default, format_func=lambda t: f"{t:.1f} {ctx.unit}", key="horizon"
    )
    try:
        cal = cohort_stats.calibration(run, horizon, endpoint=ep, ids=ids)
    except ValueError as exc:
        st.info(f"Calibration not available: {exc}")
        return
    st.plotly_chart(
        calibration_figure(cal.table, horizon, ctx.unit), width="stretch", key="calibration"
    )
    st.caption(
        f"Groups of predicted S({horizon:g}); observed = Kaplan-Meier of each group. ICI = {cal.ici:.3f}, "
        f"E50 = {cal.e50:.3f}, E90 = {cal.e90:.3f}."
    )
    c1, c2 = st.columns(2)
    with c1:
        st.download_button(
            "Download PNG",
            data=lambda: calibration_png(cal.table, horizon, ctx.unit),
            file_name="calibration.png",
            mime="image/png",
            key="dl_cal_png",
        )
    with c2:
        csv_download("Download CSV", cal.table, "calibration.csv", "dl_cal_csv")
