"""members.column_blocks: a genomics member cut into one block per column type (expression, copy
number, mutation), each with its own penalty and stacked weight; saved and reloaded."""

from __future__ import annotations

import json

import pytest
import torch

import multimodal
from multimodal.config import load_config
from multimodal.data.synth_tcga import write_tcga_cohort
from multimodal.exceptions import ConfigError
from multimodal.models.members import LinearMember, split_by_suffix
from multimodal.types import InputSpec
from tests.models.test_interactions import assert_reloaded_risks_match

NAMES = ["A_rnaseq", "TP53_mut", "B_rnaseq", "EGFR_cnv", "age_at_biopsy"]
TYPES = ["rnaseq", "cnv", "mut"]


def test_columns_are_grouped_by_suffix_in_the_order_given_and_the_rest_kept():
    blocks = split_by_suffix("genomics", NAMES, 5, TYPES)
    assert blocks == {
        "genomics:rnaseq": [0, 2],
        "genomics:cnv": [3],
        "genomics:mut": [1],
        "genomics": [4],  # matches no suffix
    }
    # a suffix no column has is skipped; no suffixes, or names that do not fit: one block
    assert list(split_by_suffix("genomics", NAMES[:3], 3, TYPES)) == [
        "genomics:rnaseq",
        "genomics:mut",
    ]
    assert split_by_suffix("genomics", NAMES, 5, []) == {"genomics": [0, 1, 2, 3, 4]}
    assert split_by_suffix("genomics", [], 5, TYPES) == {"genomics": [0, 1, 2, 3, 4]}
    # "_mut" must end the name: "mutated_rnaseq" is expression
    assert split_by_suffix("g", ["mutated_rnaseq", "X_mut"], 2, ["mut", "rnaseq"]) == {
        "g:mut": [1],
        "g:rnaseq": [0],
    }


def test_blocks_cut_the_design_and_their_weights_land_on_their_columns():
    spec = InputSpec(kind="genomics", in_features=5, feature_names=NAMES)
    lm = LinearMember("genomics", spec, modifier=(0, 3), components=2, column_blocks=TYPES)
    assert lm.blocks == [
        "genomics:rnaseq",
        "genomics:cnv",
        "genomics:mut",
        "genomics",
        "genomics*0",  # the products with the modifier come last, as before
    ]
    torch.manual_seed(0)
    lm.loadings.copy_(torch.randn(5, 2))
    x = torch.randn(4, 5)
    clinical = {"categorical": torch.tensor([[1], [2], [0], [1]])}
    blocks = lm.design_blocks(x, clinical)
    torch.testing.assert_close(blocks["genomics:rnaseq"], x[:, [0, 2]])
    torch.testing.assert_close(blocks["genomics:mut"], x[:, [1]])
    assert blocks["genomics*0"].shape == (4, 2 * 3)
    coef = {name: torch.randn(1, b.shape[1]) for name, b in blocks.items()}
    lm.set_block_weights(coef)
    by_block = sum(b @ coef[name].T for name, b in blocks.items())
    whole = lm(x, torch.ones(4, dtype=torch.bool), clinical)
    torch.testing.assert_close(whole, by_block)


def test_suffixes_no_column_has_leave_one_block_with_a_warning(caplog):
    spec = InputSpec(kind="genomics", in_features=2, feature_names=["A_rnaseq", "B_rnaseq"])
    lm = LinearMember("genomics", spec, column_blocks=["rna", "mutation"])
    assert lm.blocks == ["genomics"]
    assert "no column of 'genomics' ends in any of ['_rna', '_mutation']" in caplog.text
    assert "['A_rnaseq', 'B_rnaseq']" in caplog.text


def test_blocks_without_a_linear_member_or_with_tree_scores_or_group_means_are_refused():
    with pytest.raises(ConfigError, match=r"members\.column_blocks names \['genomics'\]"):
        load_config({"members": {"linear": [], "column_blocks": {"genomics": TYPES}}})
    # the trees read one score per modality; a cut member has one per block
    both = {
        "linear": ["genomics"],
        "combine": "stacked",
        "trees": ["boosting"],
        "tree_scores": ["genomics"],
        "column_blocks": {"genomics": TYPES},
    }
    with pytest.raises(ConfigError, match=r"members\.tree_scores names \['genomics'\]"):
        load_config({"members": both})
    # group means leave one score per group: nothing to cut (it used to drop the blocks quietly)
    grouped = {"linear": ["genomics"], "group_means": True, "column_blocks": {"genomics": TYPES}}
    with pytest.raises(ConfigError, match=r"group_means and members\.column_blocks \['genomics'\]"):
        load_config({"members": grouped})


@pytest.fixture(scope="module")
def tcga_folder(tmp_path_factory):
    return write_tcga_cohort(tmp_path_factory.mktemp("blocks") / "syn", n_patients=160, seed=4)


def test_each_type_gets_its_own_penalty_and_weight_and_the_run_reloads(tcga_folder, tmp_path):
    cfg = {
        "data": {
            "split": "porpoise_mcat_5fold",
            "fold_indices": [0],
            "modalities": ["clinical", "genomics"],
        },
        "encoders": {"clinical": {"name": "clinical_mlp", "out_dim": 8}},
        "members": {
            "linear": ["genomics"],
            "combine": "stacked",
            "deep": False,
            "column_blocks": {"genomics": TYPES},
        },
        "train": {"progress": False},
        "eval": {"n_times": 4, "bootstrap": 0},
    }
    cohort = multimodal.Cohort.load(tcga_folder)
    res = multimodal.train(cfg, cohort=cohort, out=tmp_path / "run")
    meta = json.loads((res.run_dir / "model" / "fold_0" / "model.json").read_text())
    fit = meta["linear_fit"]
    typed = {"genomics:rnaseq", "genomics:cnv", "genomics:mut"}
    assert set(fit["penalties"]) == {"clinical", *typed}
    assert set(fit["weights"]) == typed
    assert all(w >= 0 for ws in fit["weights"].values() for w in ws)
    run = multimodal.load_run(res.run_dir)
    lm = run.folds[0].model.members["genomics"]
    names = run.folds[0].model.specs["genomics"].feature_names
    # every column of a block is of its type, and every column is in one block
    for block, cols in lm.columns.items():
        assert all(names[i].endswith("_" + block.split(":")[1]) for i in cols)
    assert sorted(i for cols in lm.columns.values() for i in cols) == list(range(len(names)))
    assert_reloaded_risks_match(res.run_dir, run, cohort)
