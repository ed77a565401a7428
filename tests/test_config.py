"""Config loading, overrides and "did you mean" errors; every YAML in configs/ validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from multimodal.config import Config, apply_overrides, load_config
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


def test_encoder_shorthand_and_round_trip(tmp_path):
    cfg = load_config({"encoders": {"genomics": "snn"}})
    assert cfg.encoders["genomics"].name == "snn"
    again = load_config(cfg.to_dict())
    assert again == cfg


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")
