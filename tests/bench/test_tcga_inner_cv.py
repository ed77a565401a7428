"""bench/tcga_inner_cv.py on a tiny synthetic cohort in the TCGA layout: the sub-cohort holds
only the outer fold's training patients, and each candidate is trained and scored on its folds."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from multimodal.data.synth_tcga import write_tcga_cohort
from tests._bench import bench_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def inner():
    with bench_module("tcga_inner_cv") as module:
        yield module


def test_parse_candidate(inner):
    assert inner.parse_candidate("a=members.min_events=3; train.epochs=2") == (
        "a",
        ["members.min_events=3", "train.epochs=2"],
    )
    with pytest.raises(SystemExit, match="NAME=KEY=VALUE"):
        inner.parse_candidate("no_overrides")


def test_candidates_train_on_the_outer_folds_training_patients_only(inner, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = write_tcga_cohort(
        tmp_path / "data" / "tcga" / "tiny", n_patients=90, seed=3, n_genomic_features=40
    )
    config = yaml.safe_load((ROOT / "configs" / "tcga.yaml").read_text())
    config["train"]["epochs"] = 2
    config["data"]["genomics_max_features"] = 30
    config["data"]["text_max_terms"] = 50
    config["members"]["trees"] = ["boosting"]
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    docs = tmp_path / "bench.md"
    docs.write_text("# Benchmarks\n")
    out = tmp_path / "out"
    code = inner.main(
        [
            "--cancers", "tiny", "--data", str(tmp_path / "data"), "--out", str(out),
            "--config", str(tmp_path / "tiny.yaml"), "--inner-folds", "2",
            "--candidate", "no_text=members.min_events=1000", "--write-docs", str(docs),
            "--baselines",
        ]
    )  # fmt: skip
    assert code == 0
    fold = pd.read_csv(source / "splits" / "porpoise_mcat_5fold" / "fold_0.csv")
    train = set(fold.loc[fold.split == "train", "patient_id"])
    sub = pd.read_csv(out / "tiny" / "cohort" / "clinical.csv")
    assert set(sub.patient_id) == train  # the outer validation patients are never written
    for name in ("default", "no_text"):
        pred = pd.read_csv(out / "tiny" / name / "predictions.csv")
        assert set(pred.patient_id) <= train and sorted(pred.fold.unique()) == [0, 1]
    a = pd.read_csv(out / "tiny" / "default" / "predictions.csv").risk
    b = pd.read_csv(out / "tiny" / "no_text" / "predictions.csv").risk
    assert not a.equals(b)  # every member left out: another model
    text = docs.read_text()
    assert "candidate settings compared on training patients only" in text
    assert "no_text - default" in text and "TINY (n=" in text and "above / below" in text
    # the baselines on the same inner folds, and the default's distance to the best of them
    base = pd.read_csv(out / "tiny" / "baselines" / "predictions.csv")
    assert set(base.model) == {"clinical_cox", "coxnet", "rsf"}
    assert set(base.patient_id) <= train and sorted(base.fold.unique()) == [0, 1]
    assert "default - best baseline" in text and "--baselines" in text
    # the same folder under another config file is refused (the table would mix two configs)
    config["train"]["epochs"] = 3
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(config))
    with pytest.raises(SystemExit, match="another config file or overrides"):
        inner.main(
            ["--cancers", "tiny", "--data", str(tmp_path / "data"), "--out", str(out),
             "--config", str(tmp_path / "tiny.yaml"), "--inner-folds", "2"]
        )  # fmt: skip
