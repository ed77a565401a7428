"""Compare view: two or more patients' predicted survival curves side by side, with their event
probabilities by 1, 3 and 5 years and hazard ratios against the cohort's median patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard.cohort_stats import risk_position
from multimodal.dashboard.figures import Curve, curves_figure
from multimodal.dashboard.patient import (
    curve_limit,
    latest_landmark_prediction,
    oof_prediction,
    run_horizons,
)
from multimodal.dashboard.vocabulary import (
    event_probability_label,
    fmt_hr,
    fmt_pct,
    time_axis,
    time_since_axis,
)

from .common import Ctx, csv_download, curve_downloads, fmt_time, predict_patients


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.header("Compare patients")
    ids = sorted(run.oof().index.astype(str))
    chosen = st.multiselect("patients", ids, default=ids[:2], key="compare_ids", max_selections=8)
    if len(chosen) < 2:
        st.info("Choose two or more patients.")
        return
    unit = ctx.unit
    oof = run.oof()
    since = "the latest visit" if run.is_landmark else None
    if ctx.cohort_path:
        pred = predict_patients(ctx.run_dir, ctx.cohort_path, tuple(chosen), curve_limit(run), unit)
    elif run.is_landmark:  # saved predictions at each patient's latest landmark
        pred = latest_landmark_prediction(run, list(chosen))
        since = "the latest landmark"
    else:  # the fold models' predictions saved in the run, at its evaluation times
        pred = oof_prediction(run, list(chosen))
    rows, curves = [], []
    for pid in chosen:
        fold = int(oof.loc[pid, "fold"])
        c = pred.curve(pid, fold)
        ok = np.isfinite(c["survival"].to_numpy(float))
        curves.append(
            Curve(
                pid,
                c["time"].to_numpy()[ok],
                c["survival"].to_numpy()[ok],
                c["lower"].to_numpy()[ok],
                c["upper"].to_numpy()[ok],
            )
        )
        pct = float(oof.loc[pid, "percentile"])
        if since is not None:  # among the training rows, at the moment predicted from
            pct = risk_position(run, pred.risk(pid, fold), fold)[1]
        row = {"patient": pid, "risk percentile (%)": round(pct, 1)}
        if run.proportional_hazards:
            row["hazard ratio vs median patient"] = fmt_hr(pred.hazard_ratios(pid, fold)[0])
        row["median survival"] = fmt_time(pred.median(pid, fold)[0], unit)
        for label, t in run_horizons(run).items():
            p = pred.event_probability(pid, t, fold)[0]
            row[event_probability_label(label, within=since is not None)] = fmt_pct(p)
        rows.append(row)
    xlabel = time_axis(unit) if since is None else time_since_axis(unit, since)
    st.plotly_chart(
        curves_figure(curves, "", xlabel, height=440),
        width="stretch",
        key="compare_curves",
    )
    st.caption(
        "Survival probability. Curves: each patient's out-of-fold model (the fold model that did "
        "not train on the patient); bands: range of the fold models' curves."
        + (
            f" Landmark run: each patient predicted at {since}, from what was measured up to "
            "then; times count from it."
            if since
            else ""
        )
    )
    table = pd.DataFrame(rows).set_index("patient")
    st.dataframe(table, width="stretch")
    st.caption(
        "Event probability by t = 1 − survival probability at t, from the out-of-fold model. "
        "Hazard ratio: against the median patient of that model's training patients."
    )
    long = pd.concat(
        [
            pd.DataFrame({"patient": c.name, f"time ({unit})": c.x, "survival probability": c.y})
            for c in curves
        ]
    )
    curve_downloads(curves, long, "Predicted survival", unit, "compare", "cmp", xlabel=xlabel)
    csv_download("Download the table (CSV)", table, "compare_table.csv", "dl_cmp_table", index=True)
