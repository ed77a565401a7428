"""End-to-end training on a tiny synthetic cohort: run folder contract, resume, reload, predict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import multimodal
from multimodal.exceptions import ConfigError, MissingModalityError

TINY = {
    "data": {"folds": 2, "image_size": 8, "genomics_max_features": 50},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 8},
        "genomics": {"name": "snn", "out_dim": 8},
        "report": {"name": "text_mlp", "out_dim": 8},
        "ct": {"name": "small_cnn", "out_dim": 8},
    },
    "fusion": {"name": "attention_gated", "dim": 8},
    "train": {"epochs": 3, "batch_size": 16, "patience": 5, "progress": False},
    "eval": {"n_times": 4, "bootstrap": 0},
}


@pytest.fixture(scope="module")
def tiny_cohort(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    out = tmp_path_factory.mktemp("tiny")
    generate_cohort(out, n_patients=80, seed=3, missing_rate=0.2, image_size=12)
    return multimodal.Cohort.load(out / "cohort.yaml")


@pytest.fixture(scope="module")
def tiny_run(tiny_cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return multimodal.train(TINY, cohort=tiny_cohort, out=out)


def test_run_folder_contract(tiny_run):
    run = tiny_run.run_dir
    for name in ("config.yaml", "metrics.json", "history.csv", "predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["c_index"] <= 1.0
    assert len(metrics["folds"]) == 2
    assert metrics["c_index_os"] == metrics["c_index"]
    preds = pd.read_csv(run / "predictions.csv")
    assert {"patient_id", "fold", "split", "time", "event", "risk"} <= set(preds.columns)
    surv = preds.filter(like="surv_").to_numpy()
    assert surv.shape[1] >= 2
    assert np.all((surv >= 0) & (surv <= 1)) and np.all(np.diff(surv, axis=1) <= 1e-6)
    val = preds[preds.split == "val"]
    assert val.patient_id.nunique() == len(val) == 80  # every patient validated exactly once
    for k in (0, 1):
        assert (run / "model" / f"fold_{k}" / "weights.safetensors").is_file()
    cfg = (run / "config.yaml").read_text()
    assert "package_version" in cfg and "data_fingerprint" in cfg and "seed" in cfg


def test_history_has_per_epoch_rows(tiny_run):
    hist = tiny_run.history
    assert {"fold", "epoch", "train_loss", "es_c_index"} <= set(hist.columns)
    assert hist.groupby("fold").epoch.max().tolist() == [3, 3]
    assert np.isfinite(hist.train_loss).all()


def test_load_run_predicts_with_missing_modalities(tiny_run, tiny_cohort):
    model = multimodal.load_run(tiny_run.run_dir)
    risk = model.predict_risk(tiny_cohort)
    assert len(risk) == 80 and np.isfinite(risk).all()
    surv = model.predict_survival(tiny_cohort, [5.0, 20.0])
    assert surv.shape == (80, 2) and (surv.to_numpy() <= 1).all()
    # a new cohort that lacks imaging and text entirely still gets predictions
    partial = tiny_cohort.subset(list(tiny_cohort.patients.index[:10]))
    partial.sources = {k: v for k, v in partial.sources.items() if k in ("clinical", "genomics")}
    frame = model.predict(partial)
    assert len(frame) == 10 and np.isfinite(frame.risk).all()
    assert "median_survival" in frame


def test_resume_after_interruption_matches_uninterrupted(tiny_cohort, tiny_run, tmp_path):
    # a save after every epoch, so that the kill after epoch 2 leaves one to resume from
    cfg = {
        **TINY,
        "data": {**TINY["data"], "fold_indices": [0]},
        "train": {**TINY["train"], "checkpoint_every": 1},
    }
    reference = tiny_run.metrics["folds"][0]

    class Stop(Exception):
        pass

    def kill_after_two(info):
        if info.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path, callbacks=[kill_after_two])
    assert (tmp_path / "checkpoints" / "fold_0.safetensors").is_file()
    resumed = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)
    assert resumed.metrics["folds"][0]["c_index"] == pytest.approx(reference["c_index"], abs=1e-9)
    a = pd.read_csv(tiny_run.run_dir / "predictions.csv").query("fold == 0").risk.to_numpy()
    b = pd.read_csv(tmp_path / "predictions.csv").risk.to_numpy()
    assert np.allclose(a, b, atol=1e-6)


def _result_files(run) -> dict[str, bytes]:
    """Every file a run's results consist of, but for the run's identity: config.yaml (it records
    when and as which run it was created), checkpoints/ (training state) and model.json's
    ``run_id`` are left out."""
    kept = ("predictions.csv", "history.csv", "metrics.json", "model")
    out = {}
    for p in sorted(run.rglob("*")):
        name = str(p.relative_to(run))
        if p.is_file() and name.startswith(kept):
            out[name] = p.read_bytes()
            if p.name == "model.json":
                meta = json.loads(out[name])
                assert len(meta.pop("run_id")) == 12
                out[name] = json.dumps(meta).encode()
    return out


def test_resume_after_a_finished_fold_writes_the_uninterrupted_files(
    tiny_cohort, tiny_run, tmp_path
):
    """Killed in fold 1 after fold 0 finished, then run again: every result file, the run-level
    predictions.csv and history.csv included, is byte for byte the uninterrupted run's (fold 0 is
    reused from its files, fold 1 resumes from its checkpoint)."""
    cfg = {**TINY, "train": {**TINY["train"], "checkpoint_every": 1}}  # not fingerprinted

    class Stop(Exception):
        pass

    def kill_in_fold_1(info):
        if info.fold == 1 and info.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path, callbacks=[kill_in_fold_1])
    assert (tmp_path / "model" / "fold_0" / "fold.json").is_file()
    assert not (tmp_path / "model" / "fold_1").exists()
    assert (tmp_path / "checkpoints" / "fold_1.safetensors").is_file()
    resumed = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)
    reference, got = _result_files(tiny_run.run_dir), _result_files(tmp_path)
    assert "predictions.csv" in got and set(got) == set(reference)
    for name in reference:
        assert got[name] == reference[name], f"{name} differs from the uninterrupted run's"
    # the returned tables are the files' too, whichever folds this call trained
    pd.testing.assert_frame_equal(resumed.predictions, tiny_run.predictions, check_exact=True)
    pd.testing.assert_frame_equal(resumed.history, tiny_run.history, check_exact=True)


def test_train_c_index_only_when_asked(tiny_cohort, tiny_run, tmp_path):
    """The fit patients' C-index is a history column only with train.train_c_index, and asking
    for it changes no result; without a hold-out no early-stopping C-index is computed."""
    assert "train_c_index" not in tiny_run.history
    cfg = {**TINY, "data": {**TINY["data"], "fold_indices": [0]}}
    asked = multimodal.train(
        cfg, cohort=tiny_cohort, out=tmp_path / "asked", overrides=["train.train_c_index=true"]
    )
    c = asked.history["train_c_index"]
    assert len(c) == 3 and ((c > 0) & (c <= 1)).all()
    a = pd.read_csv(tiny_run.run_dir / "predictions.csv").query("fold == 0").risk.to_numpy()
    b = pd.read_csv(asked.run_dir / "predictions.csv").risk.to_numpy()
    assert np.array_equal(a, b)

    no_holdout = multimodal.train(
        cfg,
        cohort=tiny_cohort,
        out=tmp_path / "no_holdout",
        overrides=["data.early_stopping_fraction=0", "train.patience=1"],
    )
    hist = no_holdout.history
    assert hist.epoch.tolist() == [1, 2, 3]  # all epochs: patience plays no part
    assert hist.es_c_index.isna().all() and "train_c_index" not in hist


def test_unknown_modality_is_a_clear_error(tiny_cohort, tmp_path):
    with pytest.raises(MissingModalityError, match="Did you mean 'genomics'"):
        multimodal.train(
            {**TINY, "data": {"modalities": ["genomic"]}}, cohort=tiny_cohort, out=tmp_path
        )


def test_unknown_encoder_name(tiny_cohort, tmp_path):
    bad = {**TINY, "encoders": {**TINY["encoders"], "genomics": {"name": "snnn"}}}
    with pytest.raises(ConfigError, match="Did you mean 'snn'"):
        multimodal.train(bad, cohort=tiny_cohort, out=tmp_path)


@pytest.mark.parametrize("fusion", ["concat", "late", "kronecker", "cross_transformer"])
def test_every_fusion_trains(tiny_cohort, tmp_path, fusion):
    cfg = {
        **TINY,
        "fusion": {"name": fusion, "dim": 8},
        "data": {
            **TINY["data"],
            "fold_indices": [0],
            "modalities": ["clinical", "genomics", "report"],
        },
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)
    assert 0 <= res.c_index <= 1


@pytest.mark.parametrize("head", ["logistic_hazard", "pmf", "deephit"])
def test_discrete_heads_train(tiny_cohort, tmp_path, head):
    cfg = {
        **TINY,
        "head": {"name": head, "n_bins": 5},
        "data": {**TINY["data"], "fold_indices": [0], "modalities": ["clinical", "genomics"]},
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)
    surv = res.predictions.filter(like="surv_").to_numpy()
    assert np.all(np.diff(surv, axis=1) <= 1e-6)


def test_resume_refuses_a_changed_config(tiny_cohort, tiny_run):
    changed = {**TINY, "train": {**TINY["train"], "lr": 0.05}}
    with pytest.raises(ConfigError, match="config differs from the one it was trained with"):
        multimodal.train(changed, cohort=tiny_cohort, out=tiny_run.run_dir)


@pytest.mark.parametrize("name", ["gpu", "cuda:0"])
def test_bad_or_absent_device_is_a_config_error(name):
    import torch

    from multimodal.training.trainer import select_device

    if name.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match=r"train\.device"):
        select_device(name)


def test_clinical_lr_gives_the_clinical_member_its_own_step(tiny_cohort, tmp_path):
    from multimodal.config import load_config
    from multimodal.training.loop import _param_groups

    cfg = {
        **TINY,
        "data": {**TINY["data"], "fold_indices": [0], "modalities": ["clinical", "genomics"]},
        "members": {"clinical_lr": 0.05},
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)
    model = multimodal.load_run(res.run_dir).folds[0].model
    loaded = load_config(cfg)
    groups = _param_groups(model, loaded.train.lr, loaded.members.clinical_lr)
    assert len(groups) == 2 and groups[1]["lr"] == 0.05
    assert groups[1]["params"][0] is model.members[model.clinical_modality].weight
    # without members.clinical_lr every parameter shares train.lr
    assert len(_param_groups(model, loaded.train.lr, None)) == 1


def test_frozen_image_encoder_mode(tiny_cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("MULTIMODAL_CACHE", str(tmp_path / "cache"))
    cfg = {
        **TINY,
        "data": {
            **TINY["data"],
            "fold_indices": [0],
            "modalities": ["clinical", "ct"],
            "frozen_image_encoder": {"name": "small_cnn", "out_dim": 6},
        },
        "encoders": {**TINY["encoders"], "ct": {"name": "image_embedding", "out_dim": 4}},
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path / "run")
    assert any((tmp_path / "cache" / "images").rglob("*")), "embeddings were not cached"
    model = multimodal.load_run(res.run_dir)
    assert model.folds[0].model.specs["ct"].in_features == 6
    assert np.isfinite(model.predict_risk(tiny_cohort)).all()


def test_frozen_image_embeddings_are_standardised_on_the_training_fold(tiny_cohort, tmp_path):
    """A random-init backbone's features vary by ~1e-4; unscaled, a ridge term sees no signal."""
    from multimodal.training.preprocess import ImagingPipeline, PreprocessContext

    ctx = PreprocessContext(
        cache_dir=tmp_path, image_size=8, frozen_image_encoder={"name": "small_cnn", "out_dim": 6}
    )
    source = tiny_cohort.sources["ct"]
    ids = list(tiny_cohort.patients.index)
    train, val = ids[:50], ids[50:]
    pipe = ImagingPipeline(ctx, "image_embedding").fit(source, train)
    raw = pipe._embedded(source, train)
    assert float(raw.values[raw.present].std(0).max()) < 0.01  # the scale the bug hid
    fitted = pipe.transform(source, train)
    x = fitted.values.numpy()[fitted.present]
    np.testing.assert_allclose(x.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(x.std(0), 1.0, rtol=1e-3)
    held = pipe.transform(source, val)
    assert (held.values.numpy()[~held.present] == 0).all()  # missing patients stay zero rows
    # the validation patients use the training fold's statistics, also after a save and reload
    reloaded = ImagingPipeline(ctx, "image_embedding").load_state(
        json.loads(json.dumps(pipe.state()))
    )
    np.testing.assert_allclose(
        reloaded.transform(source, val).values.numpy(), held.values.numpy(), rtol=1e-5, atol=1e-6
    )
    # checkpoints written before this change carry no statistics: their embeddings stay raw
    legacy = {k: v for k, v in pipe.state().items() if k not in ("mean", "std")}
    old = ImagingPipeline(ctx, "image_embedding").load_state(legacy).transform(source, train)
    np.testing.assert_allclose(old.values.numpy(), raw.values.numpy())


def test_frozen_image_encoder_needs_a_backbone(tiny_cohort, tmp_path):
    cfg = {
        **TINY,
        "data": {**TINY["data"], "fold_indices": [0], "modalities": ["ct"]},
        "encoders": {"ct": {"name": "image_embedding", "out_dim": 4}},
    }
    with pytest.raises(ConfigError, match="frozen_image_encoder"):
        multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path)


def test_text_transformer_fine_tuning_trains_end_to_end(tiny_cohort, tmp_path):
    cfg = {
        **TINY,
        "data": {
            **TINY["data"],
            "fold_indices": [0],
            "modalities": ["clinical", "report"],
            "text_max_length": 32,
        },
        "encoders": {
            **TINY["encoders"],
            "report": {"name": "text_transformer", "out_dim": 8, "options": {"finetune_layers": 1}},
        },
        "train": {**TINY["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path / "run")
    assert 0 <= res.c_index <= 1
    model = multimodal.load_run(res.run_dir)
    frame = model.predict(tiny_cohort)
    assert np.isfinite(frame.risk).all()


def test_early_stopping_keeps_the_warm_started_linear_model_unless_training_beats_it(
    tiny_cohort, tmp_path
):
    """Epoch 0 (the penalised linear Cox model) is a candidate: no epoch gains > es_min_delta."""
    cfg = {**TINY, "train": {**TINY["train"], "epochs": 4, "es_min_delta": 1.0}}
    cfg["data"] = {**TINY["data"], "fold_indices": [0]}
    result = multimodal.train(
        cfg, cohort=tiny_cohort, out=tmp_path, overrides=["data.modalities=[clinical, genomics]"]
    )
    assert [f["best_epoch"] for f in result.metrics["folds"]] == [0]
    net = multimodal.load_run(result.run_dir).folds[0].model
    # refitted on every training patient and not trained: the deep branches contribute nothing
    assert float(net.head.linear.weight.detach().abs().max()) == 0.0
    assert list(net.members) == ["clinical"]
    assert float(net.members["clinical"].weight.detach().abs().max()) > 0.0


def test_run_records_where_its_cohort_lives(tiny_run, tiny_cohort, tmp_path):
    import shutil

    import yaml

    from multimodal.dashboard.run_data import load_run_data

    meta = yaml.safe_load((tiny_run.run_dir / "config.yaml").read_text())["_meta"]
    assert meta["cohort_path"] == str(tiny_cohort.root.resolve())
    moved = tmp_path / "elsewhere" / "run"  # no data.cohort, no sibling cohort/ folder
    shutil.copytree(tiny_run.run_dir, moved)
    found = load_run_data(moved).cohort_path
    assert found is not None and found.parent == tiny_cohort.root.resolve()
