"""Compare view: two or more patients' predicted survival curves side by side."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard.figures import Curve, curves_figure
from multimodal.dashboard.patient import horizons_for

from .common import Ctx, curve_downloads, fmt_time, predict_patients


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
    rows, curves = [], []
    if ctx.cohort_path:
        pred = predict_patients(
            ctx.run_dir, ctx.cohort_path, tuple(chosen), float(run.max_time), unit
        )
        for pid in chosen:
            fold = int(oof.loc[pid, "fold"])
            c = pred.curve(pid, fold)
            curves.append(
                Curve(
                    pid,
                    c["time"].to_numpy(),
                    c["survival"].to_numpy(),
                    c["lower"].to_numpy(),
                    c["upper"].to_numpy(),
                )
            )
            med = pred.median(pid, fold)[0]
            row = {
                "patient": pid,
                "risk percentile": round(float(oof.loc[pid, "percentile"]), 1),
                "predicted median": fmt_time(med, unit),
            }
            for label, t in horizons_for(unit).items():
                row[f"S at {label}"] = round(pred.at(pid, t, fold)[0], 3)
            rows.append(row)
    else:  # out-of-fold values at the eval times only
        times = np.asarray([0.0, *run.eval_times])
        for pid in chosen:
            vals = np.asarray([1.0, *[oof.loc[pid, f"surv_{t:g}"] for t in run.eval_times]])
            curves.append(Curve(pid, times, vals))
            rows.append(
                {"patient": pid, "risk percentile": round(float(oof.loc[pid, "percentile"]), 1)}
            )
    st.plotly_chart(
        curves_figure(curves, "", f"time ({unit})", height=440),
        width="stretch",
        key="compare_curves",
    )
    st.caption("Curves: each patient's out-of-fold model; bands: range of the fold models' curves.")
    table = pd.DataFrame(rows).set_index("patient")
    st.dataframe(table, width="stretch")
    long = pd.concat(
        [pd.DataFrame({"patient": c.name, "time": c.x, "survival": c.y}) for c in curves]
    )
    curve_downloads(curves, long, "Predicted survival", unit, "compare", "cmp")
