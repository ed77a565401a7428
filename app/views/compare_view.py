"""Compare view: two or more patients' predicted survival curves side by side, with their event
probabilities by 1, 3 and 5 years and hazard ratios against the cohort's median patient."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard.figures import Curve, curves_figure
from multimodal.dashboard.patient import horizons_for, oof_prediction
from multimodal.dashboard.vocabulary import event_probability_label, fmt_hr, fmt_pct, time_axis

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
    if ctx.cohort_path:
        pred = predict_patients(
            ctx.run_dir, ctx.cohort_path, tuple(chosen), float(run.max_time), unit
        )
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
        row = {
            "patient": pid,
            "risk percentile (%)": round(float(oof.loc[pid, "percentile"]), 1),
        }
        if run.proportional_hazards:
            row["hazard ratio vs median patient"] = fmt_hr(pred.hazard_ratios(pid, fold)[0])
        row["median survival"] = fmt_time(pred.median(pid, fold)[0], unit)
        for label, t in horizons_for(unit).items():
            row[event_probability_label(label)] = fmt_pct(pred.event_probability(pid, t, fold)[0])
        rows.append(row)
    st.plotly_chart(
        curves_figure(curves, "", time_axis(unit), height=440),
        width="stretch",
        key="compare_curves",
    )
    st.caption(
        "Survival probability. Curves: each patient's out-of-fold model (the fold model that did "
        "not train on the patient); bands: range of the fold models' curves."
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
    curve_downloads(curves, long, "Predicted survival", unit, "compare", "cmp")
    csv_download("Download the table (CSV)", table, "compare_table.csv", "dl_cmp_table", index=True)
