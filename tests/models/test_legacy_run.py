"""Run folders written before the members redesign (schema 1) still load and predict the same."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file, save_file

import multimodal
from multimodal.config import MOVED_KEYS
from multimodal.runfolder import RunFolder

CONFIG = {
    "data": {"folds": 2, "modalities": ["clinical", "genomics"], "genomics_max_features": 30},
    "encoders": {
        "clinical": {"name": "clinical_mlp", "out_dim": 4},
        "genomics": {"name": "snn", "out_dim": 4},
    },
    "fusion": {"name": "concat", "dim": 4},
    "members": {"linear": ["genomics"], "penalties": [1, 100], "clinical_lr": 0.01},
    "train": {"epochs": 2, "batch_size": 64, "progress": False},
    "eval": {"n_times": 4, "bootstrap": 0},
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from multimodal.data.synth import generate_cohort

    root = tmp_path_factory.mktemp("legacy")
    generate_cohort(root / "cohort", n_patients=60, seed=5, missing_rate=0.2, image_size=8)
    cohort = multimodal.Cohort.load(root / "cohort" / "cohort.yaml")
    new = multimodal.train(CONFIG, cohort=cohort, out=root / "new").run_dir
    old = root / "old"
    shutil.copytree(new, old)
    _to_schema_1(old)
    return cohort, new, old


def _to_schema_1(path) -> None:
    """Rewrite a run folder as the previous release wrote it: old config keys, old weight names,
    no schema_version."""
    run = RunFolder(path)
    raw = yaml.safe_load(run.config_path.read_text())
    for key in ("schema_version", "run_id", "folds"):  # not written before schema 2
        raw["_meta"].pop(key)
    for (section, key), (new_section, new_key) in MOVED_KEYS.items():
        raw.setdefault(section, {})[key] = raw[new_section].pop(new_key)
    raw.pop("members")
    run.config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    for k in run.finished_folds():
        meta_path = run.fold_dir(k) / RunFolder.FOLD_META
        meta = json.loads(meta_path.read_text())
        for key in ("schema_version", "weights_sha256", "run_id"):  # not written before schema 2
            meta.pop(key, None)
        meta_path.write_text(json.dumps(meta))
        weights = run.fold_dir(k) / RunFolder.FOLD_WEIGHTS
        state = load_file(str(weights))
        renamed = {}
        for name, value in state.items():
            if name == "members.clinical.linear.weight":
                name = "clinical_linear.weight"
            elif name.startswith("members."):
                name = "omics_linear." + name[len("members.") :].replace(".linear.", ".")
            renamed[name] = value
        save_file(renamed, str(weights))


def test_legacy_run_folder_loads_and_predicts_the_same(runs):
    cohort, new, old = runs
    assert RunFolder(old).schema_version() == 1 and RunFolder(new).schema_version() == 2
    legacy = multimodal.load_run(old)
    assert legacy.config.members.linear == ["genomics"]
    assert legacy.config.members.clinical_lr == 0.01
    a = multimodal.load_run(new).predict(cohort)
    b = legacy.predict(cohort)
    np.testing.assert_array_equal(a["risk"].to_numpy(), b["risk"].to_numpy())


def test_old_keys_in_a_new_config_name_their_new_place(runs):
    cohort, _, _ = runs
    cfg = {**CONFIG, "fusion": {"name": "concat", "dim": 4, "linear_modalities": ["genomics"]}}
    with pytest.raises(multimodal.exceptions.ConfigError, match=r"moved to members\.linear"):
        multimodal.train(cfg, cohort=cohort, out=None)
