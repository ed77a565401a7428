"""Config loading, overrides and "did you mean" errors; every YAML in configs/ validates."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from multimodal.config import (
    MOVED_KEYS,
    Config,
    MembersConfig,
    apply_overrides,
    load_config,
    upgrade_legacy_config,
)
from multimodal.exceptions import ConfigError

#: training configs (configs/tune/ holds tuning files, checked in tests/tuning/test_space.py)
CONFIGS = sorted(
    p
    for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")
    if "tune" not in p.relative_to(Path(__file__).resolve().parents[1] / "configs").parts
)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    cfg = load_config(path)
    assert isinstance(cfg, Config)


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"train": {"epoch": 3}}, r"train\.epoch: unknown key\. Did you mean 'epochs'"),
        ({"trian": {}}, r"trian: unknown key\. Did you mean 'train'"),
        ({"fusion": {"dimm": 3}}, r"Did you mean 'dim'"),
        ({"encoders": {"genomics": {"name": "snn", "outdim": 3}}}, r"Did you mean 'out_dim'"),
        ({"train": {"lr": -1}}, r"train\.lr"),
        ({"endpoint": "overall"}, r"endpoint"),
    ],
)
def test_bad_config_is_a_clear_error(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


def test_overrides_parse_yaml_values():
    cfg = load_config(
        {}, ["train.epochs=2", "data.modalities=[clinical, genomics]", "fusion.name=concat"]
    )
    assert cfg.train.epochs == 2
    assert cfg.data.modalities == ["clinical", "genomics"]
    assert cfg.fusion.name == "concat"


def test_override_errors():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["train.epochs"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"train": 3}, ["train.epochs=2"])


def test_validation_errors_name_the_override_that_caused_them(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {epochs: 3}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["train.epochz=3", "fusion.dim=4"])
    first, *rest = str(info.value).splitlines()
    assert first == f"invalid --set override 'train.epochz=3' (applied to config {path}):"
    assert rest == ["  train.epochz: unknown key. Did you mean 'epochs'?"]
    # an error of the file beside one of an override: each line says where it comes from
    path.write_text("train: {epochs: 3, lrr: 0.1}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, ["fusion.dim=abc"])
    text = str(info.value)
    assert text.startswith(f"invalid config {path} with --set overrides 'fusion.dim=abc':")
    assert "fusion.dim: Input should be a valid integer" in text
    assert "(from --set 'fusion.dim=abc')" in text
    assert "  train.lrr: unknown key. Did you mean 'lr'?" in text.splitlines()
    # no override: the file is blamed, as before
    with pytest.raises(ConfigError, match=rf"^invalid config {re.escape(str(path))}:"):
        load_config(path)


def test_encoder_shorthand_and_round_trip(tmp_path):
    cfg = load_config({"encoders": {"genomics": "snn"}})
    assert cfg.encoders["genomics"].name == "snn"
    again = load_config(cfg.to_dict())
    assert again == cfg


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")


@pytest.mark.parametrize(
    "raw, match",
    [
        ({"fusion": {"linear_modalities": ["genomics"]}}, "moved to members.linear"),
        ({"train": {"linear_combine": "stacked"}}, "moved to members.combine"),
    ],
)
def test_a_moved_key_is_refused_with_its_new_place(raw, match):
    with pytest.raises(ConfigError, match=match):
        load_config(raw)


@pytest.mark.parametrize("old, new", MOVED_KEYS.items(), ids=lambda k: ".".join(k))
def test_every_moved_key_names_its_new_place(old, new):
    raw = {old[0]: {old[1]: 1}}
    with pytest.raises(ConfigError) as err:
        load_config(raw)
    assert f"{'.'.join(old)}: this key moved to {'.'.join(new)}" in str(err.value)
    assert "unknown key" not in str(err.value)


#: A config of an earlier release that sets every moved key (all but one off their defaults).
LEGACY = {
    "fusion": {
        "name": "concat",
        "clinical_linear": True,
        "linear_modalities": ["genomics", "report"],
        "linear_group_means": True,
    },
    "train": {
        "epochs": 7,
        "clinical_lr": 0.05,
        "clinical_warm_start": 0.02,
        "linear_penalties": [1.0, 10.0, 1e4],
        "linear_penalty_tolerance": 0.01,
        "linear_penalty_score": "likelihood",
        "linear_combine": "stacked",
        "linear_penalty_folds": 4,
    },
}


def test_upgrade_legacy_config_moves_every_moved_key():
    assert len(MOVED_KEYS) == 10
    kept = {("fusion", "name"), ("train", "epochs")}
    assert set(MOVED_KEYS) == {(s, k) for s, block in LEGACY.items() for k in block} - kept
    upgraded = upgrade_legacy_config(LEGACY)
    assert LEGACY["train"]["linear_combine"] == "stacked"  # the input is not modified
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        assert key not in upgraded[section]
        assert upgraded[new_section][new_key] == LEGACY[section][key]
    assert upgraded["fusion"] == {"name": "concat"} and upgraded["train"] == {"epochs": 7}
    cfg = load_config(upgraded)
    assert cfg.members == MembersConfig(
        clinical=True,
        linear=["genomics", "report"],
        group_means=True,
        clinical_lr=0.05,
        clinical_penalty=0.02,
        penalties=[1.0, 10.0, 1e4],
        penalty_tolerance=0.01,
        penalty_score="likelihood",
        combine="stacked",
        penalty_folds=4,
    )
    assert cfg.fusion.name == "concat" and cfg.train.epochs == 7
    # a current config passes through unchanged, and the new place wins over the old one
    assert upgrade_legacy_config(cfg.to_dict()) == cfg.to_dict()
    both = upgrade_legacy_config(
        {"train": {"linear_combine": "stacked"}, "members": {"combine": "joint"}}
    )
    assert both == {"train": {}, "members": {"combine": "joint"}}


def test_linear_members_need_the_clinical_member():
    with pytest.raises(ConfigError, match=r"members\.linear needs members\.clinical"):
        load_config({"members": {"linear": ["genomics"], "clinical": False}})
    # without linear members the clinical one may be switched off
    assert load_config({"members": {"clinical": False}}).members.clinical is False
