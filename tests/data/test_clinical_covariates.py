"""``data.clinical_numeric`` / ``data.clinical_categorical``: the clinical covariates of a TCGA
folder, the way a user reaches them (a config key, the CLI's train / predict / report, the
benchmark's baselines), and TCGA's bracketed markers read as missing values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from multimodal.cli import app
from multimodal.config import cohort_options_of, load_config
from multimodal.data import Cohort
from multimodal.data.synth_tcga import write_tcga_cohort
from multimodal.evaluation.benchmark import run_benchmark
from multimodal.exceptions import ConfigError, SchemaError

GRADE = ["sex", "stage", "histological_grade"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A TCGA-layout synthetic folder with a ``histological_grade`` column: G1-G3 that act on
    the hazard, TCGA's markers for some patients, and a column of markers only."""
    path = write_tcga_cohort(tmp_path_factory.mktemp("grade") / "syn", n_patients=200, seed=3)
    table = pd.read_csv(path / "clinical.csv")
    rng = np.random.default_rng(0)
    grade = np.where(table["event"] == 1, rng.choice(["G2", "G3"], len(table)), "G1")
    grade = np.where(
        rng.random(len(table)) < 0.5, rng.choice(["G1", "G2", "G3"], len(table)), grade
    )
    marker = rng.random(len(table)) < 0.1
    table["histological_grade"] = np.where(
        marker, rng.choice(["[Not Available]", "[Discrepancy]"], len(table)), grade
    )
    table["grade_unrecorded"] = "[Not Available]"
    table.to_csv(path / "clinical.csv", index=False)
    return path


def _config(tmp_path: Path, **data) -> Path:
    cfg = {
        "data": {
            "split": "porpoise_mcat_5fold",
            "fold_indices": [0],
            "modalities": ["clinical", "genomics"],
            "genomics_max_features": 20,
            **data,
        },
        "encoders": {"clinical": {"name": "clinical_mlp", "out_dim": 4}},
        "members": {"linear": ["genomics"], "combine": "stacked", "deep": False},
        "train": {"progress": False},
        "eval": {"n_times": 4, "bootstrap": 0},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_markers_are_missing_and_the_defaults_are_unchanged(folder):
    raw = pd.read_csv(folder / "clinical.csv").set_index("patient_id")
    cohort = Cohort.load(folder, clinical_categorical=[*GRADE, "grade_unrecorded"])
    source = cohort.sources["clinical"]
    # a column of markers only says nothing: left out as an empty one is
    assert source.categorical == GRADE and source.numeric == ["age"]
    grade = source.table["histological_grade"]
    marked = raw.loc[grade.index, "histological_grade"].str.startswith("[")
    assert marked.sum() > 0 and grade[marked].isna().all()
    assert set(grade[~marked]) == {"G1", "G2", "G3"}
    # without the keys: age, sex and stage, exactly as before
    plain = Cohort.load(folder).sources["clinical"]
    assert plain.categorical == ["sex", "stage"] and list(plain.table.columns) == [
        "age",
        "sex",
        "stage",
    ]
    for col in ("age", "sex", "stage"):
        assert plain.table[col].equals(source.table[col])


def test_unknown_column_and_manifest_cohorts_are_refused(folder, tmp_path):
    with pytest.raises(SchemaError, match=r"'grade'.*histological_grade"):
        Cohort.load(folder, clinical_categorical=["sex", "grade"])
    manifest = tmp_path / "cohort.yaml"
    pd.DataFrame({"patient_id": ["a", "b"], "time": [1.0, 2.0], "event": [1, 0]}).to_csv(
        tmp_path / "patients.csv", index=False
    )
    manifest.write_text(yaml.safe_dump({"patients": {"path": "patients.csv"}, "modalities": {}}))
    with pytest.raises(ConfigError, match=r"manifest.*clinical entry"):
        Cohort.load(manifest, clinical_categorical=["sex"])
    # (a patients entry that is a bare file name was a raw ValueError of dict(); now the schema's)
    manifest.write_text(yaml.safe_dump({"patients": "patients.csv", "modalities": {}}))
    with pytest.raises(SchemaError, match=r"cohort\.yaml patients: 'patients\.csv' is not of type"):
        Cohort.load(manifest)


def test_config_keys_give_the_load_options():
    cfg = load_config({"data": {"clinical_categorical": GRADE}})
    assert cfg.data.cohort_options() == {"clinical_categorical": GRADE}
    assert load_config({}).data.cohort_options() == {}
    assert cohort_options_of(
        {"data": {"clinical_numeric": ["age"], "clinical_categorical": None}}
    ) == {"clinical_numeric": ["age"]}


@pytest.fixture(scope="module")
def run(folder, tmp_path_factory) -> Path:
    """One fold trained by the CLI with grade among the covariates."""
    tmp = tmp_path_factory.mktemp("graded")
    config = _config(tmp, clinical_categorical=GRADE)
    out = tmp / "run"
    res = CliRunner().invoke(
        app, ["train", "-c", str(config), "--cohort", str(folder), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return out


def test_train_predict_and_report_read_the_run_covariates(folder, run, tmp_path, monkeypatch):
    runner = CliRunner()
    prep = json.loads((run / "model" / "fold_0" / "preprocess.json").read_text())
    assert prep["clinical"]["state"]["categorical"] == GRADE
    # predict: the folder is read with the run's covariates; the validation patients get the
    # risks training wrote for them (each centred: the saved risks are centred on the fold's
    # training mean)
    out = tmp_path / "pred.csv"
    res = runner.invoke(app, ["predict", str(run), "--cohort", str(folder), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out).set_index("patient_id")
    assert (pred["status"] == "ok").all()
    trained = pd.read_csv(run / "predictions.csv")
    val = trained[trained.split == "val"].set_index("patient_id")
    again = pred.loc[val.index, "risk"]
    np.testing.assert_allclose(again - again.mean(), val["risk"] - val["risk"].mean(), atol=1e-5)
    # the Python API on the folder read without the run's covariates: every patient flagged,
    # the missing column named
    import multimodal

    flagged = multimodal.load_run(run).predict(Cohort.load(folder))
    assert (flagged["status"] != "ok").all()
    assert flagged["input_issues"].str.contains("histological_grade").all()
    # the report finds and reads the cohort as the run was trained on it
    from multimodal.reporting.facts import gather

    assert gather(run, folder).cohort.sources["clinical"].categorical == GRADE
    res = runner.invoke(app, ["report", str(run), "--cohort", str(folder)])
    assert res.exit_code == 0, res.output
    # the dashboard's cohort loader too (its pages call it with the run folder)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2]))
    from app.views.common import get_cohort

    assert get_cohort(str(folder), str(run)).sources["clinical"].categorical == GRADE
    assert get_cohort(str(folder)).sources["clinical"].categorical == ["sex", "stage"]


def test_benchmark_baselines_get_the_same_covariates(folder, tmp_path):
    """Equal information: the baselines read the cohort with the config's covariates too."""
    config = _config(tmp_path)
    kwargs = dict(config=config, variants={}, baselines=("clinical_cox",), n_boot=0)
    kwargs["fold_indices"] = [0]
    plain = run_benchmark(folder, tmp_path / "plain", **kwargs).predictions
    graded = run_benchmark(
        folder,
        tmp_path / "grade",
        overrides=[f"data.clinical_categorical=[{', '.join(GRADE)}]"],
        **kwargs,
    ).predictions
    assert plain.patient_id.tolist() == graded.patient_id.tolist()
    assert not np.allclose(plain.risk, graded.risk)


def test_a_run_reads_new_patients_in_either_form(folder, run, tmp_path):
    """A run trained with the keys on a TCGA folder predicts for a manifest cohort of new
    patients (it names its own covariates; the model's input checks flag what it lacks)."""
    clinical = pd.read_csv(folder / "clinical.csv").head(12)
    new = tmp_path / "new"
    new.mkdir()
    clinical[["patient_id", "age", "sex", "stage", "histological_grade"]].to_csv(
        new / "clinical.csv", index=False
    )
    clinical[["patient_id"]].to_csv(new / "patients.csv", index=False)
    genomics = pd.read_csv(folder / "genomics.csv.gz")
    genomics[genomics.patient_id.isin(clinical.patient_id)].to_csv(
        new / "genomics.csv", index=False
    )
    manifest = {
        "name": "new",
        "patients": {"path": "patients.csv"},
        "modalities": {
            "clinical": {
                "kind": "clinical",
                "path": "clinical.csv",
                "numeric": ["age"],
                "categorical": GRADE,
            },
            "genomics": {"kind": "genomics", "path": "genomics.csv"},
        },
    }
    (new / "cohort.yaml").write_text(yaml.safe_dump(manifest))
    out = tmp_path / "new.csv"
    res = CliRunner().invoke(app, ["predict", str(run), "--cohort", str(new), "--out", str(out)])
    assert res.exit_code == 0, res.output
    pred = pd.read_csv(out).set_index("patient_id")
    assert len(pred) == 12 and pred["risk"].notna().all()
    # the same risks as from the TCGA folder, where the manifest's grade is a recorded one (it
    # reads TCGA's markers as a level, which training never saw: "unknown", with a warning)
    import multimodal

    folder_risk = multimodal.load_run(run).predict(
        Cohort.load_for_run(folder, {"data": {"clinical_categorical": GRADE}})
    )
    folder_risk = folder_risk.set_index("patient_id")["risk"]
    recorded = clinical.set_index("patient_id")["histological_grade"].str.match(r"G\d")
    assert recorded.sum() >= 8
    ids = recorded.index[recorded]
    np.testing.assert_allclose(pred.loc[ids, "risk"], folder_risk.loc[ids], atol=1e-5)
    assert (pred.loc[ids, "status"] == "ok").all()


def test_train_records_how_a_cohort_object_was_read(folder, tmp_path):
    """The Python API: a cohort read with other covariates puts them in the run's config; a
    config naming covariates the object was not read with is refused."""
    import multimodal

    cfg = yaml.safe_load(_config(tmp_path).read_text())
    cohort = Cohort.load(folder, clinical_categorical=GRADE)
    assert cohort.clinical_options == {"clinical_categorical": GRADE}
    assert cohort.subset(cohort.patients.index[:50]).clinical_options == cohort.clinical_options
    res = multimodal.train(cfg, cohort=cohort, out=tmp_path / "api")
    recorded = yaml.safe_load((res.run_dir / "config.yaml").read_text())
    assert cohort_options_of(recorded) == {"clinical_categorical": GRADE}
    # naming the defaults explicitly is the same as naming nothing
    same = {**cfg, "data": {**cfg["data"], "clinical_categorical": ["sex", "stage"]}}
    multimodal.train(same, cohort=Cohort.load(folder), out=tmp_path / "explicit")
    # a generator is read once: the cohort records the columns it was read with
    gen = Cohort.load(folder, clinical_categorical=(c for c in GRADE))
    assert gen.clinical_options == {"clinical_categorical": GRADE}
    assert gen.sources["clinical"].categorical == GRADE
    with pytest.raises(ConfigError, match="not those the cohort"):
        multimodal.train(
            {**cfg, "data": {**cfg["data"], "clinical_categorical": GRADE}},
            cohort=Cohort.load(folder),
            out=tmp_path / "refused",
        )


def test_a_manifest_cohort_object_refuses_the_keys(tmp_path):
    """As Cohort.load does for a manifest path: its clinical entry names the covariates."""
    import multimodal
    from multimodal.data.synth import generate_cohort

    made = generate_cohort(tmp_path / "syn", n_patients=40, with_images=False, n_genes=20)
    cohort = multimodal.Cohort.load(made.manifest_path)
    assert cohort.clinical_options is None
    cfg = {"data": {"clinical_categorical": ["sex"]}, "train": {"progress": False}}
    with pytest.raises(ConfigError, match="is not one"):
        multimodal.train(cfg, cohort=cohort, out=tmp_path / "run")
