"""New patient view: fill in (or upload) a patient's data and get a prediction."""

from __future__ import annotations

import tempfile

import numpy as np
import streamlit as st

from multimodal.dashboard import cohort_stats, ood
from multimodal.dashboard.figures import Curve, curves_figure
from multimodal.dashboard.new_patient import (
    NEW_PATIENT_ID,
    NewPatient,
    build_cohort,
    model_inputs,
    read_genomics_row,
)
from multimodal.dashboard.patient import curve_grid, fold_predictions, horizons_for
from multimodal.exceptions import MultimodalError

from .common import Ctx, csv_download, fmt_number, get_profile


def _form(inputs) -> NewPatient | None:
    with st.form("new_patient"):
        st.markdown("**Clinical covariates** (leave empty when unknown)")
        clinical = {}
        cols = st.columns(max(1, len(inputs.numeric) + len(inputs.categorical)))
        i = 0
        for c, mean in inputs.numeric.items():
            clinical[c] = cols[i].number_input(c, value=float(round(mean)), key=f"np_{c}")
            i += 1
        for c, levels in inputs.categorical.items():
            clinical[c] = cols[i].selectbox(c, ["", *levels], key=f"np_{c}")
            i += 1
        report, genomics_file, image_file = "", None, None
        if inputs.of_kind("text"):
            report = st.text_area("Report text", key="np_report", height=140)
            upload = st.file_uploader(
                "…or upload the report (.txt)", type=["txt"], key="np_report_file"
            )
            if upload is not None:
                report = upload.getvalue().decode("utf-8", errors="replace")
        if inputs.of_kind("genomics"):
            genomics_file = st.file_uploader(
                "Genomics: CSV with one row, a column per gene", type=["csv"], key="np_genomics"
            )
        if inputs.of_kind("imaging"):
            image_file = st.file_uploader("Image (NIfTI .nii/.nii.gz, PNG)", key="np_image")
        if not st.form_submit_button("Predict"):
            return None
    patient = NewPatient(clinical=clinical, report=report or None)
    if genomics_file is not None:
        patient.genomics = read_genomics_row(genomics_file.getvalue())
    if image_file is not None:
        patient.image = (image_file.name, image_file.getvalue())
    return patient


def render(ctx: Ctx) -> None:
    run = ctx.run
    st.header("New patient")
    st.caption("Values are used for this prediction only: nothing is stored or logged.")
    model = ctx.model()
    inputs = model_inputs(model)
    try:
        patient = _form(inputs)
    except MultimodalError as exc:
        st.error(str(exc))
        return
    if patient is not None:
        try:
            with tempfile.TemporaryDirectory(prefix="mm-new-") as tmp:
                cohort = build_cohort(inputs, patient, tmp)
                grid = curve_grid(run.max_time, extra=list(horizons_for(ctx.unit).values()))
                pred = fold_predictions(model, cohort, grid)
        except (MultimodalError, OSError, ValueError) as exc:
            st.error(f"Cannot predict for this patient: {exc}")
            return
        profile = get_profile(ctx.run_dir, ctx.cohort_path)
        flags = ood.check_patient(
            profile, patient.clinical, patient.genomics, patient.present(inputs)
        )
        st.session_state["new_patient_result"] = (pred, flags)
    result = st.session_state.get("new_patient_result")
    if result is None:
        return
    pred, flags = result
    _show(ctx, pred, flags)


def _show(ctx: Ctx, pred, flags) -> None:
    unit, pid = ctx.unit, NEW_PATIENT_ID
    for f in flags:
        st.warning(f"Out of distribution — {f.message}")
    cuts = cohort_stats.pooled_cutpoints(ctx.run, 3)
    risk = pred.risk(pid)
    group = cohort_stats.group_labels(3)[int(np.searchsorted(cuts, risk, side="right"))]
    train = ctx.run.training_rows()["risk_centered"].to_numpy(float)
    pct = 100.0 * float((train < risk).mean()) if train.size else float("nan")
    med = pred.median(pid)[0]
    horizons = horizons_for(unit)
    cols = st.columns(3 + len(horizons))
    cols[0].metric("risk group", group)
    cols[1].metric("risk percentile", f"{pct:.0f}")
    cols[2].metric(f"median ({unit})", fmt_number(med))
    for i, (label, t) in enumerate(horizons.items()):
        cols[3 + i].metric(f"risk at {label}", f"{100 * (1 - pred.at(pid, t)[0]):.0f}%")
    c = pred.curve(pid)
    curve = Curve(
        "new patient",
        c["time"].to_numpy(),
        c["survival"].to_numpy(),
        c["lower"].to_numpy(),
        c["upper"].to_numpy(),
    )
    st.plotly_chart(curves_figure([curve], "", f"time ({unit})"), width="stretch", key="new_curve")
    csv_download("Download CSV", c, "new_patient_survival.csv", "dl_new_csv")
