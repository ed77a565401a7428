"""PenalizedCox against scikit-survival's CoxPHSurvivalAnalysis on the same data."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.survival.penalized_cox import PenalizedCox, blocks_output


def _data(n: int = 300, p: int = 6, seed: int = 0, ties: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    beta = np.linspace(-1.0, 1.0, p)
    t = rng.exponential(np.exp(-x @ beta))
    c = rng.exponential(np.median(t) * 2, size=n)
    time, event = np.minimum(t, c), t <= c
    if ties:
        time = np.ceil(time * 4) / 4  # many tied times
    return x, time, event


@pytest.mark.parametrize("alpha", [0.0, 1.0, 10.0])
def test_matches_sksurv_breslow(alpha):
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x, time, event = _data()
    ref = CoxPHSurvivalAnalysis(alpha=alpha, ties="breslow").fit(x, Surv.from_arrays(event, time))
    ours = PenalizedCox(penalty=alpha / (2 * event.sum()), ties="breslow").fit(x, time, event)
    # cox_nll computes the likelihood in float32, so L-BFGS stops within ~1e-3 of the optimum
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(ours.predict(x), x @ ref.coef_, atol=5e-3)


def test_matches_sksurv_efron_with_ties():
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x, time, event = _data(ties=True, seed=1)
    alpha = 2.0
    ref = CoxPHSurvivalAnalysis(alpha=alpha, ties="efron").fit(x, Surv.from_arrays(event, time))
    ours = PenalizedCox(penalty=alpha / (2 * event.sum()), ties="efron").fit(x, time, event)
    np.testing.assert_allclose(ours.coef_, ref.coef_, atol=1e-3, rtol=1e-3)


def test_warm_start_reaches_the_same_optimum_in_fewer_iterations():
    """A fit started from the solution under a nearby penalty (the stacked combiner's penalty
    path) ends where a fit from zero ends, within the float32 likelihood's precision."""
    x, time, event = _data(n=400, p=30, seed=4)
    blocks = {
        "x": (torch.as_tensor(x, dtype=torch.float32), torch.ones(len(x), dtype=torch.float32))
    }
    previous = PenalizedCox(penalty={"x": 0.1}).fit(blocks, time, event)
    cold = PenalizedCox(penalty={"x": 0.03}).fit(blocks, time, event)
    warm = PenalizedCox(penalty={"x": 0.03}).fit(blocks, time, event, init=previous.coef_)
    np.testing.assert_allclose(warm.coef_["x"], cold.coef_["x"], atol=2e-3)
    assert abs(warm.loss_ - cold.loss_) < 1e-5
    assert warm.n_iter_ < cold.n_iter_
    # a block held at zero ignores its starting values
    two = {**blocks, "y": blocks["x"]}
    held = PenalizedCox(penalty=0.03).fit(two, time, event, free=("y",), init=previous.coef_)
    assert torch.count_nonzero(held.coef_["x"]) == 0


def test_blocks_penalty_free_and_missing():
    x, time, event = _data(p=4, seed=2)
    xt = torch.as_tensor(x, dtype=torch.float32)
    present_b = torch.ones(len(x))
    present_b[:50] = 0.0  # block b missing for 50 patients: contributes nothing there
    blocks = {"a": (xt[:, :2], torch.ones(len(x))), "b": (xt[:, 2:], present_b)}
    fit = PenalizedCox({"b": 1e6}, default_penalty=0.0).fit(blocks, time, event)
    assert fit.coef_["b"].abs().max() < 1e-4  # a huge penalty switches a block off
    only_a = PenalizedCox(0.0).fit(blocks, time, event, free=("a",))
    assert torch.equal(only_a.coef_["b"], torch.zeros(1, 2))
    out = blocks_output(blocks, only_a.coef_)
    assert out.shape == (len(x), 1)
    assert torch.allclose(only_a.predict(blocks), out)


def test_bad_penalty_and_unfitted():
    with pytest.raises(ValueError, match="penalties must be finite"):
        PenalizedCox(penalty=-1.0)
    with pytest.raises(RuntimeError, match="not fitted"):
        PenalizedCox().predict(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="joint likelihood"):
        PenalizedCox(n_outputs=2)
