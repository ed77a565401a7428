"""data.genomics_transform and data.genomics_clip through a whole run: the fitted state in the run
folder keeps them, the tree members rank by raw variance with ``asinh_after_selection``, and the
reloaded run predicts the risks training wrote."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import multimodal
from multimodal.data.synth_tcga import write_tcga_cohort
from tests.models.test_interactions import assert_reloaded_risks_match


@pytest.fixture(scope="module")
def tcga_folder(tmp_path_factory):
    return write_tcga_cohort(tmp_path_factory.mktemp("asinh") / "syn", n_patients=160, seed=5)


@pytest.mark.parametrize(("transform", "clip"), [("asinh", None), ("asinh_after_selection", 3.0)])
def test_the_transform_is_saved_and_the_run_reloads(tcga_folder, tmp_path, transform, clip):
    cfg = {
        "data": {
            "split": "porpoise_mcat_5fold",
            "fold_indices": [0],
            "modalities": ["clinical", "genomics"],
            "genomics_max_features": 40,
            "genomics_transform": transform,
            "genomics_clip": clip,
        },
        "encoders": {"clinical": {"name": "clinical_mlp", "out_dim": 8}},
        "members": {
            "linear": ["genomics"],
            "trees": ["forest"],
            "tree_features": 10,
            "tree_selection": "variance",
            "tree_options": {"forest": {"n_estimators": 20}},
            "combine": "stacked",
            "deep": False,
        },
        "train": {"progress": False},
        "eval": {"n_times": 4, "bootstrap": 0},
    }
    cohort = multimodal.Cohort.load(tcga_folder)
    res = multimodal.train(cfg, cohort=cohort, out=tmp_path / "run")
    fold = res.run_dir / "model" / "fold_0"
    state = json.loads((fold / "preprocess.json").read_text())["genomics"]["state"]
    assert state["transform"] == transform
    assert state["clip"] == clip
    table = cohort.sources["genomics"].table.loc[:, state["feature_names"]].astype(float)
    trained = set(_training_ids(res.run_dir))
    train_ids = [p for p in table.index if p in trained]
    raw_sd = table.loc[train_ids].std(ddof=0).to_numpy()  # no column of this cohort is missing
    asinh_sd = np.arcsinh(table.loc[train_ids]).std(ddof=0).to_numpy()
    # the tree members' ranking scale: raw SDs unless the ranking itself was on asinh values
    np.testing.assert_allclose(
        state["scales"], asinh_sd if transform == "asinh" else raw_sd, rtol=1e-6
    )
    np.testing.assert_allclose(state["std"], asinh_sd, rtol=1e-6)  # the values are asinh'd
    assert_reloaded_risks_match(res.run_dir, multimodal.load_run(res.run_dir), cohort)


def _training_ids(run_dir) -> list[str]:
    saved = pd.read_csv(run_dir / "predictions.csv")
    return saved.loc[saved.split == "train", "patient_id"].astype(str).tolist()
