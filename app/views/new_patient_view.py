"""New patient view: fill in (or upload) a patient's data and get a prediction.

Values outside the accepted limits are refused with a message and nothing is predicted; empty
fields are unknown (missing) and the page says how the model handles them; a modality that was
not given is shown as not used, and the prediction says which modalities it rests on.
"""

from __future__ import annotations

import tempfile

import numpy as np
import pandas as pd
import streamlit as st

from multimodal.dashboard import ood
from multimodal.dashboard.cohort_stats import risk_position
from multimodal.dashboard.figures import Curve, curves_figure, visit_risk_figure
from multimodal.dashboard.landmark import risk_at_visits
from multimodal.dashboard.new_patient import (
    NEW_PATIENT_ID,
    NewPatient,
    build_cohort,
    genomics_template,
    input_limits,
    missing_handling,
    modality_status,
    model_inputs,
    read_genomics_row,
    refusals,
)
from multimodal.dashboard.patient import curve_grid, curve_limit, fold_predictions, run_horizons
from multimodal.dashboard.visits import (
    accepted_range,
    clean_visits,
    visit_times,
    visits_template,
)
from multimodal.dashboard.vocabulary import (
    event_probability_label,
    fmt_horizon,
    fmt_pct,
    horizon_label,
    time_axis,
    time_since_axis,
)
from multimodal.exceptions import MultimodalError

from .common import (
    Ctx,
    csv_download,
    curve_downloads,
    get_profile,
    hazard_tile,
    median_tile,
    probability_tiles,
)

_RESULT = "new_patient_result"


def _unknown(v) -> str:
    return "unknown (missing)" if v == "" else str(v)


def _visits_editor(inputs, unit: str) -> pd.DataFrame:
    """A landmark run's visits: an editable table, a row per visit (time and the values measured
    then; empty = not measured)."""
    st.markdown(
        f"**Visits** — one row per visit: its time ({unit} from the training patients' time "
        "origin, e.g. diagnosis) and the values measured then; leave a cell empty when a value "
        "was not measured. Add rows for more visits. The prediction is made at the last visit, "
        "for a patient alive then."
    )
    config = {
        "time": st.column_config.NumberColumn(
            f"time ({unit})", help=f"visit time in {unit}, >= 0", format="%g"
        )
    }
    for v in inputs.visit_variables:
        training = inputs.variable_ranges.get(v)
        accepted = accepted_range(training)
        hint = (
            f"training values {training[0]:.4g} to {training[1]:.4g}; the model's input checks "
            f"refuse values outside {accepted[0]:.4g} to {accepted[1]:.4g}"
            if training is not None and accepted is not None
            else "no training range recorded"
        )
        config[v] = st.column_config.NumberColumn(v, help=f"{v}: {hint}. Empty = not measured.")
    return st.data_editor(
        visits_template(inputs.visit_variables),
        key="np_visits",
        num_rows="dynamic",
        hide_index=True,
        column_config=config,
        width="stretch",
    )


def _form(inputs, unit: str) -> NewPatient | None:
    limits = input_limits(inputs)
    if inputs.genes:
        st.download_button(
            f"Download the genomics template (CSV, {len(inputs.genes)} genes)",
            data=genomics_template(inputs),
            file_name="genomics_template.csv",
            mime="text/csv",
            key="dl_genomics_template",
            help="patient_id and one column per gene the model uses; fill in one row. Genes left "
            "empty are imputed with their training median.",
        )
    with st.form("new_patient"):
        st.markdown("**Clinical covariates** (leave a field empty when the value is unknown)")
        clinical = {}
        cols = st.columns(max(1, len(inputs.numeric) + len(inputs.categorical)))
        i = 0
        for c in inputs.numeric:
            lim = limits[c]
            unit = f" ({lim.unit})" if lim.unit else ""
            clinical[c] = cols[i].number_input(
                f"{c}{unit}" if unit else c,
                value=None,
                placeholder="unknown",
                key=f"np_{c}",
                help=lim.describe().capitalize() + ". Empty = unknown.",
            )
            i += 1
        for c, levels in inputs.categorical.items():
            clinical[c] = cols[i].selectbox(c, ["", *levels], format_func=_unknown, key=f"np_{c}")
            i += 1
        report, genomics_file, image_file = "", None, None
        if inputs.of_kind("text"):
            report = st.text_area(
                "Report text (empty = no report: the report is not used)",
                key="np_report",
                height=140,
            )
            upload = st.file_uploader(
                "…or upload the report (.txt)", type=["txt"], key="np_report_file"
            )
            if upload is not None:
                report = upload.getvalue().decode("utf-8", errors="replace")
        if inputs.of_kind("genomics"):
            genomics_file = st.file_uploader(
                "Genomics: CSV with one row, a column per gene (see the template above)",
                type=["csv"],
                key="np_genomics",
            )
        if inputs.of_kind("imaging"):
            image_file = st.file_uploader("Image (NIfTI .nii/.nii.gz, PNG)", key="np_image")
        visits = _visits_editor(inputs, unit) if inputs.variables else None
        if not st.form_submit_button("Predict"):
            return None
    clinical = {c: (None if v is None or v == "" else v) for c, v in clinical.items()}
    patient = NewPatient(clinical=clinical, report=report or None)
    if visits is not None:
        patient.visits_raw = visits
        patient.visits = visits.apply(pd.to_numeric, errors="coerce")
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
        patient = _form(inputs, ctx.unit)
    except MultimodalError as exc:
        st.session_state.pop(_RESULT, None)
        st.error(str(exc))
        return
    if patient is not None:
        st.session_state.pop(_RESULT, None)  # a refused form never shows an older prediction
        refused = refusals(inputs, patient, ctx.unit)
        if refused:
            st.error(
                "Not predicted: some values are outside the accepted limits.\n\n"
                + "\n".join(f"- {r}" for r in refused)
            )
            return
        landmark, at_visits = None, None
        try:
            with tempfile.TemporaryDirectory(prefix="mm-new-") as tmp:
                cohort = build_cohort(inputs, patient, tmp, time_unit=ctx.unit)
                grid = curve_grid(curve_limit(run), extra=list(run_horizons(run).values()))
                if inputs.horizon is not None:  # a landmark run: predicted at the last visit
                    landmark = patient.landmark()
                pred = fold_predictions(
                    model,
                    cohort,
                    grid,
                    run.reference_risks(),
                    run.pooled_reference(),
                    landmark=landmark,
                )
                times = visit_times(patient.visits)
                if landmark is not None and len(times) > 1 and not pred.refused(NEW_PATIENT_ID):
                    at_visits = risk_at_visits(model, cohort, NEW_PATIENT_ID, inputs.horizon, times)
        except (MultimodalError, OSError, ValueError) as exc:
            st.error(f"Cannot predict for this patient: {exc}")
            return
        if pred.refused(NEW_PATIENT_ID):
            st.error(
                "Not predicted: the model's input checks refused these values. "
                + pred.issues.get(NEW_PATIENT_ID, "")
            )
            return
        profile = get_profile(ctx.run_dir, ctx.cohort_path)
        flags = ood.check_patient(
            profile, patient.clinical, patient.genomics, patient.present(inputs)
        )
        st.session_state[_RESULT] = {
            "pred": pred,
            "flags": flags,
            "status": modality_status(inputs, patient),
            "missing": missing_handling(inputs, patient),
            "inputs": {c: _unknown("" if v is None else v) for c, v in patient.clinical.items()},
            "landmark": landmark,
            "at_visits": at_visits,
            "visits": clean_visits(patient.visits) if patient.visits is not None else None,
        }
    result = st.session_state.get(_RESULT)
    if result is None:
        return
    _show(ctx, result)


def _show(ctx: Ctx, result: dict) -> None:
    unit, pid, run = ctx.unit, NEW_PATIENT_ID, ctx.run
    pred, status = result["pred"], result["status"]
    st.subheader("Prediction")
    used = pred.modalities.get(pid) or list(status.loc[status["status"] == "used", "modality"])
    unused = status[status["status"] != "used"]
    rest = "".join(f"; {r.modality}: not used ({r.detail})" for r in unused.itertuples())
    st.markdown(
        f"**Rests on:** {', '.join(used) if used else 'no modality (baseline risk)'}{rest}."
    )
    st.dataframe(status.set_index("modality"), width="stretch")
    for note in result["missing"]:
        st.info(note)
    for f in result["flags"]:
        st.warning(f"Out of distribution — {f.message}")
    # modalities left out are in the table above; the input checks' other findings are shown
    issues = [
        i
        for i in pred.issues.get(pid, "").split(" | ")
        if i and "the cohort has no modality" not in i
    ]
    for issue in issues:
        st.warning(f"Input checks: {issue}")

    group, pct = risk_position(run, pred.risk(pid))
    horizons = run_horizons(run)
    landmark = result.get("landmark")
    since = None if landmark is None else "the last visit"
    top = st.columns(4)
    top[0].metric("risk group", group, help="tertiles of the fold-centred training risks")
    hazard_tile(top[1], run, pred, pid, None)
    top[2].metric(
        "risk percentile", f"{pct:.0f}%", help="share of training patients with a lower risk"
    )
    median_tile(top[3], pred, pid, None, unit)
    probability_tiles(
        st.columns(len(horizons)),
        pred,
        pid,
        None,
        horizons,
        unit,
        curve_limit(run),
        since=since,
    )
    if landmark is not None:
        _landmark_caption(ctx, result, landmark)
    c = pred.curve(pid)
    curve = Curve(
        "new patient (mean of the fold models)",
        c["time"].to_numpy(),
        c["survival"].to_numpy(),
        c["lower"].to_numpy(),
        c["upper"].to_numpy(),
    )
    xlabel = time_axis(unit) if since is None else time_since_axis(unit, since)
    st.plotly_chart(curves_figure([curve], "", xlabel), width="stretch", key="new_curve")
    st.caption(
        "Curve: the mean of the fold models' survival probability; band and tile ranges: the "
        "range of the fold models (how much the prediction depends on the training patients), "
        "not a confidence interval."
    )
    frame = pd.DataFrame(
        {
            xlabel: c["time"],
            "survival probability": c["survival"],
            "event probability": 1 - c["survival"],
            "survival, fold minimum": c["lower"],
            "survival, fold maximum": c["upper"],
        }
    )
    curve_downloads(
        [curve], frame, "New patient", unit, "new_patient_survival", "new", xlabel=xlabel
    )
    if result.get("at_visits") is not None:
        _visit_risks(ctx, result["at_visits"])
    csv_download(
        "Download the prediction summary (CSV)",
        _summary(result, pred, horizons, unit, group, pct),
        "new_patient_summary.csv",
        "dl_new_summary",
    )


def _landmark_caption(ctx: Ctx, result: dict, landmark: float) -> None:
    """Where a landmark run's prediction of the new patient stands (a landmark after the last
    training one is the input checks' warning, shown above)."""
    n = len(visit_times(result.get("visits")))
    where = (
        f"at the last visit ({landmark:g} {ctx.unit}), from the {n} visit(s) given"
        if n
        else "at the time origin (landmark 0): no visit given, the baseline data only"
    )
    st.caption(
        f"Landmark run: predicted {where}, for a patient alive then; times count from that "
        f"moment, up to the model's horizon: {fmt_horizon(ctx.run.horizon, ctx.unit)}."
    )


def _visit_risks(ctx: Ctx, table: pd.DataFrame) -> None:
    """The new patient's event probability within the horizon had it been predicted at each
    visit (the fold models' mean and range)."""
    run, unit = ctx.run, ctx.unit
    horizon = fmt_horizon(run.horizon, unit)
    st.subheader(f"Predicted event probability within {horizon}, at each visit")
    ylabel = event_probability_label(horizon_label(run.horizon, unit), within=True)
    last = max(run.landmark_setup.times) if run.landmark_setup else None
    st.plotly_chart(
        visit_risk_figure(table, unit, ylabel, last), width="stretch", key="new_visit_risks"
    )
    st.caption(
        f"At each visit s: the probability of the event in the next {horizon} for a patient "
        "alive at s, from the visits up to s (mean of the fold models; bars: their range)."
    )


def _summary(result, pred, horizons, unit, group, pct) -> pd.DataFrame:
    """One row per item: the inputs as used, the modalities, the predicted numbers."""
    pid = NEW_PATIENT_ID
    rows = [(f"input: {c}", v) for c, v in result["inputs"].items()]
    visits = result.get("visits")
    if visits is not None and "time" in visits:
        for i, (_, v) in enumerate(visits.iterrows(), start=1):
            given = "; ".join(f"{k} {x:g}" for k, x in v.drop("time").items() if np.isfinite(x))
            rows.append((f"visit {i} ({v['time']:g} {unit})", given or "no value"))
    if result.get("landmark") is not None:
        rows.append((f"landmark: predicted at ({unit})", f"{result['landmark']:g}"))
    rows += [
        (f"modality: {r.modality}", f"{r.status} ({r.detail})")
        for r in result["status"].itertuples()
    ]
    rows += [("risk group", group), ("risk percentile (%)", f"{pct:.1f}")]
    hr, lo, hi = pred.hazard_ratios(pid)
    if np.isfinite(hr):
        rows.append(("hazard ratio vs median patient", f"{hr:.3f} (folds {lo:.3f}-{hi:.3f})"))
    med, mlo, mhi = pred.median(pid)
    rows.append((f"median survival ({unit})", f"{med:.2f} (folds {mlo:.2f}-{mhi:.2f})"))
    for label, t in horizons.items():
        p, plo, phi = pred.event_probability(pid, t)
        rows.append(
            (
                event_probability_label(label, within=result.get("landmark") is not None),
                f"{fmt_pct(p, 1)} (folds {fmt_pct(plo, 1)}-{fmt_pct(phi, 1)})",
            )
        )
    return pd.DataFrame(rows, columns=["item", "value"])
