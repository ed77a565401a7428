"""Run folders cannot run code, resume never mixes data, partial or copied runs are refused.

Issue #20, findings 1, 3, 4 and 5.
"""

from __future__ import annotations

import pickle
import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import multimodal
from multimodal.cli import app
from multimodal.exceptions import ConfigError, RunFolderError
from multimodal.runfolder import RunFolder

CONFIG = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics"], "genomics_max_features": 20},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
    },
    "fusion": {"name": "concat", "dim": 4},
    "train": {"epochs": 3, "batch_size": 32, "patience": 5, "progress": False},
    "eval": {"n_times": 3, "bootstrap": 0},
}


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("integrity")
    generate_cohort(root / "a", n_patients=50, seed=1, image_size=8)
    generate_cohort(root / "b", n_patients=50, seed=2, image_size=8)
    return root


def _write_config(path, cfg=CONFIG) -> None:
    path.write_text(yaml.safe_dump(cfg))


class _Exploit:
    """Unpickling this runs code: it creates a marker file."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_planted_pickle_checkpoint_is_refused_not_run(cohorts, tmp_path, caplog):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    cfg = {**CONFIG, "data": {**CONFIG["data"], "fold_indices": [0]}}
    run = tmp_path / "run"
    multimodal.train(cfg, cohort=cohort, out=run)
    shutil.rmtree(run / "model")  # fold 0 unfinished: training resumes from its checkpoint
    marker = tmp_path / "pwned"
    ckpt = RunFolder(run).checkpoint_path(0)
    ckpt.unlink()
    with open(ckpt.with_suffix(".pt"), "wb") as fh:  # the legacy name a release before used
        pickle.dump({"model": _Exploit(str(marker))}, fh)
    multimodal.train(cfg, cohort=cohort, out=run)
    assert not marker.exists()  # the pickle never ran
    assert "was refused" in caplog.text


def test_checkpoint_files_hold_no_pickle(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    run = tmp_path / "run"
    multimodal.train(
        {**CONFIG, "data": {**CONFIG["data"], "fold_indices": [0]}}, cohort=cohort, out=run
    )
    files = list((run / "checkpoints").iterdir())
    assert files and all(f.suffix == ".safetensors" for f in files)
    from safetensors import safe_open

    with safe_open(str(files[0]), framework="pt") as f:  # loads without unpickling anything
        assert "training_state" in f.metadata()


def test_changed_cohort_is_refused_before_anything_is_written(cohorts, tmp_path):
    config = tmp_path / "c.yaml"
    _write_config(config)
    run = tmp_path / "run"
    runner = CliRunner()
    first = runner.invoke(
        app,
        [
            "train",
            "-c",
            str(config),
            "--cohort",
            str(cohorts / "a" / "cohort.yaml"),
            "--out",
            str(run),
        ],
    )
    assert first.exit_code == 0, first.output
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    second = runner.invoke(
        app,
        [
            "train",
            "-c",
            str(config),
            "--cohort",
            str(cohorts / "b" / "cohort.yaml"),
            "--out",
            str(run),
        ],
    )
    assert second.exit_code == 2
    assert "cannot be continued" in second.output and "--force" in second.output
    assert "cohort's data differ" in second.output
    after = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    assert after == before  # config.yaml and every fold untouched
    forced = runner.invoke(
        app,
        [
            "train",
            "-c",
            str(config),
            "--cohort",
            str(cohorts / "b" / "cohort.yaml"),
            "--out",
            str(run),
            "--force",
        ],
    )
    assert forced.exit_code == 0, forced.output
    ids = set(pd.read_csv(run / "predictions.csv", dtype={"patient_id": str}).patient_id)
    b_ids = set(multimodal.Cohort.load(cohorts / "b" / "cohort.yaml").patients.index)
    assert ids == b_ids


def test_refused_architecture_change_leaves_the_run_usable(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    run = tmp_path / "run"
    multimodal.train(CONFIG, cohort=cohort, out=run)
    bigger = {**CONFIG, "fusion": {"name": "concat", "dim": 8}}
    with pytest.raises(ConfigError, match="config differs"):
        multimodal.train(bigger, cohort=cohort, out=run)
    assert multimodal.load_run(run).predict(cohort)["risk"].notna().all()  # still loads


def test_partial_run_is_refused_unless_allowed(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    run = tmp_path / "run"
    multimodal.train(CONFIG, cohort=cohort, out=run)
    shutil.rmtree(RunFolder(run).fold_dir(1))  # as if killed during fold 1
    with pytest.raises(RunFolderError, match=r"fold\(s\) \[1\].*--allow-partial"):
        multimodal.load_run(run)
    assert len(multimodal.load_run(run, allow_partial=True).folds) == 1
    out = tmp_path / "p.csv"
    result = CliRunner().invoke(
        app,
        ["predict", str(run), "--cohort", str(cohorts / "a" / "cohort.yaml"), "--out", str(out)],
    )
    assert result.exit_code == 2 and "did not finish" in result.output
    result = CliRunner().invoke(
        app,
        [
            "predict",
            str(run),
            "--cohort",
            str(cohorts / "a" / "cohort.yaml"),
            "--out",
            str(out),
            "--allow-partial",
        ],
    )
    assert result.exit_code == 0, result.output


def test_report_of_an_interrupted_run_says_how_to_resume_it_as_evaluate_does(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    run = tmp_path / "run"
    multimodal.train(CONFIG, cohort=cohort, out=run)
    # as if killed during fold 1: the run-level files are written after the last fold
    shutil.rmtree(RunFolder(run).fold_dir(1))
    (run / "predictions.csv").unlink()
    (run / "metrics.json").unlink()
    said = {}
    for command in ("evaluate", "report"):
        result = CliRunner().invoke(app, [command, str(run)])
        assert result.exit_code == 2, result.output
        said[command] = result.output
    assert "training did not finish" in said["report"] and "to resume it" in said["report"]
    assert said["report"] == said["evaluate"]


def test_weights_copied_from_another_run_are_refused(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    one, two = tmp_path / "one", tmp_path / "two"
    multimodal.train(CONFIG, cohort=cohort, out=one)
    multimodal.train({**CONFIG, "train": {**CONFIG["train"], "seed": 1}}, cohort=cohort, out=two)
    # the whole fold folder from another run: another run id
    shutil.rmtree(RunFolder(two).fold_dir(0))
    shutil.copytree(RunFolder(one).fold_dir(0), RunFolder(two).fold_dir(0))
    with pytest.raises(RunFolderError, match="copied from another run"):
        multimodal.load_run(two)
    # only the weights file, same shapes: its hash differs from the one the fold recorded
    three = tmp_path / "three"
    shutil.copytree(one, three)
    shutil.copy(RunFolder(two).fold_dir(1) / "weights.safetensors", RunFolder(three).fold_dir(1))
    with pytest.raises(RunFolderError, match="not the file this fold wrote"):
        multimodal.load_run(three)


def test_members_deep_false_is_the_linear_model_alone(cohorts, tmp_path):
    cohort = multimodal.Cohort.load(cohorts / "a" / "cohort.yaml")
    cfg = {**CONFIG, "members": {"linear": ["genomics"], "deep": False, "penalties": [1, 100]}}
    result = multimodal.train(cfg, cohort=cohort, out=tmp_path / "run")
    assert all(f["best_epoch"] == 0 for f in result.metrics["folds"])
    assert len(result.history) == 0  # no training epoch ran
    model = multimodal.load_run(result.run_dir).folds[0].model
    assert float(model.head.linear.weight.detach().abs().sum()) == 0.0  # deep residual is zero
    assert result.metrics["c_index"] > 0.5


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "is not valid JSON"),
        ("[1, 2]", "not an object"),
        ("{}", "no fitted preprocessing for modalities"),
        ('{"clinical": 5, "genomics": 5}', "the state of modality 'clinical' cannot be read"),
    ],
)
def test_malformed_preprocess_json_is_a_one_line_error(cohorts, tmp_path_factory, content, message):
    run = tmp_path_factory.mktemp("mal") / "run"
    cohort = cohorts / "a" / "cohort.yaml"
    cfg = {**CONFIG, "data": {**CONFIG["data"], "fold_indices": [0]}}
    multimodal.train(cfg, cohort=multimodal.Cohort.load(cohort), out=run)
    (RunFolder(run).fold_dir(0) / "preprocess.json").write_text(content)
    result = CliRunner().invoke(
        app, ["predict", str(run), "--cohort", str(cohort), "--out", str(run / "p.csv")]
    )
    assert result.exit_code == 2 and message in result.output, result.output
    assert "Traceback" not in result.output


def test_infinite_learning_rate_is_refused_before_training(cohorts, tmp_path):
    config = tmp_path / "c.yaml"
    _write_config(config)
    result = CliRunner().invoke(
        app,
        [
            "train",
            "-c",
            str(config),
            "--cohort",
            str(cohorts / "a" / "cohort.yaml"),
            "--out",
            str(tmp_path / "run"),
            "--set",
            "train.lr=.inf",
        ],
    )
    assert result.exit_code == 2 and "train.lr: Input should be a finite number" in result.output
    assert not (tmp_path / "run").exists()
