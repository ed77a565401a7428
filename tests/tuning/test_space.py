"""The tuning file: dotted keys checked against Config, distributions, clear errors."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import yaml

from multimodal.config import Config
from multimodal.exceptions import ConfigError
from multimodal.tuning.space import ParamSpec, check_config_path, load_tune_spec

ROOT = Path(__file__).resolve().parents[2]
TUNE_FILES = sorted((ROOT / "configs" / "tune").glob("*.yaml"))

BASE = {"train": {"epochs": 4}, "fusion": {"name": "concat"}}


def spec_dict(**search) -> dict:
    return {
        "base": BASE,
        "search": search or {"train.lr": {"type": "float", "low": 1e-4, "high": 1e-2}},
    }


@pytest.mark.parametrize("path", TUNE_FILES, ids=lambda p: p.name)
def test_every_shipped_tuning_file_validates(path):
    spec = load_tune_spec(path)
    assert spec.search and spec.study.name == path.stem
    # every extreme of the space builds a valid trial config
    for key, param in spec.search.items():
        for value in param.extremes():
            cfg = spec.trial_config({key: value})
            assert isinstance(cfg, Config)
            assert cfg.data.folds == spec.objective.inner_folds and cfg.eval.bootstrap == 0


def test_base_path_is_relative_to_the_tuning_file(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text("train: {epochs: 7}\n")
    tune_file = tmp_path / "configs" / "tune.yaml"
    tune_file.write_text(yaml.safe_dump({**spec_dict(), "base": "base.yaml"}))
    spec = load_tune_spec(tune_file, ["train.batch_size=16"])
    cfg = spec.trial_config({"train.lr": 0.01})
    assert cfg.train.epochs == 7 and cfg.train.batch_size == 16 and cfg.train.lr == 0.01


def test_overrides_are_fixed_for_every_trial():
    raw = spec_dict()
    raw["overrides"] = {"train.epochs": 9, "encoders.genomics": {"name": "snn"}}
    raw["overrides"]["encoders.genomics.options.dropout"] = 0.3
    spec = load_tune_spec(raw)
    cfg = spec.trial_config({"train.lr": 0.001})
    assert cfg.train.epochs == 9 and cfg.encoders["genomics"].options == {"dropout": 0.3}


@pytest.mark.parametrize(
    "path",
    [
        "train.lr",
        "fusion.options.n_heads",
        "encoders.genomics.out_dim",
        "encoders.report.options.hidden",
        "data.frozen_image_encoder.out_dim",
        "data.modalities",
    ],
)
def test_valid_config_paths(path):
    check_config_path(path)


@pytest.mark.parametrize(
    "path, match",
    [
        ("train.lrr", r"train\.lrr: unknown config key\. Did you mean 'lr'"),
        ("fusion.dimm", r"Did you mean 'dim'"),
        ("trian.lr", r"Did you mean 'train'"),
        ("encoders.genomics.outdim", r"Did you mean 'out_dim'"),
        ("train.lr.x", r"train\.lr holds a value, not a section"),
        ("encoders", r"give a modality"),
        ("train..lr", r"not a dotted config key"),
    ],
)
def test_bad_config_paths(path, match):
    with pytest.raises(ConfigError, match=match):
        check_config_path(path)


@pytest.mark.parametrize(
    "search, match",
    [
        (
            {"train.lrr": {"type": "float", "low": 0.1, "high": 1}},
            r"search\.train\.lrr.*Did you mean 'lr'",
        ),
        (
            {"train.lr": {"type": "float", "low": 0.1, "hihg": 1}},
            r"search\.train\.lr\.hihg: unknown key\. Did you mean 'high'",
        ),
        (
            {"train.lr": {"type": "float", "low": 1, "high": 0.1}},
            r"'low' must be smaller than 'high'",
        ),
        (
            {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}},
            r"log=true needs low > 0",
        ),
        ({"train.lr": {"type": "uniform", "low": 0, "high": 1}}, r"search\.train\.lr\.type"),
        ({"fusion.dim": {"type": "int", "low": 1.5, "high": 4}}, r"integer"),
        (
            {"fusion.dropout": {"type": "float", "low": 0.0, "high": 1.5}},
            r"search\.fusion\.dropout: the value 1\.5 makes an invalid config.*fusion\.dropout",
        ),
        (
            {"fusion.name": {"type": "categorical", "choices": ["concat", "atention_gated"]}},
            r"unknown fusion 'atention_gated'\. Did you mean 'attention_gated'",
        ),
        (
            {"head.name": {"type": "categorical", "choices": ["coxx"]}},
            r"unknown head 'coxx'\. Did you mean 'cox'",
        ),
        (
            {"encoders.genomics.name": {"type": "categorical", "choices": ["snnn"]}},
            r"unknown encoder 'snnn'",
        ),
        ({"head.name": {"type": "categorical", "choices": []}}, r"non-empty 'choices'"),
        (
            {"data.folds": {"type": "int", "low": 2, "high": 5}},
            r"the tuner sets data\.folds itself",
        ),
        (  # the study reads its cohort once
            {
                "data.clinical_categorical": {
                    "type": "categorical",
                    "choices": [["sex", "stage"], ["sex", "stage", "histological_grade"]],
                }
            },
            r"data\.clinical_categorical cannot be searched: it changes how the cohort is read",
        ),
        ({"train.epochs": {"type": "categorical", "choices": [3, 3]}}, r"distinct"),
    ],
)
def test_bad_search_space_is_a_clear_error(search, match):
    with pytest.raises(ConfigError, match=match):
        load_tune_spec(spec_dict(**search))


def test_bad_sections_name_the_key(tmp_path):
    raw = spec_dict()
    raw["pruner"] = {"name": "medain"}
    with pytest.raises(ConfigError, match=r"pruner\.name"):
        load_tune_spec(raw)
    raw = spec_dict()
    raw["objective"] = {"metrics": ["c_idx"]}
    with pytest.raises(ConfigError, match=r"unknown metric 'c_idx'\. Did you mean 'c_index'"):
        load_tune_spec(raw)
    raw = spec_dict()
    raw["studdy"] = {}
    with pytest.raises(ConfigError, match=r"studdy: unknown key\. Did you mean 'study'"):
        load_tune_spec(raw)
    path = tmp_path / "train.yaml"
    path.write_text("train: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"no 'search' section: is it a training config"):
        load_tune_spec(path)
    with pytest.raises(ConfigError, match="not found"):
        load_tune_spec(tmp_path / "nope.yaml")


def test_list_choices_become_readable_optuna_labels():
    p = ParamSpec(type="categorical", choices=[["clinical"], ["clinical", "genomics"]])
    assert p.labels() == ["clinical", "clinical+genomics"]
    trial = optuna.trial.FixedTrial({"data.modalities": "clinical+genomics"})
    assert p.suggest(trial, "data.modalities") == ["clinical", "genomics"]


def test_suggest_follows_the_distribution():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    p_float = ParamSpec(type="float", low=1e-4, high=1e-1, log=True)
    p_int = ParamSpec(type="int", low=8, high=64, step=8)
    for _ in range(20):
        trial = study.ask()
        lr, dim = p_float.suggest(trial, "lr"), p_int.suggest(trial, "dim")
        assert 1e-4 <= lr <= 1e-1 and dim in range(8, 65, 8)
        study.tell(trial, 0.5)
    dist = study.trials[0].distributions
    assert dist["lr"].log and dist["dim"].step == 8


def test_modalities_are_checked_against_the_cohort():
    spec = load_tune_spec(
        spec_dict(
            **{
                "data.modalities": {
                    "type": "categorical",
                    "choices": [["clinical"], ["clinical", "genomic"]],
                }
            }
        )
    )
    spec.check_modalities(["clinical", "genomic"])  # every choice exists: fine
    with pytest.raises(ConfigError, match=r"\['genomic'\].*Did you mean 'genomics'"):
        spec.check_modalities(["clinical", "genomics"])


def test_fingerprint_ignores_cohort_path_but_not_the_space():
    a = load_tune_spec(spec_dict())
    b = load_tune_spec(spec_dict(), ["data.cohort=/elsewhere/cohort.yaml"])
    c = load_tune_spec(spec_dict(**{"train.lr": {"type": "float", "low": 1e-5, "high": 1e-2}}))
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
