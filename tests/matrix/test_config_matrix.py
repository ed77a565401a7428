"""Every training config x every consumer, the way a user reaches each one.

Configs (``run`` fixture, conftest.py): every ``configs/*.yaml`` and a tuned ``best.yaml``, each
trained once on a tiny cohort. Consumers: ``train``, ``evaluate``, ``predict`` on a new cohort that
lacks a modality, ``explain`` with every method, the dashboard's patient page with the full
explanation, and ``multimodal.load_run`` from Python.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from streamlit.testing.v1 import AppTest

import multimodal
from multimodal.dashboard.launch import ENV_COHORT, ENV_PASSWORD, ENV_RUN
from multimodal.explain.core import METHODS

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app" / "dashboard.py")
FULL_EXPLAIN = "Run the full explanation for this patient"
EXPLANATION_FILES = (
    "explanation.json",
    "modality_contributions.csv",
    "features.csv",
    "text_spans.csv",
    "saliency.csv",
    "bags.csv",
)


def exceptions(at: AppTest) -> list[str]:
    """The app's exceptions: message and the last frame of each stack trace."""
    return [f"{e.value}\n{''.join(e.stack_trace[-1:])}" for e in at.exception]


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"patient_id": str})


def finite_c(value) -> bool:
    return value is not None and math.isfinite(value) and 0.0 <= value <= 1.0


def test_every_shipped_config_is_in_the_matrix(matrix):
    shipped = sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))
    assert shipped and set(shipped) < set(matrix.training_configs)
    missing = [name for name in matrix.training_configs if name not in matrix.cohort_for]
    assert not missing, (
        f"no cohort for {missing}: add them to COHORT_FOR in tests/matrix/conftest.py"
    )


def test_shrinking_keeps_the_structure(run):
    """The ``--set`` overrides change sizes only: encoders, fusion, members and head are the
    config's own (the linear terms, their penalties and how they combine included)."""
    from multimodal.config import load_config

    if run.step == "tune":  # no best.yaml to read
        run.require_trained()
    shipped, shrunk = load_config(run.config), load_config(run.config, run.overrides)
    for section in ("encoders", "fusion", "members", "head"):
        if hasattr(shipped, section):
            assert getattr(shrunk, section) == getattr(shipped, section), section


def test_train_one_fold(run):
    assert run.step == "train" and run.train.exit_code == 0, run.train_failure()
    assert "validation C-index" in run.train.output
    saved = yaml.safe_load((run.dir / "config.yaml").read_text())
    assert saved["data"]["fold_indices"] == [0] and saved["train"]["epochs"] == 2
    metrics = json.loads((run.dir / "metrics.json").read_text())
    assert finite_c(metrics["c_index"]), metrics["c_index"]
    assert [f["fold"] for f in metrics["folds"]] == [0]
    assert "clinical" in metrics["modalities"]

    preds = run.predictions()
    val = preds[preds["split"] == "val"]
    train = preds[preds["split"] == "train"]
    assert len(val) == metrics["folds"][0]["n_val"] > 0
    assert set(preds["fold"]) == {0}
    assert not set(val["patient_id"]) & set(train["patient_id"])
    cohort = multimodal.Cohort.load(run.cohort.path)
    # a landmark run's rows are (patient, landmark): landmark_patient names the patient
    owner = "landmark_patient" if "landmark_patient" in preds else "patient_id"
    assert set(val[owner]) | set(train[owner]) <= set(cohort.patients.index)
    assert not set(val[owner]) & set(train[owner])
    if run.cohort.kind == "tcga":  # the published fold 0, as the fold file says
        fold0 = read_csv(Path(run.cohort.path) / "splits" / "porpoise_mcat_5fold" / "fold_0.csv")
        assert set(val["patient_id"]) == set(fold0.loc[fold0["split"] == "val", "patient_id"])
    assert np.isfinite(val["risk"].to_numpy(float)).all()


def test_evaluate(run, cli):
    run.require_trained()
    trained = json.loads((run.dir / "metrics.json").read_text())
    res = cli.invoke("evaluate", run.dir, "--bootstrap", 20)
    assert res.exit_code == 0, cli.describe(res)
    assert "validation C-index" in res.output and "fold 0: C-index" in res.output
    metrics = json.loads((run.dir / "metrics.json").read_text())
    # the same predictions scored again: the same C-index (float round-off only)
    assert abs(metrics["c_index"] - trained["c_index"]) < 1e-9
    lo, hi = metrics["folds"][0]["c_index_ci"]
    assert 0.0 <= lo <= hi <= 1.0


def test_predict_new_cohort_lacking_a_modality(run, cli, tmp_path):
    run.require_trained()
    dropped = run.dropped_modality()
    cohort_path = run.new_cohort.without(dropped, tmp_path / "new")
    new = multimodal.Cohort.load(cohort_path)
    assert dropped not in new.modalities
    out = tmp_path / "preds.csv"
    res = cli.invoke("predict", run.dir, "--cohort", cohort_path, "--out", out)
    assert res.exit_code == 0, cli.describe(res)
    frame = read_csv(out)
    assert sorted(frame["patient_id"]) == sorted(map(str, new.patients.index))
    assert np.isfinite(frame["risk"].to_numpy(float)).all()
    surv = frame.filter(regex=r"^surv_").to_numpy(float)
    assert surv.shape[1] > 0 and ((surv >= 0) & (surv <= 1)).all()
    present = [set(filter(None, str(s).split(","))) for s in frame["modalities_present"].fillna("")]
    assert not any(dropped in p for p in present)
    # every other modality of the run is listed for the patients who have it
    assert set().union(*present) == set(run.modalities) - {dropped}


def test_explain_every_method(run, cli, tmp_path):
    run.require_trained()
    ids = run.complete_val_patients(2)
    out = tmp_path / "explanations"  # not RUN_DIR/explanations: the dashboard test computes its own
    res = cli.invoke(
        "explain", run.dir, "--cohort", run.cohort.path, "--patients", ",".join(ids), "--out", out
    )
    assert res.exit_code == 0, cli.describe(res)
    for name in EXPLANATION_FILES:
        assert (out / name).is_file(), name
    meta = json.loads((out / "explanation.json").read_text())
    assert meta["methods"] == list(METHODS)
    assert sorted(meta["patient_ids"]) == sorted(ids)

    contrib = read_csv(out / "modality_contributions.csv")
    for pid in ids:
        rows = contrib[contrib["patient_id"] == pid]
        assert sorted(rows["modality"]) == sorted(run.modalities), pid
        assert rows["present"].astype(bool).all()
        assert np.isfinite(rows["shapley"].to_numpy(float)).all()
        # Shapley values are efficient: they share out risk - risk with no data (float32 sums)
        gap = float(rows["risk"].iloc[0] - rows["risk_no_data"].iloc[0])
        assert abs(rows["shapley"].sum() - gap) < 1e-4
    features = read_csv(out / "features.csv")
    assert set(features["patient_id"]) == set(ids)
    assert set(features["modality"]) <= set(run.modalities)
    assert np.isfinite(features["attribution"].to_numpy(float)).all()
    cohort = multimodal.Cohort.load(run.cohort.path)
    text = [m for m in run.modalities if cohort.sources[m].kind == "text"]
    spans = read_csv(out / "text_spans.csv")
    if text:
        assert set(spans["patient_id"]) == set(ids)
        assert set(spans["modality"]) <= set(text)
    for name in ("text_spans.csv", "saliency.csv", "bags.csv"):
        table = read_csv(out / name)
        assert set(table["patient_id"].dropna()) <= set(ids), name
    assert meta["n_fold_models"] == 1  # one trained fold


def test_dashboard_patient_page_full_explanation(run, monkeypatch):
    run.require_trained()
    pid = run.complete_val_patients(1)[0]  # a landmark run's page lists patients, not rows
    monkeypatch.setenv(ENV_RUN, str(run.dir))
    monkeypatch.delenv(ENV_COHORT, raising=False)  # the run's config says where its cohort is
    monkeypatch.delenv(ENV_PASSWORD, raising=False)
    at = AppTest.from_file(APP, default_timeout=240).run()
    at = at.sidebar.radio(key="view").set_value("Patient").run()
    at = at.selectbox(key="patient_id").set_value(pid).run()
    assert not at.exception, exceptions(at)
    buttons = [b for b in at.button if str(b.label).startswith(FULL_EXPLAIN)]
    assert buttons, [b.label for b in at.button]
    at = buttons[0].click().run()
    assert not at.exception, exceptions(at)
    assert not at.error, [e.value for e in at.error]
    captions = " ".join(c.value for c in at.caption)
    assert "Attributions from the explain step" in captions
    assert any("Modality contributions" in m.value for m in at.markdown)
    bars = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = [set(map(str, t.get("x") or [])) | set(map(str, t.get("y") or [])) for b in bars
             for t in b["data"]]  # fmt: skip
    assert any(set(run.modalities) <= n for n in names), run.modalities
    assert not [b for b in at.button if str(b.label).startswith(FULL_EXPLAIN)]


def test_load_run_from_python(run):
    run.require_trained()
    model = multimodal.load_run(run.dir)
    assert sorted(model.modalities) == sorted(run.modalities)
    cohort = multimodal.Cohort.load(run.cohort.path)
    risk = model.predict_risk(cohort)
    assert sorted(risk.index) == sorted(map(str, cohort.patients.index))
    assert np.isfinite(risk.to_numpy(float)).all()
    times = [6.0, 12.0, 24.0, 48.0]
    surv = model.predict_survival(cohort, times=times)
    assert surv.shape == (len(cohort), len(times))
    assert list(surv.columns) == times
    s = surv.to_numpy(float)
    assert ((s >= 0) & (s <= 1)).all()
    assert (np.diff(s, axis=1) <= 1e-6).all()  # S(t) non-increasing (float32 round-off)
