"""The dashboard on a landmark run (dynamic prediction, ``data.landmark``): the data layer
(patients not (patient, landmark) rows, per-landmark metrics, risk at each visit, visits of a new
patient) and every view with ``streamlit.testing`` AppTest."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

import multimodal
from multimodal.dashboard import cohort_stats, landmark, patient, visits
from multimodal.dashboard.new_patient import (
    NEW_PATIENT_ID,
    NewPatient,
    build_cohort,
    missing_handling,
    modality_status,
    model_inputs,
    refusals,
)
from multimodal.dashboard.run_data import load_run_data
from tests.dashboard.test_app import app_for, no_exceptions

HORIZON = 24.0  # months: TINY_CONFIG of tests/longitudinal


@pytest.fixture(scope="module")
def lm(landmark_run):
    """The run's data, fold models and cohort."""
    run = load_run_data(landmark_run)
    model = multimodal.load_run(landmark_run)
    return run, model, multimodal.Cohort.load(run.cohort_path)


def _val_patient(run, cohort, min_visits: int = 3) -> str:
    """A validation patient with several visits, the last within the training landmarks."""
    for pid in run.oof().index:
        times = landmark.visit_times(landmark.measurements(cohort, pid))
        if len(times) >= min_visits and times[-1] <= 24:
            return str(pid)
    raise AssertionError("no validation patient with enough visits")


# ---------------------------------------------------------------------------------- data layer
def test_landmark_run_lists_patients_and_scores_each_landmark(lm):
    run, _, cohort = lm
    assert run.is_landmark and run.horizon == HORIZON
    assert run.landmarks == [0.0, 6.0, 12.0, 18.0, 24.0]
    oof = run.oof()
    assert not any("@" in str(i) for i in oof.index)  # patients, not patient@landmark rows
    assert set(oof.index) <= set(cohort.patients.index) and oof.index.is_unique
    val = run.predictions[run.predictions["split"] == "val"]
    assert set(oof.index) == set(val["landmark_patient"])
    # the run at one landmark: a plain run of the patients followed then; its C is c_index_lm<s>
    fold0 = run.metrics["folds"][0]
    for s in (0.0, 12.0):
        at = run.at_landmark(s)
        assert not at.is_landmark and at.landmark_at == s
        assert len(at.oof()) == int(np.isclose(val["landmark"], s).sum())
        c = cohort_stats.c_index_summary(at)
        assert c["estimate"] == pytest.approx(fold0[f"c_index_lm{s:g}"])
        assert c["estimate"] == pytest.approx(cohort_stats._fold_c_indices(at, None, None)[0])
    with pytest.raises(KeyError, match="not one of the run's landmarks"):
        run.at_landmark(7.0)
    # one C-index: the mean over the landmarks, in the sidebar and the table's last row
    c = cohort_stats.c_index_summary(run)
    assert c["estimate"] == pytest.approx(fold0["c_index_landmarks"])
    assert c["scope"] == "mean over the landmarks"
    table = landmark.landmark_metric_table(run)
    assert list(table["landmark (months)"]) == [
        "0",
        "6",
        "12",
        "18",
        "24",
        "mean over the landmarks",
    ]
    assert table["C-index"].iloc[-1] == pytest.approx(c["estimate"])
    assert table["Brier score"].iloc[2] == pytest.approx(fold0["brier_lm12"])
    assert table["patients at risk"].iloc[0] == len(run.at_landmark(0.0).oof())
    assert {"events within 2 years", "C-index 95% CI", "Brier score 95% CI"} <= set(table.columns)


def test_landmark_horizons_stop_at_the_horizon(lm):
    run, _, _ = lm
    assert patient.run_horizons(run) == {"1 year": 12.0, "2 years": 24.0}
    assert patient.curve_limit(run) == HORIZON


def test_risk_at_visits_is_the_models_prediction_at_each_visit(lm):
    run, model, cohort = lm
    pid = _val_patient(run, cohort)
    table = landmark.measurements(cohort, pid)
    assert set(table["variable"]) <= {"marker", "noise"} and table["time"].is_monotonic_increasing
    times = landmark.visit_times(table)
    fold = int(run.oof().loc[pid, "fold"])
    risks = landmark.risk_at_visits(model, cohort, pid, HORIZON, times, fold)
    assert list(risks["time"]) == times and (risks["status"] != "refused").all()
    one = cohort.subset([pid])
    for s, p in zip(times, risks["event_probability"]):  # one fold model: its own prediction
        surv = model.predict_survival(one, times=[HORIZON], landmark=s)
        assert p == pytest.approx(1 - float(surv.iloc[0, 0]), abs=1e-6)
    assert (risks["low"] <= risks["event_probability"] + 1e-9).all()
    # what the risk at each visit could see: a later measurement changed does not move it
    changed = cohort.subset([pid])
    labs = changed.sources["labs"].table
    labs.loc[labs["time"] > times[1], "value"] += 50.0
    again = landmark.risk_at_visits(model, changed, pid, HORIZON, times[:2], fold)
    assert np.allclose(again["event_probability"], risks["event_probability"][:2])


def test_saved_landmark_risks_need_no_model(lm):
    run, _, cohort = lm
    pid = _val_patient(run, cohort)
    saved = landmark.saved_landmark_risks(run, pid)
    rows = run.landmark_rows(pid)
    assert list(saved["time"]) == sorted(rows["landmark"].unique())
    val = rows[rows["split"] == "val"].set_index("landmark")
    assert np.allclose(saved["event_probability"], 1 - val["surv_24"].to_numpy(float))
    latest = patient.latest_landmark_prediction(run, [pid])
    assert latest.ids == [pid]
    s24 = latest.at(pid, HORIZON, int(run.oof().loc[pid, "fold"]))[0]
    assert s24 == pytest.approx(float(val["surv_24"].iloc[-1]), abs=1e-6)


def test_new_patient_visits_predict_at_the_last_visit(lm, tmp_path):
    _, model, _ = lm
    inputs = model_inputs(model)
    assert inputs.variables == {"labs": ["marker", "noise"]}
    assert inputs.horizon == HORIZON and set(inputs.variable_ranges) == {"marker", "noise"}
    table = visits.visits_template(inputs.visit_variables)
    table.loc[0, ["time", "marker", "noise"]] = [0.0, 0.4, 0.1]
    table.loc[1, ["time", "marker"]] = [6.0, 0.9]
    new = NewPatient(clinical={"age": 61.0, "sex": None}, visits=table)
    assert refusals(inputs, new, "months") == [] and new.landmark() == 6.0
    status = modality_status(inputs, new).set_index("modality")
    assert status.loc["labs", "status"] == "used"
    assert status.loc["labs", "detail"].startswith("2 visit(s), 3 value(s)")
    cohort = build_cohort(inputs, new, tmp_path, time_unit="months")
    long = cohort.sources["labs"].table
    assert len(long) == 3 and sorted(long["time"].unique()) == [0.0, 6.0]
    pred = patient.fold_predictions(model, cohort, [12.0, HORIZON], landmark=new.landmark())
    direct = model.predict_survival(cohort, times=[12.0, HORIZON], landmark=6.0)
    assert pred.at(NEW_PATIENT_ID, HORIZON)[0] == pytest.approx(float(direct.iloc[0, 1]))
    assert not pred.refused(NEW_PATIENT_ID)
    # a variable never given is stated, not filled in
    only_marker = NewPatient(clinical={"age": 61.0}, visits=table.assign(noise=np.nan))
    assert any("noise never measured" in m for m in missing_handling(inputs, only_marker))


@pytest.mark.parametrize(
    "rows, message",
    [
        ({0: (-3.0, 0.5)}, "visit 1: time -3 months is refused"),
        ({0: (0.0, 0.5), 1: (np.nan, 0.7)}, "visit 2 has values but no time"),
        ({0: (6.0, 0.5), 1: (6.0, 0.7)}, "visits 1, 2 have the same time 6 months"),
    ],
)
def test_new_patient_visits_refused(lm, rows, message):
    _, model, _ = lm
    inputs = model_inputs(model)
    table = visits.visits_template(inputs.visit_variables)
    for i, (t, v) in rows.items():
        table.loc[i, ["time", "marker"]] = [t, v]
    out = refusals(inputs, NewPatient(visits=table), "months")
    assert any(message in r for r in out), out


# ---------------------------------------------------------------------------------- the app
def test_cohort_view_of_a_landmark_run(monkeypatch, landmark_run):
    at = app_for(monkeypatch, landmark_run).run()
    no_exceptions(at)
    assert not at.error
    assert at.selectbox(key="landmark").value == 0.0
    headers = [h.value for h in at.subheader]
    assert "C-index and Brier score at each landmark (horizon 24 months)" in headers
    table = next(d.value for d in at.dataframe if "C-index 95% CI" in d.value.columns)
    side = " ".join(m.value for m in at.sidebar.markdown)
    assert f"{table['C-index'].iloc[-1]:.3f}" in side and "mean over the landmarks" in side
    patients_at_0 = int({m.label: m.value for m in at.metric}["patients"])
    at = at.selectbox(key="landmark").set_value(12.0).run()
    no_exceptions(at)
    assert int({m.label: m.value for m in at.metric}["patients"]) < patients_at_0
    km = json.loads(at.get("plotly_chart")[0].proto.spec)
    titles = [v.get("title", {}).get("text", "") for k, v in km["layout"].items() if "xaxis" in k]
    assert "time since the landmark (months)" in titles
    assert any("landmark 12 months" in c.value for c in at.caption)


def _patient_page(monkeypatch, run_dir, pid):
    at = app_for(monkeypatch, run_dir).run()
    at = at.sidebar.radio(key="view").set_value("Patient").run()
    return at.selectbox(key="patient_id").set_value(pid).run()


def test_patient_page_of_a_landmark_run(monkeypatch, landmark_run, lm):
    run, _, cohort = lm
    pid = _val_patient(run, cohort)
    at = _patient_page(monkeypatch, landmark_run, pid)
    no_exceptions(at)
    assert not at.error
    options = at.selectbox(key="patient_id").options
    assert pid in options and not any("@" in o for o in options)
    headers = [h.value for h in at.subheader]
    assert "Biomarkers over time" in headers
    assert "Predicted event probability within 2 years (24 months), at each visit" in headers
    charts = {c.key: json.loads(c.proto.spec) for c in at.get("plotly_chart")}
    traj = charts["trajectories"]
    assert {a["text"] for a in traj["layout"]["annotations"]} >= {"marker", "noise"}
    assert traj["layout"]["xaxis"]["title"]["text"] == "time (months)"
    times = landmark.visit_times(landmark.measurements(cohort, pid))
    risk = charts["risk_at_visits"]
    assert list(risk["data"][0]["x"]) == pytest.approx(times)  # one point per visit
    assert all(0 <= y <= 100 for y in risk["data"][0]["y"])
    assert risk["layout"]["xaxis"]["title"]["text"] == "visit time (months)"
    assert "event probability within 2 years" in risk["layout"]["yaxis"]["title"]["text"]
    curve = charts["patient_curve"]
    assert curve["layout"]["xaxis"]["title"]["text"] == "time since the latest visit (months)"
    metrics = {m.label: m.value for m in at.metric}
    assert {"event probability within 1 year", "event probability within 2 years"} <= set(metrics)
    assert metrics["hazard ratio vs median patient"].endswith("×")
    assert not any(re.search(r"by (3|5) years", label) for label in metrics)  # beyond the horizon
    assert any(f"latest visit ({times[-1]:g} months)" in c.value for c in at.caption)
    assert any("Modality contributions" in m.value for m in at.markdown)  # the evidence


def test_landmark_patient_and_compare_views_without_the_cohort(monkeypatch, landmark_run, tmp_path):
    alone = tmp_path / "alone" / "run"
    shutil.copytree(landmark_run, alone, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = yaml.safe_load((alone / "config.yaml").read_text())
    cfg["_meta"].pop("cohort_path", None)
    cfg["data"].pop("cohort", None)
    (alone / "config.yaml").write_text(yaml.safe_dump(cfg))
    at = app_for(monkeypatch, alone).run()
    at = at.sidebar.radio(key="view").set_value("Patient").run()
    no_exceptions(at)
    assert any("need the cohort" in i.value for i in at.info)
    assert "risk_at_landmarks" in [c.key for c in at.get("plotly_chart")]
    at = at.sidebar.radio(key="view").set_value("Compare").run()
    no_exceptions(at)
    columns = list(at.dataframe[0].value.columns)
    assert "event probability within 2 years" in columns


def test_compare_view_of_a_landmark_run(monkeypatch, landmark_run):
    at = app_for(monkeypatch, landmark_run).run()
    at = at.sidebar.radio(key="view").set_value("Compare").run()
    no_exceptions(at)
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "time since the latest visit (months)"
    columns = list(at.dataframe[0].value.columns)
    assert "event probability within 2 years" in columns
    assert not any("3 years" in str(c) for c in columns)


def _new_patient(monkeypatch, landmark_run, edited: dict):
    at = app_for(monkeypatch, landmark_run).run()
    at = at.sidebar.radio(key="view").set_value("New patient").run()
    no_exceptions(at)
    editor = at.data_editor[0]
    assert editor.key == "np_visits" and list(editor.value.columns) == ["time", "marker", "noise"]
    at.number_input(key="np_age").set_value(62.0)
    at.session_state["np_visits"] = {"edited_rows": edited, "added_rows": [], "deleted_rows": []}
    at = at.button[0].click().run()
    no_exceptions(at)
    return at


def test_new_patient_form_with_two_visits_predicts(monkeypatch, landmark_run):
    visits_given = {
        0: {"time": 0.0, "marker": 0.3, "noise": 0.1},
        1: {"time": 6.0, "marker": 0.8},
    }
    at = _new_patient(monkeypatch, landmark_run, visits_given)
    assert not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert {"risk group", "median survival", "event probability within 2 years"} <= set(metrics)
    assert metrics["event probability within 2 years"].endswith("%")
    status = next(d.value for d in at.dataframe if "status" in d.value.columns)
    assert status.loc["labs", "status"] == "used"
    assert any("predicted at the last visit (6 months)" in c.value for c in at.caption)
    keys = [c.key for c in at.get("plotly_chart")]
    assert "new_curve" in keys and "new_visit_risks" in keys
    curve = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert curve["layout"]["xaxis"]["title"]["text"] == "time since the last visit (months)"


def test_new_patient_form_refuses_a_negative_visit_time(monkeypatch, landmark_run):
    at = _new_patient(monkeypatch, landmark_run, {0: {"time": -3.0, "marker": 0.3}})
    assert at.error and "Not predicted" in at.error[0].value
    assert "time -3 months is refused" in at.error[0].value
    assert not at.metric and not at.get("plotly_chart")  # no numbers at all


def test_new_patient_form_shows_the_models_refusal(monkeypatch, landmark_run):
    edited = {0: {"time": 0.0, "marker": 0.3}, 1: {"time": 6.0, "marker": 900.0}}
    at = _new_patient(monkeypatch, landmark_run, edited)
    assert at.error and "input checks refused" in at.error[0].value
    assert "'marker' = 900" in at.error[0].value and "far outside the training range" in (
        at.error[0].value
    )
    assert not at.metric and not at.get("plotly_chart")


def test_landmark_metric_table_is_empty_for_other_runs(tiny_run):
    run = load_run_data(tiny_run)
    assert not run.is_landmark and run.horizon is None
    assert landmark.landmark_metric_table(run).empty
    assert patient.run_horizons(run) == patient.horizons_for(run.time_unit)
    assert isinstance(landmark.saved_landmark_risks(run, "x"), pd.DataFrame)
