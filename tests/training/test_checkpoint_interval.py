"""train.checkpoint_every: the training state is saved every N epochs (and at a fit's last epoch),
and a fold interrupted between two saves resumes to exactly the uninterrupted result."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from safetensors import safe_open

import multimodal

CFG = {
    "data": {"folds": 2, "image_size": 8, "genomics_max_features": 50, "fold_indices": [0]},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 8},
        "report": {"name": "text_mlp", "out_dim": 8},
        "ct": {"name": "small_cnn", "out_dim": 8},
    },
    "fusion": {"name": "attention_gated", "dim": 8},
    "train": {
        "epochs": 7,
        "batch_size": 16,
        "patience": 20,  # no early stop before the interruption at epoch 5
        "checkpoint_every": 3,
        "progress": False,
    },
    "eval": {"n_times": 4, "bootstrap": 0},
}


class Stop(Exception):
    pass


def _saved_epoch(path) -> int:
    with safe_open(str(path), framework="pt") as f:
        return int(json.loads(f.metadata()["training_state"])["epoch"])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, n_patients=80, seed=3, missing_rate=0.2, image_size=12)
    return multimodal.Cohort.load(out / "cohort.yaml")


def test_interrupted_between_checkpoints_resumes_exactly(cohort, tmp_path):
    reference = multimodal.train(CFG, cohort=cohort, out=tmp_path / "ref")
    ckpt = tmp_path / "ref" / "checkpoints" / "fold_0.safetensors"
    assert _saved_epoch(ckpt) == 7  # the last epoch is saved although 7 is not a multiple of 3

    seen = []

    def stop_at_five(info):
        seen.append(info.epoch)
        if info.epoch == 5:
            raise Stop

    out = tmp_path / "run"
    with pytest.raises(Stop):
        multimodal.train(CFG, cohort=cohort, out=out, callbacks=[stop_at_five])
    assert _saved_epoch(out / "checkpoints" / "fold_0.safetensors") == 3

    resumed = multimodal.train(CFG, cohort=cohort, out=out, callbacks=[seen.append])
    assert [getattr(e, "epoch", e) for e in seen] == [1, 2, 3, 4, 5, 4, 5, 6, 7]
    a = pd.read_csv(reference.run_dir / "predictions.csv")
    b = pd.read_csv(out / "predictions.csv")
    assert np.array_equal(a.risk.to_numpy(), b.risk.to_numpy())
    surv = a.filter(like="surv_").columns
    assert np.array_equal(a[surv].to_numpy(), b[surv].to_numpy())
    ha, hb = reference.history, resumed.history
    assert ha["train_loss"].tolist() == hb["train_loss"].tolist()
    assert resumed.metrics["folds"][0]["c_index"] == reference.metrics["folds"][0]["c_index"]


def test_checkpoint_every_must_be_positive_or_auto():
    from multimodal.config import load_config
    from multimodal.exceptions import ConfigError

    assert load_config({}).train.checkpoint_every == "auto"
    assert load_config({"train": {"checkpoint_every": 2}}).train.checkpoint_every == 2
    for bad in (0, -1, "often", True):
        with pytest.raises(ConfigError, match=r"train\.checkpoint_every"):
            load_config({"train": {"checkpoint_every": bad}})


def _auto(seconds: float) -> dict:
    return {**CFG, "train": {**CFG["train"], "checkpoint_every": "auto"}}


@pytest.mark.parametrize("seconds, saved_at_five", [(0.0, 5), (3600.0, None)])
def test_auto_interval_saves_by_elapsed_time_and_resumes_exactly(
    cohort, tmp_path, monkeypatch, seconds, saved_at_five
):
    """``auto``: a save once AUTO_CHECKPOINT_SECONDS have passed (0 s: every epoch; an hour:
    only the last epoch); a kill before any save restarts the fold, still to the same result."""
    from multimodal.training import loop

    monkeypatch.setattr(loop, "AUTO_CHECKPOINT_SECONDS", seconds)
    cfg = _auto(seconds)
    reference = multimodal.train(cfg, cohort=cohort, out=tmp_path / "ref")
    assert _saved_epoch(tmp_path / "ref" / "checkpoints" / "fold_0.safetensors") == 7

    def stop_at_five(info):
        assert info.seconds > 0
        if info.epoch == 5:
            raise Stop

    out = tmp_path / "run"
    with pytest.raises(Stop):
        multimodal.train(cfg, cohort=cohort, out=out, callbacks=[stop_at_five])
    ckpt = out / "checkpoints" / "fold_0.safetensors"
    if saved_at_five is None:
        assert not ckpt.exists()
    else:
        assert _saved_epoch(ckpt) == saved_at_five
    multimodal.train(cfg, cohort=cohort, out=out)
    a = pd.read_csv(reference.run_dir / "predictions.csv")
    b = pd.read_csv(out / "predictions.csv")
    assert np.array_equal(a.risk.to_numpy(), b.risk.to_numpy())
