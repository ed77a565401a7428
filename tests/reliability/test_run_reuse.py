"""Going on from a run folder: its own config.yaml trains again, and a folder holding another
run is refused with advice that works from the CLI and from ``multimodal.train`` alike."""

from __future__ import annotations

import logging

import pytest
import yaml

import multimodal
from multimodal.config import load_config
from multimodal.exceptions import ConfigError

#: a clinical-only model that trains in about a second on the 40-patient synthetic cohort
CONFIG = {
    "data": {"folds": 2, "modalities": ["clinical"]},
    "encoders": {"clinical": {"name": "clinical_mlp", "out_dim": 4}},
    "fusion": {"name": "concat", "dim": 4},
    "train": {"epochs": 1, "batch_size": 16, "progress": False},
    "eval": {"n_times": 3, "bootstrap": 0},
}


def _without_meta(path) -> dict:
    raw = yaml.safe_load(path.read_text())
    assert isinstance(raw.pop("_meta"), dict)
    return raw


def test_a_runs_saved_config_trains_again(cohort_dir, tmp_path, tools, caplog):
    first = tools.train_cli(cohort_dir / "cohort.yaml", tmp_path, "[clinical]")
    assert first.exit_code == 0, first.output
    saved = tmp_path / "run" / "config.yaml"

    again = tools.cli("train", "--config", saved, "--out", tmp_path / "again")
    assert again.exit_code == 0, again.output
    assert _without_meta(tmp_path / "again" / "config.yaml") == _without_meta(saved)
    # the same config, cohort and seed: the same run
    for name in ("predictions.csv", "history.csv", "metrics.json"):
        assert (tmp_path / "again" / name).read_bytes() == (tmp_path / "run" / name).read_bytes()

    with caplog.at_level(logging.INFO, logger="multimodal.config"):
        tweaked = load_config(saved, ["train.epochs=3"])
    assert tweaked.train.epochs == 3 and tweaked.data.modalities == ["clinical"]
    assert "_meta block is not used" in caplog.text


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda raw: raw.update(trian={}), "trian: unknown key"),  # beside _meta
        (lambda raw: raw.update(_metadata={}), "_metadata: unknown key"),
        (lambda raw: raw.update(_meta="provenance"), "_meta: unknown key"),  # not the run's block
    ],
)
def test_only_the_runs_own_meta_block_is_dropped(edit, message):
    raw = {**CONFIG, "_meta": {"run_id": "0123456789ab", "seed": 0}}
    edit(raw)
    with pytest.raises(ConfigError, match=message):
        load_config(raw)


def test_a_folder_holding_another_run_says_how_to_go_on(cohort_dir, tmp_path, tools):
    cohort = multimodal.Cohort.load(cohort_dir / "cohort.yaml")
    out = tmp_path / "run"
    multimodal.train(CONFIG, cohort=cohort, out=out)
    before = (out / "predictions.csv").read_bytes()

    changed = ["train.lr=0.01"]
    advice = "Use a new output folder (--out / out=), or start over with --force / force=True"
    with pytest.raises(ConfigError, match="config differs") as err:
        multimodal.train(CONFIG, cohort=cohort, out=out, overrides=changed)
    assert advice in str(err.value)
    assert (out / "predictions.csv").read_bytes() == before  # nothing was changed

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    cli_args = ("train", "-c", tmp_path / "tiny.yaml", "--cohort", cohort_dir / "cohort.yaml")
    tools.assert_one_line_error(tools.cli(*cli_args, "--out", out, "--set", *changed), advice)

    # the API's spelling of --force does what the message says
    redone = multimodal.train(CONFIG, cohort=cohort, out=out, overrides=changed, force=True)
    assert redone.config.train.lr == 0.01
    assert yaml.safe_load((out / "config.yaml").read_text())["train"]["lr"] == 0.01
