"""The command line as a user runs it: synth -> validate -> train -> evaluate -> predict."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from multimodal.cli import app

runner = CliRunner()

#: overrides that make any config train in seconds on a tiny cohort
FAST = [
    f"--set={o}"
    for o in (
        "train.epochs=2",
        "data.folds=2",
        "data.image_size=8",
        "train.progress=false",
        "eval.bootstrap=0",
    )
]


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "cohort"
    res = invoke("synth", "--out", out, "--n-patients", 60, "--seed", 1, "--image-size", 8)
    assert res.exit_code == 0, res.output
    return out


def test_synth_then_validate(cohort_dir):
    assert (cohort_dir / "cohort.yaml").is_file()
    assert (cohort_dir / "ground_truth.csv").is_file()
    res = invoke("validate", cohort_dir / "cohort.yaml")
    assert res.exit_code == 0, res.output
    assert "OK: 60 patients" in res.output
    for m in ("clinical", "genomics", "report", "ct"):
        assert m in res.output


def test_validate_reports_errors_with_exit_2(cohort_dir, tmp_path):
    bad = tmp_path / "cohort.yaml"
    text = (cohort_dir / "cohort.yaml").read_text().replace("patients.csv", "nope.csv")
    bad.write_text(text)
    res = invoke("validate", bad)
    assert res.exit_code == 2
    assert "nope.csv" in res.output


def test_train_evaluate_predict(cohort_dir, tmp_path):
    run = tmp_path / "run"
    res = invoke(
        "train",
        "--config",
        "configs/demo.yaml",
        "--cohort",
        cohort_dir / "cohort.yaml",
        "--out",
        run,
        *FAST,
        "--set",
        "data.modalities=[clinical,genomics,report]",
    )
    assert res.exit_code == 0, res.output
    assert "validation C-index" in res.output
    assert json.loads((run / "metrics.json").read_text())["c_index"] > 0
    res = invoke("evaluate", run, "--bootstrap", 20)
    assert res.exit_code == 0, res.output
    assert "fold 0" in res.output and "[" in res.output  # CI printed
    out_csv = tmp_path / "pred.csv"
    res = invoke("predict", run, "--cohort", cohort_dir / "cohort.yaml", "--out", out_csv)
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out_csv)
    assert len(frame) == 60 and {"risk", "median_survival"} <= set(frame.columns)


def test_bad_override_is_one_line_no_traceback(cohort_dir, tmp_path):
    res = invoke(
        "train",
        "--config",
        "configs/demo.yaml",
        "--cohort",
        cohort_dir / "cohort.yaml",
        "--out",
        tmp_path,
        "--set",
        "train.epoch=2",
    )
    assert res.exit_code == 2
    assert "Did you mean 'epochs'" in res.output
    assert "Traceback" not in res.output
    # the typo is in the --set override, not in the config file: the message says so
    assert "invalid --set override 'train.epoch=2' (applied to config configs/demo.yaml)" in (
        res.output
    )
    assert "invalid config configs/demo.yaml" not in res.output


def test_evaluate_missing_run_folder(tmp_path):
    res = invoke("evaluate", tmp_path / "nothing")
    assert res.exit_code == 2
    assert "missing" in res.output


def test_demo_end_to_end_small(tmp_path):
    res = invoke(
        "demo",
        "--out",
        tmp_path / "demo",
        "--n-patients",
        60,
        *FAST,
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert {r["model"] for r in summary["rows"]} == {
        "fusion",
        "only_clinical",
        "only_genomics",
        "only_report",
        "only_ct",
    }
    assert 0.5 < summary["ground_truth_c_index"] <= 1
    assert summary["reachable_c_index"] <= summary["ground_truth_c_index"] + 0.02
    assert (tmp_path / "demo" / "fusion" / "metrics.json").is_file()
