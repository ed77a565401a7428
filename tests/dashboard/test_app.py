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


def test_cohort_view(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    no_exceptions(at)
    assert not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["patients"] == "44"
    assert {"clinical", "genomics", "report", "ct"} <= set(metrics)
    assert any("log-rank p" in c.value.lower() for c in at.caption)
    assert len(at.get("plotly_chart")) == 2  # Kaplan-Meier by group, calibration
    labels = [d.proto.label for d in at.get("download_button")]
    assert labels.count("Download PNG") == 2 and labels.count("Download CSV") == 2
    # a filter narrows the cohort
    sex = at.multiselect(key="f_sex")
    at = sex.set_value([sex.options[0]]).run()
    no_exceptions(at)
    assert int({m.label: m.value for m in at.metric}["patients"]) < 44


def test_patient_view(monkeypatch, tiny_run, tiny_cohort, caplog):
    avail = tiny_cohort.availability()
    pid = str(avail.index[avail.all(axis=1)][0])
    at = app_for(monkeypatch, tiny_run).run()
    with caplog.at_level(logging.DEBUG):
        at = at.sidebar.radio(key="view").set_value("Patient").run()
        at = at.selectbox(key="patient_id").set_value(pid).run()
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["risk group"] in {"low", "intermediate", "high"}
    assert {"risk at 1 year", "risk at 3 years", "median (months)"} <= set(metrics)
    charts = at.get("plotly_chart")
    assert len(charts) >= 4  # curve, risk distribution, contributions, genes/pathways
    html = " ".join(m.value for m in at.markdown)
    first_sentence = tiny_cohort.sources["report"].texts()[pid].split(".")[0]
    assert "background:rgba" in html and first_sentence[:20] in html  # highlighted report
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


def test_compare_view(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    at = at.sidebar.radio(key="view").set_value("Compare").run()
    no_exceptions(at)
    chosen = at.multiselect(key="compare_ids").value
    assert len(chosen) == 2
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert set(chosen) <= {trace.get("name") for trace in spec["data"]}
    assert len(at.dataframe) == 1


def test_new_patient_view_flags_out_of_distribution_values(monkeypatch, tiny_run):
    at = app_for(monkeypatch, tiny_run).run()
    at = at.sidebar.radio(key="view").set_value("New patient").run()
    no_exceptions(at)
    at.number_input(key="np_age").set_value(150.0)
    at.selectbox(key="np_sex").set_value("F")
    at.text_area(key="np_report").set_value("Grade 3 carcinoma. Margins are involved.")
    at = at.button[0].click().run()
    no_exceptions(at)
    metrics = {m.label: m.value for m in at.metric}
    assert "median (months)" in metrics and "risk at 1 year" in metrics
    warnings = " ".join(w.value for w in at.warning)
    assert "age = 150 is far outside" in warnings


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
