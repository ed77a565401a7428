"""Patient view of a landmark run (dynamic prediction): each biomarker's trajectory, the event
probability within the horizon predicted at every visit, and the prediction from the latest
visit in the vocabulary of the other pages (event probability within 1 year, ..., hazard ratio,
risk percentile), with the fold models' range."""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import landmark
from multimodal.dashboard.cohort_stats import risk_position
from multimodal.dashboard.figures import (
    Curve,
    curves_figure,
    trajectories_figure,
    trajectories_png,
    visit_risk_figure,
)
from multimodal.dashboard.patient import curve_limit, run_horizons
from multimodal.dashboard.vocabulary import (
    event_probability_label,
    fmt_horizon,
    fmt_pct,
    horizon_label,
    time_since_axis,
)

from .common import (
    Ctx,
    csv_download,
    curve_downloads,
    hazard_tile,
    median_tile,
    png_download,
    predict_patients,
    probability_tiles,
    visit_risks,
)

#: Biomarker plots per row.
PER_ROW = 3


def render(ctx: Ctx, pid: str):
    """The landmark sections of the patient page; returns the prediction from the latest visit
    and the cohort (None, None without the cohort: then only the run's saved predictions)."""
    run = ctx.run
    fold = int(run.oof().loc[pid, "fold"])
    cohort = ctx.cohort()
    if cohort is None:
        _saved_risks(ctx, pid)
        st.info(
            "Biomarker trajectories, the risk at each visit and the evidence need the cohort: "
            "start the dashboard with --cohort PATH."
        )
        return None, None
    table = landmark.measurements(cohort, pid, run.modalities or None)
    last = max(landmark.visit_times(table), default=0.0)
    pred = predict_patients(ctx.run_dir, ctx.cohort_path, (pid,), curve_limit(run), ctx.unit)
    if pred.refused(pid):
        st.error(
            "The model's input checks refuse this patient's data at the latest visit: "
            f"{pred.issues.get(pid, '')}"
        )
    else:
        _tiles(ctx, pid, pred, fold, last, cohort)
    _trajectories(ctx, pid, table)
    _risk_at_visits(ctx, pid, fold)
    if not pred.refused(pid):
        _curve(ctx, pid, pred, fold)
    return (None if pred.refused(pid) else pred), cohort


def _observed(ctx: Ctx, pid: str, cohort) -> str:
    row = cohort.patients.loc[pid] if pid in cohort.patients.index else None
    if row is None or "time" not in row or not np.isfinite(float(row["time"])):
        return "outcome unknown"
    what = "event" if bool(row.get("event", False)) else "censored"
    return f"observed: {what} at {float(row['time']):.1f} {ctx.unit}"


def _tiles(ctx: Ctx, pid: str, pred, fold: int, last: float, cohort) -> None:
    run, unit = ctx.run, ctx.unit
    horizons = run_horizons(run)
    group, pct = risk_position(run, pred.risk(pid, fold), fold)
    top = st.columns(4)
    top[0].metric(
        "risk group",
        group,
        help="tertiles of the risks of the fold model's training (patient, landmark) rows",
    )
    hazard_tile(top[1], run, pred, pid, fold)
    top[2].metric(
        "risk percentile",
        "n/a" if np.isnan(pct) else f"{pct:.0f}%",
        help="share of the fold model's training (patient, landmark) rows with a lower risk",
    )
    median_tile(
        top[3],
        pred,
        pid,
        fold,
        unit,
        help="predicted median survival time after the latest visit: where the survival curve "
        f"crosses 50% (not reached when it stays above within the horizon, {run.horizon:g} "
        f"{unit})",
    )
    probability_tiles(
        st.columns(len(horizons)),
        pred,
        pid,
        fold,
        horizons,
        unit,
        float(run.horizon),
        since="the latest visit",
    )
    st.caption(
        f"Predicted at the latest visit ({last:g} {unit}) from what was measured up to then, for "
        f"a patient alive then; times count from that visit, up to the model's horizon, "
        f"{fmt_horizon(run.horizon, unit)}. {_observed(ctx, pid, cohort)} · validation fold "
        f"{fold} · numbers from the fold {fold} model, which did not train on this patient; "
        "ranges: all fold models."
    )
    for issue in filter(None, pred.issues.get(pid, "").split(" | ")):
        st.warning(f"Input checks: {issue}")


def _trajectories(ctx: Ctx, pid: str, table: pd.DataFrame) -> None:
    unit = ctx.unit
    st.subheader("Biomarkers over time")
    if table.empty:
        st.info("No repeat measurements of this patient in the cohort.")
        return
    st.plotly_chart(
        trajectories_figure(table, unit, per_row=PER_ROW), width="stretch", key="trajectories"
    )
    n_visits = len(landmark.visit_times(table))
    st.caption(
        f"Each plot: one variable's measured values over time ({unit} from the time origin), a "
        f"marker per measurement. Dotted lines: the patient's {n_visits} visits (a line without "
        "a marker: not measured at that visit)."
    )
    c1, c2 = st.columns(2)
    with c1:
        st.download_button(
            "Download PNG",
            data=lambda: trajectories_png(table, unit, per_row=PER_ROW),
            file_name="biomarkers.png",
            mime="image/png",
            key="dl_traj_png",
        )
    with c2:
        frame = table.rename(columns={"time": f"time ({unit})"})
        csv_download("Download CSV", frame, "biomarkers.csv", "dl_traj_csv")


def _risk_chart(ctx: Ctx, risks: pd.DataFrame, key: str, x_label: str) -> None:
    """The event probability within the horizon at each visit (or landmark), with downloads."""
    run, unit = ctx.run, ctx.unit
    ylabel = event_probability_label(horizon_label(run.horizon, unit), within=True)
    setup = run.landmark_setup
    last_lm = max(setup.times) if setup and setup.times else None
    st.plotly_chart(
        visit_risk_figure(risks, unit, ylabel, last_lm, xlabel=x_label), width="stretch", key=key
    )
    ok = np.isfinite(risks["event_probability"].to_numpy(float))
    curve = Curve(
        "predicted at the visit",
        risks["time"].to_numpy(float)[ok],
        risks["event_probability"].to_numpy(float)[ok],
        risks["low"].to_numpy(float)[ok],
        risks["high"].to_numpy(float)[ok],
    )
    frame = pd.DataFrame(
        {
            f"{x_label} ({unit})": risks["time"],
            ylabel: risks["event_probability"],
            "fold minimum": risks["low"],
            "fold maximum": risks["high"],
            "status": risks["status"],
        }
    )
    c1, c2 = st.columns(2)
    with c1:
        png_download(
            "Download PNG",
            [curve],
            ylabel,
            f"{x_label} ({unit})",
            ylabel,
            f"{key}.png",
            f"dl_{key}_png",
        )
    with c2:
        csv_download("Download CSV", frame, f"{key}.csv", f"dl_{key}_csv")


def _risk_at_visits(ctx: Ctx, pid: str, fold: int) -> None:
    run, unit = ctx.run, ctx.unit
    horizon = fmt_horizon(run.horizon, unit)
    st.subheader(f"Predicted event probability within {horizon}, at each visit")
    risks = visit_risks(ctx.run_dir, ctx.cohort_path, pid, fold)
    if risks.empty:
        st.info("No visits to predict at.")
        return
    _risk_chart(ctx, risks, "risk_at_visits", "visit time")
    refused = risks[risks["status"] == "refused"]
    setup = run.landmark_setup
    last_lm = max(setup.times) if setup and setup.times else float("inf")
    beyond = int((risks["time"] > last_lm + 1e-9).sum())
    notes = [
        f"At each visit s: the probability of the event in the next {horizon} for a patient "
        "alive at s, predicted from what was measured up to s (the model's prediction at the "
        f"landmark s). Point: the fold {fold} model, which did not train on this patient; bars: "
        "the range of all fold models.",
    ]
    if beyond:
        notes.append(
            f"{beyond} visit(s) after the last landmark the model was trained at "
            f"({last_lm:g} {unit}): those predictions extrapolate."
        )
    if len(refused):
        notes.append(
            f"Not predicted at {len(refused)} visit(s) the model's input checks refuse: "
            + "; ".join(
                f"{t:g} {unit} ({msg})" for t, msg in zip(refused["time"], refused["issues"])
            )
        )
    st.caption(" ".join(notes))


def _saved_risks(ctx: Ctx, pid: str) -> None:
    """Without the cohort: the run's saved predictions of the patient at its landmarks."""
    run, unit = ctx.run, ctx.unit
    horizon = fmt_horizon(run.horizon, unit)
    st.subheader(f"Predicted event probability within {horizon}, at each landmark")
    risks = landmark.saved_landmark_risks(run, pid)
    if risks.empty:
        st.info(f"predictions.csv holds no survival probability at the horizon, {horizon}.")
        return
    _risk_chart(ctx, risks, "risk_at_landmarks", "landmark")
    st.caption(
        "The predictions saved when the run was trained (predictions.csv), at the landmarks the "
        f"model was trained at while the patient was followed: the probability of the event in "
        f"the next {horizon} from each landmark. Point: the fold model that did not train on "
        "this patient; bars: the range of all fold models."
    )


def _curve(ctx: Ctx, pid: str, pred, fold: int) -> None:
    unit = ctx.unit
    st.subheader("Predicted survival from the latest visit")
    c = pred.curve(pid, fold)
    ok = np.isfinite(c["survival"].to_numpy(float))
    curve = Curve(
        f"predicted (fold {fold} model, out-of-fold)",
        c["time"].to_numpy()[ok],
        c["survival"].to_numpy()[ok],
        c["lower"].to_numpy()[ok],
        c["upper"].to_numpy()[ok],
    )
    xlabel = time_since_axis(unit, "the latest visit")
    st.plotly_chart(curves_figure([curve], "", xlabel), width="stretch", key="patient_curve")
    st.caption(
        "Survival probability after the latest visit, given alive then, up to the model's "
        f"horizon. Main curve: the fold {fold} model (held this patient out). Band: range of all "
        "fold models' curves, not a confidence interval. Event probability at t = 1 − survival "
        f"probability, e.g. {fmt_pct(1 - float(c['survival'].to_numpy()[ok][-1]))} within "
        f"{fmt_horizon(ctx.run.horizon, unit)}."
    )
    frame = pd.DataFrame(
        {
            f"time since the latest visit ({unit})": curve.x,
            "survival probability": curve.y,
            "event probability": 1 - curve.y,
            "survival, fold minimum": curve.lower,
            "survival, fold maximum": curve.upper,
        }
    )
    curve_downloads(
        [curve], frame, "Predicted survival", unit, "patient_survival", "patient", xlabel=xlabel
    )
