"""Every view of the Streamlit app, driven by ``streamlit.testing`` AppTest on a tiny run."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
import yaml
from streamlit.testing.v1 import AppTest

from multimodal.dashboard.launch import ENV_COHORT, ENV_PASSWORD, ENV_RUN

APP = str(Path(__file__).resolve().parents[2] / "app" / "dashboard.py")


def app_for(monkeypatch, run_dir, password=None) -> AppTest:
    monkeypatch.setenv(ENV_RUN, str(run_dir))
    monkeypatch.delenv(ENV_COHORT, raising=False)
    if password:
        monkeypatch.setenv(ENV_PASSWORD, password)
    else:
        monkeypatch.delenv(ENV_PASSWORD, raising=False)
    return AppTest.from_file(APP, default_timeout=180)


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _has_at_risk_table(spec: dict) -> bool:
    titles = [v.get("title", {}).get("text", "") for k, v in spec["layout"].items() if "yaxis" in k]
    return "Number at risk" in titles and any(
        t.get("mode") == "text" and t.get("name", "").endswith("at risk") for t in spec["data"]
    )


def test_cohort_view(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    no_exceptions(at)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["patients"] == "44"
    assert {f"{m} coverage" for m in ("clinical", "genomics", "report", "ct")} <= set(metrics)
    assert metrics["median follow-up"].endswith(" months")  # the unit is in the value, not cut off
    assert any("log-rank p" in c.value.lower() for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # Kaplan-Meier by group, calibration
    # numbers at risk under the Kaplan-Meier plot, on its time axis
    assert _has_at_risk_table(json.loads(at.get("plotly_chart")[0].proto.spec))
    assert any("Number at risk" in c.value for c in at.caption)
    counts, metrics_table = at.dataframe[0].value, at.dataframe[1].value
    assert "median survival (months)" in counts.columns
    assert {"95% CI low", "95% CI high", "scale"} <= set(metrics_table.columns)
    # one C-index: the table's equals the sidebar's, and a note says how it was computed
    c_row = metrics_table[metrics_table["metric"].str.startswith("C-index")]
    assert len(c_row) == 1 and "mean of 2 folds" in c_row["metric"].iloc[0]
    side = " ".join(m.value for m in at.sidebar.markdown)
    assert f"{c_row['estimate'].iloc[0]:.3f}" in side and "mean of 2 folds" in side
    assert any("not pooled" in c.value for c in at.caption)
    assert not any("pooled out-of-fold" in str(v) for v in metrics_table["metric"])
    # round calibration horizons with their unit
    horizon = at.selectbox(key="horizon")
    assert horizon.options and all(o.endswith("months)") for o in horizon.options)
    assert horizon.options[0].startswith("1 year (12 months)")
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels.count("Download PNG") == 2 and labels.count("Download CSV") == 2
    # a filter narrows the cohort
    sex = at.multiselect(key="f_sex")
    at = sex.set_value([sex.options[0]]).run()
    no_exceptions(at)
    assert int({m.label: m.value for m in at.metric}["patients"]) < 44


def test_sidebar_offers_the_run_report(monkeypatch, tiny_run, tmp_path):
    at = app_for(monkeypatch, tiny_run).run()
    no_exceptions(at)
    assert any("multimodal report" in c.value for c in at.sidebar.code)  # how to write it
    copy = tmp_path / "with_report" / "run"
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns("checkpoints"))
    (copy / "report.html").write_text("<html><body>report</body></html>")
    at = app_for(monkeypatch, copy).run()
    no_exceptions(at)
    labels = [d.proto.label for d in at.sidebar.get("download_button")]
    assert "Download the run report (HTML)" in labels
    assert not at.sidebar.code


def _patient_page(monkeypatch, tiny_run, pid):
    at = app_for(monkeypatch, tiny_run).run()
    at = at.sidebar.radio(key="view").set_value("Patient").run()
    return at.selectbox(key="patient_id").set_value(pid).run()


def test_patient_view(monkeypatch, tiny_run, tiny_cohort, caplog):
    avail = tiny_cohort.availability()
    pid = str(avail.index[avail.all(axis=1)][0])
    with caplog.at_level(logging.DEBUG):
        at = _patient_page(monkeypatch, tiny_run, pid)
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["risk group"] in {"low", "intermediate", "high"}
    # one vocabulary: event probability by round horizons, a hazard ratio, units on the values
    assert {f"event probability by {h}" for h in ("1 year", "3 years", "5 years")} <= set(metrics)
    assert metrics["hazard ratio vs median patient"].endswith("×")
    assert metrics["median survival"].endswith(" months") or metrics["median survival"] == (
        "not reached"
    )
    assert metrics["risk percentile"].endswith("%")
    assert not any(label.startswith(("risk at", "S at")) for label in metrics)
    assert any("folds" in (m.delta or "") for m in at.metric)  # the fold models' range
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # curve, risk distribution, contributions, genes/pathways
    curve = json.loads(charts[0].proto.spec)
    assert _has_at_risk_table(curve)  # under the Kaplan-Meier of similar patients
    hist = json.loads(charts[1].proto.spec)
    assert "hazard ratio" in hist["layout"]["xaxis"]["title"]["text"]
    html = " ".join(m.value for m in at.markdown)
    first_sentence = tiny_cohort.sources["report"].texts()[pid].split(".")[0]
    assert first_sentence[:20] in html  # the report
    assert "background:rgba" in html  # sentences shaded...
    assert "shading-legend" in html and "raises the 3-year event probability" in html  # ...legend
    bars = json.loads(at.get("plotly_chart")[2].proto.spec)
    assert "percentage points" in bars["layout"]["xaxis"]["title"]["text"]
    assert any("event probability" in m.value and "points" in m.value for m in at.markdown)
    assert len(at.get("image")) == 3  # axial, coronal, sagittal
    at = at.toggle(key="saliency_ct").set_value(True).run()
    no_exceptions(at)
    assert any("with occlusion saliency" in m.value for m in at.markdown)
    assert len(at.get("image")) == 3
    assert pid not in caplog.text  # no patient identifiers in the logs
    # conditional survival given time already survived
    at = at.number_input(key="survived").set_value(6.0).run()
    no_exceptions(at)
    assert any("Conditional survival" in c.value for c in at.caption)


def test_full_explanation_renders(monkeypatch, tiny_run, tiny_cohort):
    avail = tiny_cohort.availability()
    pid = str(avail.index[avail.all(axis=1)][1])
    at = _patient_page(monkeypatch, tiny_run, pid)
    no_exceptions(at)
    at = at.button(key="full_explain").click().run()
    no_exceptions(at)
    assert not at.error
    assert any("Attributions from the explain step" in c.value for c in at.caption)
    assert any("Modality contributions" in m.value for m in at.markdown)


def test_saliency_toggle_says_why_it_is_not_available(monkeypatch, tiny_run, tiny_cohort):
    from multimodal.dashboard import evidence

    reason = "the model reads ct as precomputed embeddings of a frozen image network"
    monkeypatch.setattr(evidence, "saliency_unavailable", lambda model, m: reason)
    pid = str(tiny_cohort.sources["ct"].patient_ids[0])
    at = _patient_page(monkeypatch, tiny_run, pid)
    no_exceptions(at)
    toggle = at.toggle(key="saliency_ct")
    assert toggle.proto.disabled
    assert any(reason in i.value and "not available" in i.value for i in at.info)


def test_compare_view(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    at = at.sidebar.radio(key="view").set_value("Compare").run()
    no_exceptions(at)
    chosen = at.multiselect(key="compare_ids").value
    assert len(chosen) == 2
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert set(chosen) <= {trace.get("name") for trace in spec["data"]}
    assert len(at.dataframe) == 1
    columns = list(at.dataframe[0].value.columns)
    assert "event probability by 3 years" in columns and "hazard ratio vs median patient" in columns
    assert not any(str(c).startswith("S at") for c in columns)
    labels = [d.proto.label for d in at.get("download_button")]
    assert "Download PNG" in labels and "Download the table (CSV)" in labels


def _new_patient_form(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    at = at.sidebar.radio(key="view").set_value("New patient").run()
    no_exceptions(at)
    return at


def _predict(at: AppTest) -> AppTest:
    at = at.button[0].click().run()
    no_exceptions(at)
    return at


@pytest.mark.parametrize("age", [500.0, -5.0])
def test_new_patient_refuses_implausible_values(monkeypatch, tiny_run, age):
    at = _new_patient_form(monkeypatch, tiny_run)
    assert at.number_input(key="np_age").value is None  # empty = unknown, never the mean
    at.number_input(key="np_age").set_value(age)
    at.selectbox(key="np_sex").set_value("F")
    at = _predict(at)
    assert at.error and "Not predicted" in at.error[0].value
    assert f"age = {age:g} years is refused" in at.error[0].value
    assert "plausible 0 to 120 years" in at.error[0].value
    assert not at.metric and not at.get("plotly_chart")  # no prediction at all
    # a plausible value then predicts, and a refused one afterwards hides that prediction
    at.number_input(key="np_age").set_value(60.0)
    at = _predict(at)
    assert not at.error and at.metric
    at.number_input(key="np_age").set_value(age)
    at = _predict(at)
    assert at.error and not at.metric


def test_new_patient_unknown_values_and_modalities_not_used(monkeypatch, tiny_run):
    at = _new_patient_form(monkeypatch, tiny_run)
    template = [d for d in at.get("download_button") if "genomics template" in d.proto.label]
    assert template  # the expected genomics columns
    at.number_input(key="np_age").set_value(None)  # a cleared box stays unknown
    at.selectbox(key="np_sex").set_value("F")
    at.text_area(key="np_report").set_value("")
    at = _predict(at)
    assert not at.error
    status = at.dataframe[0].value
    assert status.loc["report", "status"] == "not used"
    assert status.loc["clinical", "status"] == "used"
    rests = " ".join(m.value for m in at.markdown)
    assert "Rests on:" in rests and "report: not used (no report text given)" in rests
    infos = " ".join(i.value for i in at.info)
    assert "age unknown: passed to the model as missing" in infos
    metrics = {m.label: m.value for m in at.metric}
    assert {"median survival", "event probability by 1 year"} <= set(metrics)
    assert any("folds" in (m.delta or "") for m in at.metric)  # the fold range
    labels = [d.proto.label for d in at.get("download_button")]
    assert {"Download PNG", "Download CSV", "Download the prediction summary (CSV)"} <= set(labels)


def test_new_patient_view_flags_out_of_distribution_values(monkeypatch, tiny_run, tiny_model):
    from multimodal.dashboard.new_patient import model_inputs

    lo, hi = model_inputs(tiny_model).ranges["age"]
    age = round(hi + 0.2 * (hi - lo))  # accepted (within 25% of the width) but flagged (> 10%)
    at = _new_patient_form(monkeypatch, tiny_run)
    at.number_input(key="np_age").set_value(float(age))
    at.selectbox(key="np_sex").set_value("F")
    at.text_area(key="np_report").set_value("Grade 3 carcinoma. Margins are involved.")
    at = _predict(at)
    metrics = {m.label: m.value for m in at.metric}
    assert "median survival" in metrics and "event probability by 1 year" in metrics
    status = at.dataframe[0].value
    assert status.loc["report", "status"] == "used"
    warnings = " ".join(w.value for w in at.warning)
    assert f"age = {age:g} is far outside" in warnings


def test_missing_run_folder_gives_a_message_not_a_traceback(monkeypatch, tmp_path):
    at = app_for(monkeypatch, tmp_path / "does-not-exist").run()
    no_exceptions(at)
    assert "does not exist" in at.error[0].value


def test_corrupt_run_folder_gives_a_message(monkeypatch, tiny_run, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken, ignore=shutil.ignore_patterns("checkpoints", "model"))
    (broken / "predictions.csv").write_text("this is, not\na predictions table\n")
    at = app_for(monkeypatch, broken).run()
    no_exceptions(at)
    assert "lacks column" in at.error[0].value
    (broken / "config.yaml").write_text(": : :")
    at = app_for(monkeypatch, broken).run()
    no_exceptions(at)
    assert "cannot be read" in at.error[0].value


def test_password_gate(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run, password="open sesame").run()
    no_exceptions(at)
    assert not at.metric and len(at.text_input) == 1  # nothing but the password box
    at = at.text_input(key="password").input("wrong").run()
    assert at.error[0].value == "Wrong password." and not at.metric
    at = at.text_input(key="password").input("open sesame").run()
    no_exceptions(at)
    assert {m.label for m in at.metric} >= {"patients", "events"}


@pytest.mark.parametrize("view", ["Patient", "Compare"])
def test_views_work_without_the_cohort(monkeypatch, tiny_run, tmp_path, view):
    alone = tmp_path / "alone" / "run"
    shutil.copytree(tiny_run, alone, ignore=shutil.ignore_patterns("checkpoints"))
    cfg = yaml.safe_load((alone / "config.yaml").read_text())
    cfg["_meta"].pop("cohort_path", None)  # no record of where the cohort is: it stays unfound
    (alone / "config.yaml").write_text(yaml.safe_dump(cfg))
    at = app_for(monkeypatch, alone).run()
    at = at.sidebar.radio(key="view").set_value(view).run()
    no_exceptions(at)
    assert any("cohort" in i.value for i in at.info)
    assert at.get("plotly_chart")
