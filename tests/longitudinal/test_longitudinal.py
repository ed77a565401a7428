"""The longitudinal modality: reading and checking repeat measurements, landmarking, the
pipeline's landmark features, the sequence encoders, training and dynamic prediction."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from multimodal import Cohort, load_run
from multimodal.data.landmark import expand_folds, landmark_cohort
from multimodal.data.splits import Fold
from multimodal.encoders import ENCODERS
from multimodal.evaluation.dynamic import _km_censoring_left, horizon_brier
from multimodal.exceptions import ConfigError, DataError, LeakageError, SchemaError
from multimodal.training.pipelines_longitudinal import SUMMARY_PARTS, LongitudinalPipeline
from multimodal.training.preprocess import PreprocessContext
from tests.longitudinal.conftest import TINY_CONFIG, write_cohort

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data" / "longitudinal" / "pbc2.csv"


def _copy(tiny_cohort_path: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "cohort"
    shutil.copytree(tiny_cohort_path.parent, dest)
    return dest / "cohort.yaml"


def _edit_labs(manifest: Path, fn) -> None:
    path = manifest.parent / "labs.csv"
    fn(pd.read_csv(path)).to_csv(path, index=False)


# ----------------------------------------------------------------------------- reading
def test_reads_long_table_in_the_cohort_unit(tiny_cohort_path):
    cohort = Cohort.load(tiny_cohort_path)
    labs = cohort.sources["labs"]
    assert labs.kind == "longitudinal" and set(labs.variables) == {"marker", "noise"}
    assert labs.time_unit == "months"
    cov = cohort.coverage()
    assert cov.loc["labs", "n_patients"] == len(cohort)
    assert labs.measurements_per_patient().min() >= 1


def test_time_unit_is_converted(tmp_path):
    path = write_cohort(tmp_path / "c", n=20, unit="months")
    doc = yaml.safe_load(path.read_text())
    doc["modalities"]["labs"]["time_unit"] = "days"
    _edit_labs(path, lambda t: t.assign(time=(t["time"] * 30.4375).round(3)))
    path.write_text(yaml.safe_dump(doc))
    months = Cohort.load(path).sources["labs"].table["time"]
    assert months.max() <= 60.01


@pytest.mark.parametrize(
    "change, expected",
    [
        (
            lambda t: t.assign(time=t["time"].where(t.index != 1, -2.0)),
            ["labs.csv", "'time'", "row 3", "patient P000", "below 0"],
        ),
        (
            lambda t: t.assign(value=t["value"].astype(object).where(t.index != 0, "high")),
            ["labs.csv", "'value'", "row 2", "patient P000", "not numbers"],
        ),
        (
            lambda t: pd.concat([t, t.iloc[[0]]], ignore_index=True),
            ["labs.csv", "repeat the same", "patient P000", "marker"],
        ),
        (
            lambda t: t.assign(time=t["time"].where(t.index != 1, 500.0)),
            ["labs.csv", "after the patient's event or censoring time", "P000", "500"],
        ),
    ],
    ids=["negative time", "non-numeric value", "duplicate", "after follow-up"],
)
def test_bad_measurements_are_named(tiny_cohort_path, tmp_path, change, expected):
    manifest = _copy(tiny_cohort_path, tmp_path)
    _edit_labs(manifest, change)
    with pytest.raises((DataError, SchemaError, LeakageError)) as err:
        Cohort.load(manifest)
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_unknown_time_unit_is_refused(tiny_cohort_path, tmp_path):
    manifest = _copy(tiny_cohort_path, tmp_path)
    doc = yaml.safe_load(manifest.read_text())
    doc["modalities"]["labs"]["time_unit"] = "fortnights"
    manifest.write_text(yaml.safe_dump(doc))
    with pytest.raises(SchemaError, match="fortnights"):
        Cohort.load(manifest)


def test_wide_visits_table(tiny_cohort_path, tmp_path):
    manifest = _copy(tiny_cohort_path, tmp_path)
    long = pd.read_csv(manifest.parent / "labs.csv")
    wide = long.pivot_table(index=["patient_id", "time"], columns="variable", values="value")
    wide.reset_index().to_csv(manifest.parent / "visits.csv", index=False)
    doc = yaml.safe_load(manifest.read_text())
    doc["modalities"]["labs"] = {
        "kind": "longitudinal",
        "path": "visits.csv",
        "format": "wide",
        "time_unit": "months",
    }
    manifest.write_text(yaml.safe_dump(doc))
    table = Cohort.load(manifest).sources["labs"].table
    assert len(table) == len(long)
    assert set(table["variable"]) == {"marker", "noise"}


# ----------------------------------------------------------------------------- landmarking
def test_landmark_cohort_residual_outcomes(tiny_cohort_path):
    cohort = Cohort.load(tiny_cohort_path)
    lm = landmark_cohort(cohort, [0, 12], horizon=24)
    pt = cohort.patients
    at_12 = lm.patients[lm.patients["landmark"] == 12]
    assert len(at_12) == int((pt["time"] > 12).sum())
    base = pt.loc[at_12["landmark_patient"]]
    expected = np.minimum(base["time"].to_numpy() - 12, 24)
    np.testing.assert_allclose(at_12["time"].to_numpy(), expected)
    late = base["time"].to_numpy() - 12 > 24
    assert not at_12["event"].to_numpy()[late].any()
    # no measurement after its row's landmark, and every row keeps its landmark
    labs = lm.sources["labs"]
    limit = labs.table["patient_id"].map(labs.landmarks)
    assert (labs.table["time"] <= limit + 1e-9).all()
    assert set(labs.patient_ids) == set(lm.patients.index)


def test_folds_keep_a_patients_landmark_rows_together(tiny_cohort_path):
    cohort = Cohort.load(tiny_cohort_path)
    lm = landmark_cohort(cohort, [0, 6, 12], horizon=24)
    folds = expand_folds(cohort.folds(k=3, seed=0), lm)
    owner = lm.patients["landmark_patient"]
    for f in folds:
        assert not set(owner[f.train_ids]) & set(owner[f.val_ids])
    assert sum(len(f.val_ids) for f in folds) == len(lm.patients)
    assert isinstance(folds[0], Fold)


# ----------------------------------------------------------------------------- pipeline
def _hand_cohort() -> Cohort:
    from multimodal.data.longitudinal import LongitudinalSource

    patients = pd.DataFrame(
        {"time": [30.0, 30.0], "event": [True, False]},
        index=pd.Index(["A", "B"], name="patient_id"),
    )
    table = pd.DataFrame(
        {
            "patient_id": ["A", "A", "A", "B"],
            "time": [0.0, 6.0, 12.0, 0.0],
            "variable": ["x", "x", "x", "x"],
            "value": [1.0, 2.0, 3.0, 5.0],
        }
    )
    source = LongitudinalSource("labs", table, ["x"], "months")
    return Cohort(patients, {"labs": source})


def test_pipeline_landmark_features():
    lm = landmark_cohort(_hand_cohort(), 12.0)
    pipe = LongitudinalPipeline(PreprocessContext(), "longitudinal_gru").fit(
        lm.sources["labs"], ["A", "B"]
    )
    store = pipe.transform(lm.sources["labs"], ["A", "B"])
    names = pipe.feature_names()
    s = store.values["summary"].numpy()
    mean, sd = pipe.mean[0], pipe.std[0]
    z = lambda v: (v - mean) / sd  # noqa: E731
    row = dict(zip(names, s[0]))
    assert row["x (last)"] == pytest.approx(z(3.0), abs=1e-5)
    assert row["x (first)"] == pytest.approx(z(1.0), abs=1e-5)
    assert row["x (slope)"] == pytest.approx((1.0 / 6.0) / sd * pipe.time_scale, abs=1e-5)
    assert row["x (never)"] == 0.0
    assert dict(zip(names, s[1]))["x (since)"] == pytest.approx(12.0 / pipe.time_scale)
    assert store.values["visits"].numpy().sum(1).tolist() == [3, 1]
    assert (len(SUMMARY_PARTS) + 1) * 1 + 2 == s.shape[1]
    assert row["x (last x landmark)"] == pytest.approx(row["x (last)"] * row["landmark"], abs=1e-5)


def test_pipeline_refuses_measurements_after_the_landmark():
    lm = landmark_cohort(_hand_cohort(), 12.0)
    labs = lm.sources["labs"]
    pipe = LongitudinalPipeline(PreprocessContext(), "longitudinal_gru").fit(labs, ["A", "B"])
    leaked = labs._copy_with(pd.concat([labs.table, labs.table.iloc[[0]].assign(time=20.0)]))
    leaked.landmarks = labs.landmarks
    with pytest.raises(LeakageError, match="after their landmark"):
        pipe.transform(leaked, ["A", "B"])
    raw = _hand_cohort().sources["labs"]
    with pytest.raises(ConfigError, match="landmark"):
        pipe.transform(raw, ["A", "B"])


# ----------------------------------------------------------------------------- encoders
@pytest.mark.parametrize(
    "name",
    ["longitudinal_gru", "longitudinal_lstm", "longitudinal_transformer", "longitudinal_mlp"],
)
def test_encoders_ignore_padding_and_empty_rows(name):
    torch.manual_seed(0)
    lm = landmark_cohort(_hand_cohort(), 12.0)
    pipe = LongitudinalPipeline(PreprocessContext(), name).fit(lm.sources["labs"], ["A", "B"])
    store = pipe.transform(lm.sources["labs"], ["A", "B"])
    enc = ENCODERS.get(name).from_spec(store.spec, out_dim=4).eval()
    x = store.batch(np.arange(2))
    out = enc(x)
    assert out.shape == (2, 4) and torch.isfinite(out).all()
    poked = {k: v.clone() for k, v in x.items()}
    pad = ~poked["visits"]
    poked["values"][pad] = 99.0
    poked["before"][pad] = 99.0
    np.testing.assert_allclose(enc(poked).detach().numpy(), out.detach().numpy(), atol=1e-5)
    empty = {k: v.clone() for k, v in x.items()}
    empty["visits"][:] = False
    assert torch.isfinite(enc(empty)).all()


# ----------------------------------------------------------------------------- training
def test_longitudinal_without_landmark_is_refused(tiny_cohort_path, tmp_path):
    from multimodal import train

    cfg = dict(TINY_CONFIG, data={"cohort": str(tiny_cohort_path), "folds": 3, "fold_indices": [0]})
    with pytest.raises(ConfigError, match=r"data\.landmark"):
        train(cfg, out=tmp_path / "run")


def test_training_reports_per_landmark_metrics(tiny_run):
    fold = tiny_run.metrics["folds"][0]
    for s in (0, 6, 12, 18, 24):
        assert 0.0 <= fold[f"c_index_lm{s}"] <= 1.0
        assert 0.0 <= fold[f"brier_lm{s}"] <= 1.0
    assert "landmark" in tiny_run.predictions
    val = tiny_run.predictions[tiny_run.predictions["split"] == "val"]
    assert val["landmark"].isin([0, 6, 12, 18, 24]).all()
    assert not set(val["landmark_patient"]) & set(
        tiny_run.predictions.loc[tiny_run.predictions["split"] == "train", "landmark_patient"]
    )
    # the marker drives the hazard: the model ranks validation rows better than chance
    assert fold["c_index"] > 0.6


def test_dynamic_prediction_uses_only_the_past(tiny_run, tiny_cohort_path):
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    sub = cohort.subset(list(cohort.patients.index[:12]))
    before = model.predict_survival(sub, times=[6, 12, 24], landmark=12)
    labs = sub.sources["labs"]
    later = labs.table["time"] > 12
    table = labs.table.copy()
    table.loc[later, "value"] += 50.0
    changed = Cohort(sub.patients, {**sub.sources, "labs": labs._copy_with(table)})
    after = model.predict_survival(changed, times=[6, 12, 24], landmark=12)
    pd.testing.assert_frame_equal(before, after)
    at_risk = sub.patients["time"] > 12
    assert before.loc[at_risk[at_risk].index].notna().all().all()
    assert before.loc[at_risk[~at_risk].index].isna().all().all()  # not alive at 12: refused
    s = before.loc[at_risk[at_risk].index]
    assert (np.diff(s.to_numpy(), axis=1) <= 1e-9).all()  # survival falls with time


def test_prediction_refusals(tiny_run, tiny_cohort_path):
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    with pytest.raises(ConfigError, match="horizon"):
        model.predict_survival(cohort, times=[48], landmark=12)
    frame = model.predict(cohort.subset(list(cohort.patients.index[:5])), landmark=36)
    assert (frame["status"] != "ok").all()  # refused (follow-up ended) or warned (extrapolation)
    assert frame["input_issues"].str.len().gt(0).all()


def test_survival_beyond_the_last_training_landmark_is_flagged(tiny_run, tiny_cohort_path, caplog):
    """predict_survival drops predict's status column: the extrapolation must still be said
    (the model's last training landmark is 24), and strict mode must refuse it."""
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    alive = cohort.patients.index[cohort.patients["time"] > 30]
    sub = cohort.subset(list(alive[:4]))
    with caplog.at_level("WARNING", logger="multimodal.models.run"):
        surv = model.predict_survival(sub, times=[6], landmark=30)
    assert surv.notna().all().all()
    assert "4 patient(s) at a landmark after the last one the model was trained at (24)" in (
        caplog.text
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="multimodal.models.run"):
        model.predict_survival(sub, times=[6], landmark=12)
    assert "extrapolate" not in caplog.text
    with pytest.raises(DataError, match=r"strict mode(.|\n)*extrapolate"):
        model.predict_survival(sub, times=[6], landmark=30, strict=True)


def test_explain_a_landmark_model(tiny_run, tiny_cohort_path):
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    exp = model.explain(cohort, patient_ids=[str(cohort.patients.index[0])])
    contrib = exp.modality_contributions
    assert "labs" in set(contrib["modality"])
    assert np.isfinite(contrib.select_dtypes("number").to_numpy()).all()


def test_one_patient_with_20_visits_predicts_under_a_second(tiny_run):
    import time

    from multimodal.data.longitudinal import LongitudinalSource

    model = load_run(tiny_run.run_dir)
    patients = pd.DataFrame(
        {"time": [np.nan], "event": [np.nan]}, index=pd.Index(["NEW"], name="patient_id")
    )
    visits = pd.DataFrame(
        {
            "patient_id": "NEW",
            "time": np.arange(20) * 3.0,
            "variable": "marker",
            "value": np.linspace(0, 1, 20),
        }
    )
    from multimodal.data.sources import ClinicalSource

    clinical = ClinicalSource(
        "clinical",
        pd.DataFrame({"age": [61.0], "sex": ["F"]}, index=patients.index),
        ["age"],
        ["sex"],
    )
    new = Cohort(
        patients,
        {"clinical": clinical, "labs": LongitudinalSource("labs", visits, ["marker"], "months")},
    )
    model.predict(new)  # warm-up (imports)
    start = time.perf_counter()
    frame = model.predict(new, landmark=24)
    elapsed = time.perf_counter() - start
    assert np.isfinite(frame["risk"]).all()
    assert elapsed < 1.0, f"{elapsed:.2f} s"


# ----------------------------------------------------------------------------- metrics
def test_censoring_km_left_limit():
    t = np.array([1.0, 2, 2, 3, 4])
    e = np.array([1, 0, 1, 0, 1], bool)
    np.testing.assert_allclose(
        _km_censoring_left(t, e, np.array([0.5, 2, 2.5, 3, 3.5])), [1, 1, 0.75, 0.75, 0.375]
    )


def test_horizon_brier_perfect_and_uninformative():
    t = np.array([1.0, 2.0, 5.0, 5.0])
    e = np.array([True, True, False, False])
    assert horizon_brier(t, e, t, e, np.array([0.0, 0.0, 1.0, 1.0]), 5.0) == pytest.approx(0.0)
    assert horizon_brier(t, e, t, e, np.full(4, 0.5), 5.0) == pytest.approx(0.25)


# ----------------------------------------------------------------------------- PBC2
needs_pbc = pytest.mark.skipif(
    not SHARED.is_file() and os.environ.get("CI") != "true", reason="../shared/data absent"
)


@needs_pbc
def test_pbc2_loader():
    cohort = Cohort.load(SHARED)
    assert len(cohort) == 312 and int(cohort.patients["event"].sum()) == 140
    assert int(cohort.patients["pfs_event"].sum()) == 169  # deaths + 29 transplants
    assert len(cohort.sources["labs"].table) > 15000
    lm = landmark_cohort(cohort, [1, 2, 3, 4, 5], horizon=5)
    assert lm.patients.groupby("landmark").size().tolist() == [290, 278, 245, 225, 202]
    # times are years, and the landmark view and subsets say so (reports, dashboard horizons)
    assert cohort.time_unit == lm.time_unit == cohort.subset(["PBC-001"]).time_unit == "years"


def test_implausible_measurement_is_refused(tiny_run, tiny_cohort_path):
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    sub = cohort.subset(list(cohort.patients.index[:4]))
    labs = sub.sources["labs"]
    table = labs.table.copy()
    first = table.index[(table["patient_id"] == "P000") & (table["variable"] == "marker")][0]
    table.loc[first, "value"] = 1e6  # a unit mistake
    bad = Cohort(sub.patients, {**sub.sources, "labs": labs._copy_with(table)})
    frame = model.predict(bad, landmark=0).set_index("patient_id")
    assert frame.loc["P000", "status"] == "refused"
    assert "marker" in frame.loc["P000", "input_issues"]
    assert np.isnan(frame.loc["P000", "risk"])
    assert (frame.drop(index="P000")["status"] == "ok").all()


def test_new_patients_without_outcomes_predict_at_a_landmark(tiny_run, tiny_cohort_path):
    model = load_run(tiny_run.run_dir)
    cohort = Cohort.load(tiny_cohort_path)
    sub = cohort.subset(list(cohort.patients.index[:3]))
    unknown = sub.patients.copy()
    unknown["time"] = np.nan
    unknown["event"] = pd.array([pd.NA] * len(unknown), dtype="boolean")
    new = Cohort(unknown, sub.sources)
    surv = model.predict_survival(new, times=[6, 12], landmark=6)
    assert surv.notna().all().all()
    no_event = Cohort(unknown.drop(columns=["event"]), sub.sources)
    assert model.predict_survival(no_event, times=[6], landmark=6).notna().all().all()


@needs_pbc
def test_pbc2_competing_risks_at_landmarks(tmp_path):
    """Transplantation vs death (the competing endpoint) trains and predicts on landmark rows."""
    import multimodal

    cfg = {
        "endpoint": "competing",
        "data": {
            "cohort": str(SHARED),
            "folds": 5,
            "fold_indices": [0],
            "landmark": {"times": [0, 1, 2, 3], "horizon": 5},
        },
        "encoders": {"labs": {"name": "longitudinal_mlp", "out_dim": 4}},
        "fusion": {"name": "concat", "dim": 4},
        "members": {"clinical": True, "linear": ["labs"], "deep": False},
        "head": {"name": "cox"},
        "train": {"epochs": 1, "progress": False, "refit": False},
        "eval": {"bootstrap": 0, "n_times": 3},
    }
    result = multimodal.train(cfg, out=tmp_path / "run")
    fold = result.metrics["folds"][0]
    assert 0.6 < fold["c_index_death"] <= 1.0  # death: cause 2
    assert 0.5 < fold["c_index_progression"] <= 1.0  # transplantation: cause 1
    model = load_run(tmp_path / "run")
    cohort = Cohort.load(SHARED)
    cif = model.predict_cif(cohort.subset(list(cohort.patients.index[:5])), [1, 3], cause="death")
    assert cif.shape == (5, 2)
