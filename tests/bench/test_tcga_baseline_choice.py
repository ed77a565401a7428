"""bench/tcga_baseline_choice.py: per published fold, the baseline picked by inner CV on that
fold's training patients, scored on its validation patients beside ours."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from multimodal.data.synth_tcga import write_tcga_cohort
from multimodal.evaluation.benchmark import run_benchmark
from tests._bench import bench_module

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def choice():
    with bench_module("tcga_baseline_choice") as module:
        yield module


def test_choose_breaks_ties_towards_the_simplest_and_never_picks_a_missing_score(choice):
    assert choice.choose({"clinical_cox": 0.6, "coxnet": 0.7, "rsf": 0.65}) == "coxnet"
    assert choice.choose({"clinical_cox": 0.7, "coxnet": 0.7, "rsf": 0.7}) == "clinical_cox"
    assert choice.choose({"clinical_cox": math.nan, "coxnet": 0.5, "rsf": 0.4}) == "coxnet"


def test_each_fold_is_scored_with_the_baseline_its_training_patients_chose(
    choice, tmp_path, monkeypatch
):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tmp_path / "data"
    source = write_tcga_cohort(data / "tcga" / "tiny", n_patients=90, seed=4, n_genomic_features=30)
    acc = tmp_path / "acc" / "tiny"
    config = ROOT / "configs" / "tcga.yaml"
    run_benchmark(
        source, acc / "baselines", config=config, variants={},
        baselines=("clinical_cox", "coxnet", "rsf"), n_boot=0, fold_indices=[0, 1],
    )  # fmt: skip
    base = pd.read_csv(acc / "baselines" / "predictions.csv")
    (acc / "ours").mkdir(parents=True)
    # "ours" is the clinical Cox baseline itself: where it is chosen, ours - chosen is 0
    base[base.model == "clinical_cox"].assign(model="ours").to_csv(
        acc / "ours" / "predictions.csv", index=False
    )
    out = tmp_path / "out"
    args = ["--accuracy", str(tmp_path / "acc"), "--out", str(out), "--cancers", "tiny"]
    args += ["--data", str(data), "--folds", "0", "1", "--boot", "20"]
    assert choice.main([*args, "--inner-folds", "2"]) == 0
    row = pd.read_csv(out / "summary.csv").iloc[0]
    expected = []
    for k in (0, 1):
        inner = pd.read_csv(out / "tiny" / f"fold_{k}" / "baselines" / "predictions.csv")
        fold = pd.read_csv(source / "splits" / "porpoise_mcat_5fold" / f"fold_{k}.csv")
        train = set(fold.loc[fold.split == "train", "patient_id"])
        assert set(inner.patient_id) == train  # the choice never saw fold k's validation patients
        scores = {m: choice.fold_c(g).mean() for m, g in inner.groupby("model")}
        picked = choice.choose(scores)
        expected.append(choice.fold_c(base[(base.model == picked) & (base.fold == k)]).iloc[0])
    assert row.chosen == pytest.approx(sum(expected) / 2)
    assert row.chosen_names.count("/") == 1
    # a cached inner run of other settings is refused, not mixed into the table
    with pytest.raises(SystemExit, match=r"not the 3-fold inner CV"):
        choice.main([*args, "--inner-folds", "3"])
