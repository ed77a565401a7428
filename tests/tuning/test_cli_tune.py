"""`multimodal tune` as a user runs it: a tiny real study on SQLite, then `train` on best.yaml."""

from __future__ import annotations

import json
import re

import yaml
from typer.testing import CliRunner

from multimodal.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_tune_then_train_the_best_config(tiny_tune_file, tiny_cohort_path, tmp_path):
    out = tmp_path / "tune"
    res = invoke(
        "tune", "--config", tiny_tune_file, "--cohort", tiny_cohort_path, "--out", out,
        "--n-trials", 3,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln.startswith("trial ")]
    assert len(lines) == 3 and lines[-1].endswith("[3/3]")
    assert re.search(r"best 0\.\d{4} \(trial \d\)", lines[-1])
    for name in ("study.db", "best.yaml", "summary.json", "trials.csv", "history.png"):
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["trials"][s] for s in ("complete", "pruned", "failed")) == 3
    assert not any((out / "trials").glob("*/checkpoints"))
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["data"]["cohort"] == str(tiny_cohort_path)  # ready to train as it is
    assert best["data"]["folds"] == 2 and best["train"]["epochs"] == 3

    res = invoke("train", "--config", out / "best.yaml", "--out", tmp_path / "best-run")
    assert res.exit_code == 0, res.output
    assert "validation C-index" in res.output

    # the same command again: the study is complete, nothing more runs
    res = invoke(
        "tune", "--config", tiny_tune_file, "--cohort", tiny_cohort_path, "--out", out,
        "--n-trials", 3,
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "3 of 3 trials done" in res.output
    assert not [ln for ln in res.output.splitlines() if ln.startswith("trial ")]


def test_tune_errors_are_one_clear_line(tiny_cohort_path, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("search:\n  train.lrr: {type: float, low: 0.001, high: 0.1}\n")
    res = invoke("tune", "--config", bad, "--cohort", tiny_cohort_path, "--out", tmp_path / "o")
    assert res.exit_code == 2
    assert "search.train.lrr" in res.output and "Did you mean 'lr'" in res.output
    assert "Traceback" not in res.output
