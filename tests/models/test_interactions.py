"""members.interactions: a linear member's principal components times the levels of a clinical
categorical covariate (effect modification), fitted on training patients, saved and reloaded."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

import multimodal
from multimodal.config import load_config
from multimodal.exceptions import ConfigError
from multimodal.models.members import LinearMember
from multimodal.types import InputSpec
from tests.training.test_trainer import TINY, tiny_cohort  # noqa: F401 (fixture)

CFG = {
    **TINY,
    "data": {**TINY["data"], "modalities": ["clinical", "genomics"], "fold_indices": [0]},
    "members": {
        "linear": ["genomics"],
        "combine": "stacked",
        "deep": False,
        "interactions": {"genomics": "stage"},
        "interaction_components": 3,
    },
}


def _member(p: int = 6, k: int = 2, levels: int = 4) -> LinearMember:
    spec = InputSpec(kind="genomics", in_features=p)
    return LinearMember("genomics", spec, modifier=(1, levels), components=k)


def test_components_are_unit_sd_scores_fitted_on_present_rows():
    torch.manual_seed(0)
    lm = _member()
    latent = torch.randn(200, 1)
    x = torch.cat([latent + 0.1 * torch.randn(200, 3), torch.randn(200, 3)], dim=1)
    present = torch.ones(200, dtype=torch.bool)
    present[:20] = False
    x[:20] = 1e3  # rows without the modality must not move the components
    lm.fit_components(x, present)
    scores = (x[20:] - x[20:].mean(0)) @ lm.loadings
    np.testing.assert_allclose(scores.std(0).numpy(), [1.0, 1.0], atol=1e-4)
    # the first component is the shared latent programme of the first three columns
    assert abs(np.corrcoef(scores[:, 0].numpy(), latent[20:, 0].numpy())[0, 1]) > 0.98


def test_design_is_features_then_scores_times_levels_and_zero_without_clinical():
    lm = _member()
    lm.loadings.copy_(torch.tensor([[1.0, 0.0]] + [[0.0, 1.0]] * 5))
    x = torch.ones(3, 6)
    clinical = {"categorical": torch.tensor([[0, 2], [0, 0], [0, 3]])}
    present = torch.tensor([True, True, False])
    d = lm.design(x, clinical, present)
    assert d.shape == (3, 6 + 2 * 4)
    products = d[:, 6:].reshape(3, 2, 4)
    assert products[0, :, 2].tolist() == [1.0, 5.0] and products[0].sum() == 6.0
    assert products[1, :, 0].tolist() == [1.0, 5.0]  # level 0 (unknown) is a level too
    assert products[2].abs().sum() == 0  # clinical covariates missing: no products
    torch.testing.assert_close(d[:, :6], x)


def test_config_is_checked_and_an_absent_column_is_skipped_with_a_warning(
    tiny_cohort,  # noqa: F811
    tmp_path,
    caplog,
):
    with pytest.raises(ConfigError, match=r"members\.interactions names"):
        load_config({"members": {"linear": [], "interactions": {"genomics": "stage"}}})
    # one config for cohorts with and without the column (GBMLGG has no stage): a warning
    absent = {**CFG, "members": {**CFG["members"], "interactions": {"genomics": "stgae"}}}
    res = multimodal.train(absent, cohort=tiny_cohort, out=tmp_path / "absent")
    assert "Did you mean 'stage'" in caplog.text and "gets no products" in caplog.text
    lm = multimodal.load_run(res.run_dir).folds[0].model.members["genomics"]
    assert lm.modifier is None and lm.blocks == ["genomics"]


def test_trained_run_reloads_to_the_same_predictions(tiny_cohort, tmp_path):  # noqa: F811
    res = multimodal.train(CFG, cohort=tiny_cohort, out=tmp_path / "run")
    model = multimodal.load_run(res.run_dir)
    fold = model.folds[0].model
    lm = fold.members["genomics"]
    assert lm.modifier is not None and lm.loadings.abs().sum() > 0
    levels = lm.modifier[1]
    assert lm.weight.shape[1] == fold.specs["genomics"].in_features + 3 * levels
    # the products are a block of their own: own penalty, own stacking weight
    assert lm.blocks == ["genomics", "genomics*stage"]
    fit = json.loads((res.run_dir / "model" / "fold_0" / "model.json").read_text())["linear_fit"]
    assert {"genomics", "genomics*stage"} <= set(fit["penalties"])
    assert "genomics*stage" in fit["weights"]
    assert_reloaded_risks_match(res.run_dir, model, tiny_cohort)


def assert_reloaded_risks_match(run_dir, model, cohort) -> None:
    """The reloaded run's risks of the validation patients equal those training wrote in
    predictions.csv (each centred: the saved risks are centred on the fold's training mean)."""
    saved = pd.read_csv(run_dir / "predictions.csv").set_index("patient_id")
    again = model.predict(cohort).set_index("patient_id")
    ids = saved.index[saved.split == "val"]
    centred = saved.loc[ids, "risk"] - saved.loc[ids, "risk"].mean()
    recomputed = again.loc[ids, "risk"] - again.loc[ids, "risk"].mean()
    np.testing.assert_allclose(recomputed.to_numpy(), centred.to_numpy(), atol=1e-5)


def test_components_are_fitted_when_the_members_train_with_the_deep_model(
    tiny_cohort,  # noqa: F811
    tmp_path,
):
    """A discrete-time head has no partial likelihood, so the linear members are not fitted
    first but trained with the deep residual: their products still need the components."""
    cfg = {
        **CFG,
        "head": {"name": "logistic_hazard"},
        "members": {**CFG["members"], "combine": "joint", "deep": True},
        "train": {**CFG["train"], "epochs": 1},
    }
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path / "lh")
    lm = multimodal.load_run(res.run_dir).folds[0].model.members["genomics"]
    assert lm.modifier is not None and lm.loadings.abs().sum() > 0


def test_cumulative_products_train_save_and_reload_to_the_same_predictions(
    tiny_cohort,  # noqa: F811
    tmp_path,
):
    """members.interaction_form: cumulative through the user's path: every gene times each
    cumulative stage indicator, an elastic-net penalty recorded in model.json, the reloaded run
    predicting what training wrote."""
    cfg = {**CFG, "members": {**CFG["members"], "interaction_form": "cumulative"}}
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path / "cumulative")
    model = multimodal.load_run(res.run_dir)
    fold = model.folds[0].model
    lm = fold.members["genomics"]
    p, levels = fold.specs["genomics"].in_features, lm.modifier[1]
    assert lm.form == "cumulative" and not hasattr(lm, "loadings")
    assert lm.weight.shape[1] == p + p * (levels - 2)
    assert lm.blocks == ["genomics", "genomics*stage"] and lm.sparse_blocks == ["genomics*stage"]
    fit = json.loads((res.run_dir / "model" / "fold_0" / "model.json").read_text())["linear_fit"]
    assert fit["penalties"]["genomics*stage"] > 0 and "genomics*stage" in fit["weights"]
    assert_reloaded_risks_match(res.run_dir, model, tiny_cohort)


def test_both_forms_train_save_and_reload_to_the_same_predictions(
    tiny_cohort,  # noqa: F811
    tmp_path,
):
    """members.interaction_form: both through the user's path: the component products and the
    cumulative ones, each block with its penalty in model.json, the reloaded run (its full-width
    weight loaded strictly) predicting what training wrote. The tiny cohort's second stage gives
    both product blocks weight 0; non-zero product coefficients surviving save and load are
    tested on the member itself (test_cumulative_interactions)."""
    cfg = {**CFG, "members": {**CFG["members"], "interaction_form": "both"}}
    res = multimodal.train(cfg, cohort=tiny_cohort, out=tmp_path / "both")
    model = multimodal.load_run(res.run_dir)
    lm = model.folds[0].model.members["genomics"]
    assert lm.form == "both" and lm.loadings.abs().sum() > 0
    assert lm.blocks == ["genomics", "genomics*stage", "genomics*stage>=k"]
    p, levels = model.folds[0].model.specs["genomics"].in_features, lm.modifier[1]
    assert lm.weight.shape[1] == p + 3 * levels + p * (levels - 2)  # 3 components
    fit = json.loads((res.run_dir / "model" / "fold_0" / "model.json").read_text())["linear_fit"]
    assert {"genomics*stage", "genomics*stage>=k"} <= set(fit["penalties"])
    assert_reloaded_risks_match(res.run_dir, model, tiny_cohort)


def test_a_cohort_without_stage_is_not_offered_sex_in_its_place(caplog):
    """GBMLGG has no stage: the warning says the column is absent and suggests nothing ('sex'
    shares two letters with 'stage'; suggesting it would mislead)."""
    from multimodal.config import MembersConfig
    from multimodal.models.model import MultimodalSurvivalModel

    clinical = InputSpec(kind="clinical", n_numeric=1, cardinalities=[3], categorical_names=["sex"])
    members = MembersConfig(linear=["genomics"], interactions={"genomics": "stage"})
    assert MultimodalSurvivalModel._modifier("genomics", members, clinical) is None
    assert "gets no products" in caplog.text and "Did you mean" not in caplog.text
