"""Tree members inside a model: feature selection, the design, saving and loading, config rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from multimodal.config import MembersConfig
from multimodal.models.tree_terms import (
    TreeTerms,
    select_columns,
    select_columns_by_variance,
    univariate_cox_scores,
)
from multimodal.models.trees import fit_tree_ensemble
from multimodal.survival.losses import cox_nll


def _cohort(n=200, p=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    lh = 0.9 * x[:, 3] - 0.7 * x[:, 7]
    t = np.round(rng.exponential(np.exp(-lh)) * 10, 1) + 0.1  # rounded: tied times
    c = rng.exponential(12, size=n)
    return x, np.minimum(t, c), t <= c


def test_univariate_scores_are_the_cox_score_test_at_zero():
    """U^2 / I from the Breslow partial likelihood's gradient and Hessian at beta = 0."""
    x, t, e = _cohort()
    ours = univariate_cox_scores(x, t, e)
    tt, ee = torch.as_tensor(t), torch.as_tensor(e)
    for j in range(x.shape[1]):
        xj = torch.as_tensor(x[:, j])

        def nll(b, xj=xj):
            return cox_nll(b * xj, tt, ee, ties="breslow", reduction="sum")

        b = torch.zeros((), dtype=torch.float64, requires_grad=True)
        (g,) = torch.autograd.grad(nll(b), b, create_graph=True)
        (h,) = torch.autograd.grad(g, b)
        assert ours[j] == pytest.approx(float(g.detach()) ** 2 / float(h), rel=1e-6)


def test_select_columns_finds_the_acting_features():
    x, t, e = _cohort(n=400)
    cols = select_columns(x, np.ones(len(t)), t, e, k=2)
    assert list(cols) == [3, 7]
    # patients without the modality do not count; none present: nothing chosen
    assert select_columns(x, np.zeros(len(t)), t, e, k=2).size == 0


def test_select_columns_by_variance_ranks_raw_variance_among_present_patients():
    """tree_selection: variance -- no outcome; standardised inputs are ranked in raw units
    (``scales``), absent patients do not count, constant columns are never chosen."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 6)) * np.array([1.0, 5.0, 0.5, 3.0, 2.0, 0.0])
    present = np.ones(300)
    assert list(select_columns_by_variance(x, present, k=3)) == [1, 3, 4]
    z = x / np.where(x.std(0) > 0, x.std(0), 1.0)  # z-scored: every variance 1 (or 0)
    assert list(select_columns_by_variance(z, present, k=3, scales=x.std(0))) == [1, 3, 4]
    assert select_columns_by_variance(x, present, k=10).size == 5  # the constant one is left out
    # only the present patients' values count: column 0 varies wildly among the absent ones
    x[:150, 0] = rng.normal(scale=100.0, size=150)
    half = np.r_[np.zeros(150), np.ones(150)]
    assert 0 not in select_columns_by_variance(x, half, k=3)
    assert 0 in select_columns_by_variance(x, present, k=3)
    assert select_columns_by_variance(x, np.zeros(300), k=3).size == 0


def _fitted_terms(scored: bool):
    x, t, e = _cohort()
    clinical = torch.as_tensor(x[:, :2])
    gen = torch.as_tensor(x[:, 2:], dtype=torch.float32)
    terms = TreeTerms(["genomics"], ["boosting", "forest"], ["genomics"] if scored else [])
    cols = torch.as_tensor([1, 5])
    if scored:
        terms.scores["genomics"].weight = torch.linspace(-1, 1, gen.shape[1], dtype=torch.float64)
    mask = {"genomics": torch.ones(len(t), dtype=torch.bool)}
    design = terms.design(clinical, {"genomics": gen}, mask, columns={"genomics": cols})
    terms.columns["genomics"].index = cols
    for k in terms.kinds:
        ens = fit_tree_ensemble(k, design.numpy(), t, e, options={"n_estimators": 10})
        terms.ensembles[k].set_ensemble(ens, 0.1, 2.0)
    terms.weight = torch.tensor([0.5, 0.25])
    return terms, clinical, {"genomics": gen}, mask


@pytest.mark.parametrize("scored", [False, True])
def test_tree_terms_save_and_load_into_an_empty_model(tmp_path, scored):
    terms, clinical, inputs, mask = _fitted_terms(scored)
    out = terms(clinical, inputs, mask)
    assert out.shape == (len(clinical),) and out.abs().sum() > 0
    save_file(terms.state_dict(), tmp_path / "w.safetensors")
    fresh = TreeTerms(["genomics"], ["boosting", "forest"], ["genomics"] if scored else [])
    assert not fresh.fitted and fresh(clinical, inputs, mask).abs().sum() == 0
    fresh.load_state_dict(load_file(tmp_path / "w.safetensors"))
    torch.testing.assert_close(fresh(clinical, inputs, mask), out, rtol=0, atol=0)


def test_a_hidden_modality_leaves_the_trees_its_absence_only():
    terms, clinical, inputs, _ = _fitted_terms(True)
    hidden = {"genomics": torch.zeros(len(clinical), dtype=torch.bool)}
    design = terms.design(clinical, inputs, hidden)
    assert torch.all(design[:, 2:] == 0)  # features, presence flag and score all zero


def test_config_rules_of_tree_members():
    with pytest.raises(ValueError, match=r"needs members\.combine: stacked"):
        MembersConfig(trees=["forest"])
    with pytest.raises(ValueError, match="tree_scores"):
        MembersConfig(trees=["forest"], combine="stacked", tree_scores=["genomics"])
    with pytest.raises(ValueError, match="tree_options"):
        MembersConfig(trees=["forest"], combine="stacked", tree_options={"boosting": {}})
    ok = MembersConfig(
        trees=["forest"], combine="stacked", linear=["genomics"], tree_scores=["genomics"]
    )
    assert ok.tree_inputs == ["genomics"]
