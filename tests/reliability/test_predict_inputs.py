"""`predict` checks its inputs against what the model was trained on (issue #20, finding 2).

Non-finite values and values beyond plausible limits refuse the patient (NaN predictions,
``status`` ``refused``); values beyond the training range and unseen levels warn; a modality the
model uses that the cohort lacks warns for every patient; a modality whose columns were renamed is
refused and not counted as present; ``--strict`` fails instead of warning; patients without
follow-up (no ``time``/``event``) can be predicted.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import multimodal
from multimodal.cli import app
from multimodal.exceptions import DataError, SchemaError

#: clinical + genomics, with a linear genomics term so that the genomics values reach the risk
CONFIG = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics"], "genomics_max_features": 20},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
    },
    "fusion": {"name": "concat", "dim": 4},
    "members": {"linear": ["genomics"]},
    "train": {"epochs": 2, "batch_size": 32, "patience": 5, "progress": False},
    "eval": {"n_times": 3, "bootstrap": 0},
}

TABLES = ("patients.csv", "clinical.csv", "genomics.csv", "groups.csv")


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The synthetic cohort reduced to clinical + genomics (the model's modalities)."""
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("predict_inputs")
    generate_cohort(root / "full", n_patients=60, seed=0, image_size=8)
    out = root / "base"
    out.mkdir()
    for name in TABLES:
        shutil.copy(root / "full" / name, out / name)
    doc = yaml.safe_load((root / "full" / "cohort.yaml").read_text())
    doc["modalities"] = {m: doc["modalities"][m] for m in ("clinical", "genomics")}
    (out / "cohort.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


@pytest.fixture(scope="module")
def run_dir(base, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("predict_run") / "run"
    multimodal.train(CONFIG, cohort=multimodal.Cohort.load(base / "cohort.yaml"), out=out)
    return out


@pytest.fixture(scope="module")
def model(run_dir):
    return multimodal.load_run(run_dir)


def variant(
    base: Path,
    dst: Path,
    *,
    patients: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None,
    clinical: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None,
    genomics: Callable[[pd.DataFrame], pd.DataFrame | None] | None = None,
    manifest: Callable[[dict], None] | None = None,
) -> Path:
    """A copy of the base cohort with its tables / manifest edited; returns the manifest path."""
    shutil.copytree(base, dst)
    for name, fn in (("patients", patients), ("clinical", clinical), ("genomics", genomics)):
        if fn is not None:
            path = dst / f"{name}.csv"
            frame = pd.read_csv(path, dtype={"patient_id": str})
            out = fn(frame)
            (frame if out is None else out).to_csv(path, index=False)
    if manifest is not None:
        doc = yaml.safe_load((dst / "cohort.yaml").read_text())
        manifest(doc)
        (dst / "cohort.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    return dst / "cohort.yaml"


def new_patients(path: Path):
    """A cohort of patients to predict, loaded as README says (no outcomes needed; values are
    checked against the model, not refused at load)."""
    return multimodal.Cohort.load(path, require_outcomes=False)


def predict(model, path: Path) -> pd.DataFrame:
    return model.predict(new_patients(path)).set_index("patient_id")


def cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def first_ids(base: Path, n: int) -> list[str]:
    return pd.read_csv(base / "clinical.csv", dtype={"patient_id": str})["patient_id"][:n].tolist()


def assert_ok(frame: pd.DataFrame, ids) -> None:
    rows = frame.loc[list(ids)]
    assert (rows["status"] == "ok").all(), rows.loc[rows["status"] != "ok", "input_issues"]
    assert np.isfinite(rows["risk"].to_numpy(float)).all()
    assert (rows["input_issues"].fillna("") == "").all()


# ------------------------------------------------------------------------------ no false alarms
def genomics_ids(base: Path) -> list[str]:
    """Patients with a genomics row (the others lack the modality, as some do in training)."""
    return pd.read_csv(base / "genomics.csv", dtype={"patient_id": str})["patient_id"].tolist()


def test_training_cohort_predicts_without_issues(model, base):
    frame = predict(model, base / "cohort.yaml")
    assert_ok(frame, frame.index)
    avail = multimodal.Cohort.load(base / "cohort.yaml").availability()
    expected = [
        ",".join(m for m in ("clinical", "genomics") if avail.loc[p, m]) for p in frame.index
    ]
    assert frame["modalities_present"].tolist() == expected
    assert frame["median_survival"].notna().any()


# ------------------------------------------------------------------------------ finding 2 bullets
def test_infinite_genomics_values_are_refused_per_patient(model, base):
    # built in memory: the cohort loader may refuse infinite cells before predict sees them
    a, b = genomics_ids(base)[:2]
    feature = model.folds[0].pipelines["genomics"].prep.feature_names_[0]
    cohort = multimodal.Cohort.load(base / "cohort.yaml")
    table = cohort.sources["genomics"].table
    table.loc[a, :] = np.inf
    table.loc[b, feature] = -np.inf

    frame = model.predict(cohort).set_index("patient_id")
    for pid in (a, b):
        row = frame.loc[pid]
        assert row["status"] == "refused" and np.isnan(row["risk"])
        assert np.isnan(row["median_survival"])
        assert "genomics.csv" in row["input_issues"] and f"patient {pid}" in row["input_issues"]
        assert "inf" in row["input_issues"] and "finite" in row["input_issues"]
    assert feature in frame.loc[b, "input_issues"]
    assert frame.filter(regex="^surv_").loc[[a, b]].isna().all().all()
    assert_ok(frame, frame.index.drop([a, b]))


def test_genomics_on_another_scale_is_refused(model, base, tmp_path):
    def edit(g: pd.DataFrame) -> None:
        values = g.columns.drop("patient_id")
        g[values] = g[values] * 1000

    frame = predict(model, variant(base, tmp_path / "c", genomics=edit))
    rows = frame.loc[genomics_ids(base)]
    assert (rows["status"] == "refused").all() and rows["risk"].isna().all()
    assert rows["input_issues"].str.contains("far outside the training range").all()
    assert rows["input_issues"].str.contains("is the unit right").all()


def test_a_few_genes_far_outside_their_training_range_warn(model, base, tmp_path):
    # expression tables have heavy tails: up to FAR_FEATURES genes far out (here 3 of the
    # model's 20) are no sign of another scale; one more is
    from multimodal.models.input_checks import FAR_FEATURES

    a, b = genomics_ids(base)[:2]
    features = model.folds[0].pipelines["genomics"].prep.feature_names_[: FAR_FEATURES + 1]

    def edit(g: pd.DataFrame) -> None:
        for pid, cols in ((a, features[:FAR_FEATURES]), (b, features)):
            for f in cols:
                g.loc[g["patient_id"] == pid, f] = g[f].max() + 50 * np.ptp(g[f])

    frame = predict(model, variant(base, tmp_path / "c", genomics=edit))
    row = frame.loc[a]
    assert row["status"] == "warning" and np.isfinite(row["risk"])
    msg = row["input_issues"]
    assert "genomics.csv" in msg and f"patient {a}" in msg and repr(features[0]) in msg
    assert "far outside the training range" in msg and "predicted with it" in msg
    assert frame.loc[b, "status"] == "refused" and np.isnan(frame.loc[b, "risk"])
    assert "is the unit right" in frame.loc[b, "input_issues"]
    assert_ok(frame, frame.index.drop([a, b]))


def test_implausible_age_is_refused(model, base, tmp_path):
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = 1e9

    frame = predict(model, variant(base, tmp_path / "c", clinical=edit))
    row = frame.loc[a]
    assert np.isnan(row["risk"])  # not a risk of 1e7
    assert row["status"] == "refused"
    msg = row["input_issues"]
    assert "clinical.csv" in msg and f"patient {a}" in msg and "'age'" in msg
    assert "1e+09" in msg and "training range" in msg
    assert_ok(frame, frame.index.drop(a))


def test_age_in_days_is_refused_for_every_patient(model, base, tmp_path):
    def edit(c: pd.DataFrame) -> None:
        c["age"] = c["age"] * 365.25

    frame = predict(model, variant(base, tmp_path / "c", clinical=edit))
    age = pd.read_csv(base / "clinical.csv", dtype={"patient_id": str}).set_index("patient_id")
    has_age = age.index[age["age"].notna()]
    assert len(has_age) > 50
    assert frame.loc[has_age, ["risk", "median_survival"]].isna().all().all()  # not risks of ~500
    assert (frame.loc[has_age, "status"] == "refused").all()
    assert "unit" in frame.loc[has_age[0], "input_issues"]


def test_age_slightly_beyond_the_training_range_warns(model, base, tmp_path):
    (a,) = first_ids(base, 1)
    top = pd.read_csv(base / "clinical.csv")["age"].max()

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = top + 5

    frame = predict(model, variant(base, tmp_path / "c", clinical=edit))
    row = frame.loc[a]
    assert row["status"] == "warning" and np.isfinite(row["risk"])
    assert "outside the training range" in row["input_issues"] and "'age'" in row["input_issues"]
    assert_ok(frame, frame.index.drop(a))


def test_unseen_levels_are_reported_per_patient(model, base, tmp_path):
    a, b = first_ids(base, 2)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "stage"] = "V"
        c.loc[c["patient_id"] == b, "sex"] = "unknown"

    frame = predict(model, variant(base, tmp_path / "c", clinical=edit))
    assert frame.loc[a, "status"] == frame.loc[b, "status"] == "warning"
    assert "'stage'" in frame.loc[a, "input_issues"] and "'V'" in frame.loc[a, "input_issues"]
    assert "'sex'" in frame.loc[b, "input_issues"] and "'unknown'" in frame.loc[b, "input_issues"]
    assert "not seen in training" in frame.loc[a, "input_issues"]
    assert np.isfinite(frame.loc[[a, b], "risk"].to_numpy(float)).all()
    assert_ok(frame, frame.index.drop([a, b]))


def test_an_unseen_level_is_logged_once_per_predict_call(model, base, tmp_path, caplog):
    """Every fold model (2 here) transforms the same rows: the level is said once per call."""
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "stage"] = "V"

    cohort = multimodal.Cohort.load(variant(base, tmp_path / "c", clinical=edit))
    assert len(model.folds) == 2
    for _ in range(2):  # and again on the next call
        caplog.clear()
        with caplog.at_level("WARNING"):
            frame = model.predict(cohort).set_index("patient_id")
        said = [r for r in caplog.records if "'V' were not seen in the training" in r.getMessage()]
        assert len(said) == 1, caplog.text
        assert frame.loc[a, "status"] == "warning" and "'V'" in frame.loc[a, "input_issues"]
        assert_ok(frame, frame.index.drop(a))


def test_cohort_without_the_clinical_modality_warns_for_every_patient(model, base, tmp_path):
    path = variant(base, tmp_path / "c", manifest=lambda d: d["modalities"].pop("clinical"))
    frame = predict(model, path)
    assert (frame["status"] == "warning").all()
    assert frame["input_issues"].str.contains("predictions rest on genomics alone").all()
    assert np.isfinite(frame["risk"].to_numpy(float)).all()
    with_genomics = frame.index.isin(genomics_ids(base))
    assert (frame.loc[with_genomics, "modalities_present"] == "genomics").all()
    assert (frame.loc[~with_genomics, "modalities_present"] == "").all()
    assert frame.loc[~with_genomics, "input_issues"].str.contains("baseline risk").all()


def test_renamed_genomics_modality_is_reported(model, base, tmp_path):
    def rename(doc: dict) -> None:
        doc["modalities"]["rna"] = doc["modalities"].pop("genomics")

    frame = predict(model, variant(base, tmp_path / "c", manifest=rename))
    assert (frame["status"] == "warning").all()
    msg = frame["input_issues"].iloc[0]
    assert "'genomics'" in msg and "'rna'" in msg
    assert set(frame["modalities_present"]) == {"clinical"}


def test_renamed_genomics_columns_are_refused_and_not_counted_present(model, base, tmp_path):
    def edit(g: pd.DataFrame) -> pd.DataFrame:
        return g.rename(columns=lambda c: c if c == "patient_id" else f"X_{c}")

    def no_groups(doc: dict) -> None:
        doc["modalities"]["genomics"].pop("groups_path")

    frame = predict(model, variant(base, tmp_path / "c", genomics=edit, manifest=no_groups))
    assert not frame["modalities_present"].str.contains("genomics").any()
    rows = frame.loc[genomics_ids(base)]
    assert (rows["status"] == "refused").all() and rows["risk"].isna().all()
    feature = model.folds[0].pipelines["genomics"].prep.feature_names_[0]
    msg = rows["input_issues"].iloc[0]
    assert "genomics.csv" in msg and feature in msg and "missing" in msg
    assert_ok(frame, frame.index.drop(rows.index))  # no genomics row: clinical as before


def test_a_few_renamed_genomics_columns_warn_and_are_imputed(model, base, tmp_path):
    feature = model.folds[0].pipelines["genomics"].prep.feature_names_[0]

    def edit(g: pd.DataFrame) -> pd.DataFrame:
        return g.rename(columns={feature: f"X_{feature}"})

    def no_groups(doc: dict) -> None:
        doc["modalities"]["genomics"].pop("groups_path")

    frame = predict(model, variant(base, tmp_path / "c", genomics=edit, manifest=no_groups))
    rows = frame.loc[genomics_ids(base)]
    assert (rows["status"] == "warning").all()
    assert rows["input_issues"].str.contains(feature).all()
    assert np.isfinite(frame["risk"].to_numpy(float)).all()
    assert (rows["modalities_present"] == "clinical,genomics").all()


def test_patients_without_follow_up_can_be_predicted(model, base, run_dir, tmp_path):
    path = variant(base, tmp_path / "c", patients=lambda p: p[["patient_id"]])
    out = tmp_path / "preds.csv"
    res = cli("predict", run_dir, "--cohort", path, "--out", out)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out, dtype={"patient_id": str}).set_index("patient_id")
    assert len(frame) == 60
    assert_ok(frame, frame.index)
    # the same predictions as with the follow-up columns
    ref = predict(model, base / "cohort.yaml")
    np.testing.assert_allclose(frame["risk"], ref.loc[frame.index, "risk"], rtol=1e-6)


def test_validate_checks_patients_to_predict_without_follow_up(base, tmp_path):
    path = variant(base, tmp_path / "c", patients=lambda p: p[["patient_id"]])
    res = cli("validate", path)
    assert res.exit_code == 2 and "required column 'time' is missing" in res.output
    assert "--new-patients" in res.output
    res = cli("validate", path, "--new-patients")
    assert res.exit_code == 0 and "OK: 60 patients" in res.output, res.output


def test_empty_follow_up_cells_can_be_predicted(model, base, tmp_path):
    def edit(p: pd.DataFrame) -> None:
        p.loc[:9, ["time", "event", "pfs_time", "pfs_event"]] = np.nan

    path = variant(base, tmp_path / "c", patients=edit)
    frame = model.predict(multimodal.Cohort.load(path, require_outcomes=False))
    assert_ok(frame.set_index("patient_id"), frame["patient_id"])


def test_training_still_requires_follow_up(base, tmp_path):
    path = variant(base, tmp_path / "c", patients=lambda p: p[["patient_id"]])
    with pytest.raises(SchemaError, match="required column 'time' is missing"):
        multimodal.Cohort.load(path)

    def empty(p: pd.DataFrame) -> None:
        p.loc[:2, ["time", "event"]] = np.nan

    with pytest.raises(DataError, match="column 'time': 3 row"):
        multimodal.Cohort.load(variant(base, tmp_path / "d", patients=empty))


def test_training_refuses_impossible_ages_and_warns_of_outliers(model, base, tmp_path):
    # what predict refuses per patient, validate and train refuse for a training cohort
    a, b = first_ids(base, 2)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = 25000  # days in one row
        c.loc[c["patient_id"] == b, "age"] = -5

    path = variant(base, tmp_path / "c", clinical=edit)
    res = cli("validate", path)
    assert res.exit_code == 2, res.output
    assert "clinical.csv column 'age': 2 patient(s) are not an age in years (0 to 120" in res.output
    assert f"patient {a}: 25000" in res.output and f"patient {b}: -5" in res.output
    assert "365.25" in res.output
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(CONFIG))
    res = cli("train", "--config", tmp_path / "cfg.yaml", "--cohort", path, "--out", tmp_path / "r")
    assert res.exit_code == 2 and "not an age in years" in res.output, res.output
    assert not (tmp_path / "r" / "metrics.json").exists()
    # the same file as patients to predict: loads, and predict refuses those two patients alone
    assert cli("validate", path, "--new-patients").exit_code == 0
    frame = predict(model, path)
    assert frame.loc[[a, b], "status"].eq("refused").all()
    assert_ok(frame, frame.index.drop([a, b]))

    def days(c: pd.DataFrame) -> None:  # the whole column in days: a warning, not an error
        c["age"] = c["age"] * 365.25

    res = cli("validate", variant(base, tmp_path / "e", clinical=days))
    assert res.exit_code == 0 and "the median age is" in res.output and "days" in res.output

    def typo(c: pd.DataFrame) -> None:  # another numeric covariate with a unit slip warns
        c["marker"] = np.linspace(1.0, 2.0, len(c))
        c.loc[c["patient_id"] == a, "marker"] = 1500.0

    def declare(doc: dict) -> None:
        doc["modalities"]["clinical"].setdefault("numeric", ["age"]).append("marker")

    res = cli("validate", variant(base, tmp_path / "d", clinical=typo, manifest=declare))
    assert res.exit_code == 0, res.output
    assert "column 'marker': 1 patient(s) lie more than 20 interquartile ranges" in res.output
    assert f"patient {a}: 1500" in res.output


# ------------------------------------------------------------------------------ the CLI
def test_cli_reports_refused_patients_and_exits_0(run_dir, base, tmp_path):
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = 1e9

    out = tmp_path / "preds.csv"
    res = cli(
        "predict", run_dir, "--cohort", variant(base, tmp_path / "c", clinical=edit), "--out", out
    )
    assert res.exit_code == 0, res.output
    assert "59 ok, 0 warning, 1 refused" in res.output
    assert f"patient {a}" in res.output and "'age'" in res.output
    frame = pd.read_csv(out, dtype={"patient_id": str})
    assert {"status", "input_issues", "modalities_present", "risk"} <= set(frame.columns)


def test_cli_strict_fails_on_a_warning_without_writing(run_dir, base, tmp_path):
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "stage"] = "V"

    out = tmp_path / "preds.csv"
    path = variant(base, tmp_path / "c", clinical=edit)
    res = cli("predict", run_dir, "--cohort", path, "--out", out, "--strict")
    assert res.exit_code == 2, res.output
    assert not out.exists()
    assert f"patient {a}" in res.output and "'stage'" in res.output
    ok = cli("predict", run_dir, "--cohort", base / "cohort.yaml", "--out", out, "--strict")
    assert ok.exit_code == 0, ok.output
    assert out.is_file() and "60 ok, 0 warning, 0 refused" in ok.output


def test_strict_predict_raises(model, base, tmp_path):
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = 1e9

    cohort = new_patients(variant(base, tmp_path / "c", clinical=edit))
    with pytest.raises(DataError, match=f"patient {a}"):
        model.predict(cohort, strict=True)


# ------------------------------------------------------------------------------ the report
def test_input_report_api(model, base, tmp_path):
    from multimodal.models.input_checks import check_inputs

    a, b = first_ids(base, 2)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = -1e6
        c.loc[c["patient_id"] == b, "stage"] = "V"

    report = check_inputs(model, new_patients(variant(base, tmp_path / "c", clinical=edit)))
    issues = report.issues
    assert list(issues.columns) == ["patient_id", "modality", "column", "severity", "message"]
    assert set(issues["severity"]) <= {"warning", "error"}
    assert report.errors()["patient_id"].tolist() == [a]
    assert report.warnings()["patient_id"].tolist() == [b]
    assert report.for_patient(b)["column"].tolist() == ["stage"]
    assert report.for_patient("nobody").empty


def test_clinical_only_model_refuses_a_cohort_without_clinical(base, tmp_path):
    cfg = {
        **CONFIG,
        "data": {**CONFIG["data"], "modalities": ["clinical"], "fold_indices": [0]},
        "encoders": {"clinical": CONFIG["encoders"]["clinical"]},
        "members": {},
        "train": {**CONFIG["train"], "epochs": 1},
    }
    multimodal.train(cfg, cohort=multimodal.Cohort.load(base / "cohort.yaml"), out=tmp_path / "r")
    clinical_only = multimodal.load_run(tmp_path / "r")
    path = variant(base, tmp_path / "c", manifest=lambda d: d["modalities"].pop("clinical"))
    frame = predict(clinical_only, path)
    assert (frame["status"] == "refused").all() and frame["risk"].isna().all()
    assert frame["input_issues"].str.contains("no other modality").all()


def test_runs_saved_without_training_ranges_still_check(run_dir, base, tmp_path):
    """Run folders written before min/max were recorded: plausibility falls back to the SD rule."""
    old = tmp_path / "old"
    shutil.copytree(run_dir, old)
    for prep_file in old.glob("model/fold_*/preprocess.json"):
        prep = json.loads(prep_file.read_text())
        for block in prep.values():
            block["state"].pop("min", None)
            block["state"].pop("max", None)
        prep_file.write_text(json.dumps(prep))
    legacy = multimodal.load_run(old)
    assert_ok(
        predict(legacy, base / "cohort.yaml"), pd.read_csv(base / "clinical.csv")["patient_id"]
    )
    (a,) = first_ids(base, 1)

    def edit(c: pd.DataFrame) -> None:
        c.loc[c["patient_id"] == a, "age"] = 1e9

    frame = predict(legacy, variant(base, tmp_path / "c", clinical=edit))
    assert frame.loc[a, "status"] == "refused"
    assert_ok(frame, frame.index.drop(a))


def test_clinical_preprocessor_records_the_training_range_and_reads_old_states():
    from multimodal.encoders.clinical import ClinicalPreprocessor

    rows = pd.DataFrame({"age": [40.0, np.nan, 80.0, np.inf], "stage": ["I", "II", None, "I"]})
    prep = ClinicalPreprocessor(numeric=["age"], categorical=["stage"]).fit(rows)
    assert (prep.min_, prep.max_) == ([40.0], [80.0])  # finite values only
    again = ClinicalPreprocessor.from_state(json.loads(json.dumps(prep.state_dict())))
    assert (again.min_, again.max_) == ([40.0], [80.0])
    old = {k: v for k, v in prep.state_dict().items() if k not in ("min", "max")}
    legacy = ClinicalPreprocessor.from_state(old)
    assert legacy.min_ is None and legacy.max_ is None
    unseen = legacy.unseen_levels(pd.DataFrame({"stage": ["I", "V"]}, index=["a", "b"]))
    assert unseen.to_dict("records") == [{"patient_id": "b", "column": "stage", "level": "V"}]
