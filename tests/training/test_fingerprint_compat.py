"""Run folders written by an earlier release resume under the same settings: the config
fingerprint leaves out keys added later while they hold their neutral value
(``resume._ADDED_KEYS``), and every new key is either registered there or not fingerprinted."""

from __future__ import annotations

import pytest

from multimodal.config import Config, load_config
from multimodal.training.resume import _ADDED_KEYS, _NOT_FINGERPRINTED, config_fingerprint

#: Every ``section.key`` of the config at commit 6f25a98 (2026-12-05), whose fingerprints run
#: folders of that release store.
KEYS_OF_6F25A98 = [
    "data.cache_dir",
    "data.cohort",
    "data.early_stopping_fraction",
    "data.fold_indices",
    "data.folds",
    "data.frozen_image_encoder",
    "data.genomics_max_features",
    "data.group_by",
    "data.image_intensity",
    "data.image_size",
    "data.landmark",
    "data.modalities",
    "data.split",
    "data.text_chunking",
    "data.text_features",
    "data.text_max_length",
    "data.text_max_terms",
    "data.text_model",
    "endpoint",
    "eval.bootstrap",
    "eval.horizons",
    "eval.n_times",
    "eval.times",
    "fusion.dim",
    "fusion.dropout",
    "fusion.modality_dropout",
    "fusion.name",
    "fusion.options",
    "head.n_bins",
    "head.name",
    "head.options",
    "head.ties",
    "members.clinical",
    "members.clinical_lr",
    "members.clinical_penalty",
    "members.combine",
    "members.deep",
    "members.group_means",
    "members.interaction_components",
    "members.interactions",
    "members.linear",
    "members.penalties",
    "members.penalty_folds",
    "members.penalty_score",
    "members.penalty_tolerance",
    "members.stack_nonnegative",
    "members.tree_features",
    "members.tree_inputs",
    "members.tree_options",
    "members.tree_scores",
    "members.trees",
    "out",
    "train.accumulate",
    "train.batch_size",
    "train.checkpoint_every",
    "train.device",
    "train.epochs",
    "train.es_min_delta",
    "train.es_smoothing",
    "train.event_balanced",
    "train.grad_clip",
    "train.lr",
    "train.min_events_per_batch",
    "train.patience",
    "train.precision",
    "train.progress",
    "train.refit",
    "train.resume",
    "train.seed",
    "train.threads",
    "train.train_c_index",
    "train.weight_decay",
]

#: A config exercising the members, as fingerprinted by the code of commit 6f25a98.
STACKED = {
    "data": {"text_features": "lexical", "text_max_terms": 200},
    "members": {
        "linear": ["genomics", "report"],
        "combine": "stacked",
        "trees": ["boosting"],
        "interactions": {"genomics": "stage"},
    },
    "train": {"epochs": 7, "lr": 0.001},
}


def _keys(d: dict) -> set[str]:
    out = set()
    for k, v in d.items():
        if isinstance(v, dict) and k in ("data", "fusion", "members", "head", "train", "eval"):
            out |= {f"{k}.{sub}" for sub in v}
        elif not isinstance(v, dict):
            out.add(k)
    return out


def test_fingerprints_of_the_earlier_release_are_reproduced():
    """Computed with the code of 6f25a98: a run folder it wrote resumes under this release."""
    assert config_fingerprint(Config()) == "cb6e70fe950160be"
    assert config_fingerprint(load_config(STACKED)) == "6758cdaf4d0ac122"


@pytest.mark.parametrize(("section", "key"), sorted(_ADDED_KEYS))
def test_an_added_key_away_from_its_neutral_value_is_a_new_experiment(section, key):
    neutral = _ADDED_KEYS[(section, key)]
    assert getattr(getattr(Config(), section), key) == neutral  # the default is the neutral value
    other = {
        "min_events": 5,
        "stack_penalty": 0.1,
        "stack_penalties": [0.5],
        "stack_min_lr": 3.84,
        "stack_repeats": 3,
        "tree_selection": "variance",
        "stack_fallback": True,
        "genomics_types": ["rnaseq", "mut"],
        "genomics_transform": "asinh",
        "genomics_clip": 5.0,
        "clinical_numeric": ["age"],
        "clinical_categorical": ["sex", "stage", "histological_grade"],
        "interaction_form": "cumulative",
        "interaction_l1_ratio": 1.0,
        "penalty_choice": "nested",
    }
    if key == "elastic_net_beside":  # needs members.elastic_net
        net = {"linear": ["genomics"], "combine": "stacked", "elastic_net": {"genomics": 0.5}}
        changed = load_config({"members": {**net, key: True}})
        assert config_fingerprint(changed) != config_fingerprint(load_config({"members": net}))
        return
    other = other.get(key, "pooled")
    if key == "stack_penalties":  # only read with stack_penalty auto, yet still a new setting
        changed = load_config({"members": {key: other}})
    elif key in ("column_blocks", "elastic_net"):  # need the modality in members.linear
        linear = {"linear": ["genomics"], "combine": "stacked"}
        value = {"genomics": ["mut"]} if key == "column_blocks" else {"genomics": 0.5}
        changed = load_config({"members": {**linear, key: value}})
        assert config_fingerprint(changed) != config_fingerprint(load_config({"members": linear}))
        return
    else:
        changed = load_config({section: {key: other}})
    assert config_fingerprint(changed) != config_fingerprint(Config())


def test_every_new_config_key_is_registered():
    """A key added since 6f25a98 must be in resume._ADDED_KEYS (with the value that keeps the old
    behaviour) or in resume._NOT_FINGERPRINTED; otherwise every run folder of earlier releases
    stops resuming."""
    new = _keys(Config().to_dict()) - set(KEYS_OF_6F25A98)
    known = {f"{s}.{k}" for s, k in (*_ADDED_KEYS, *_NOT_FINGERPRINTED)}
    assert sorted(new - known) == [], (
        "register these config keys in multimodal/training/resume.py: _ADDED_KEYS (neutral value) "
        "or _NOT_FINGERPRINTED"
    )
