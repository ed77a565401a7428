"""Cox partial likelihood: references (lifelines, direct loops), properties, batching, AMP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.survival.losses import CoxPartialLikelihoodLoss, cox_nll, track_loss_stats


def loop_cox_loglik(risk, time, event, ties):
    """Direct per-event-time loop (textbook formulas, float64): the reference for both tie rules."""
    risk, time, event = map(np.asarray, (risk, time, event))
    ll = 0.0
    for t in np.unique(time[event.astype(bool)]):
        dead = (time == t) & event.astype(bool)
        at_risk = time >= t
        r_sum = np.exp(risk[at_risk]).sum()
        d_sum = np.exp(risk[dead]).sum()
        d = dead.sum()
        ll += risk[dead].sum()
        for m in range(d):
            ll -= np.log(r_sum - (m / d) * d_sum) if ties == "efron" else np.log(r_sum)
    return ll


@pytest.fixture(scope="module")
def rossi():
    from lifelines.datasets import load_rossi

    return load_rossi()


def test_efron_matches_lifelines_loglik(rossi):
    from lifelines import CoxPHFitter

    cph = CoxPHFitter().fit(rossi, "week", "arrest")
    x = rossi.drop(columns=["week", "arrest"]).to_numpy(float)
    risk = torch.tensor(x @ cph.params_.to_numpy(), dtype=torch.float64)
    n_events = int(rossi.arrest.sum())
    ours = (
        -cox_nll(risk, torch.tensor(rossi.week.values), torch.tensor(rossi.arrest.values))
        * n_events
    )
    # float32 arithmetic over 432 patients: relative 1e-6 (absolute ~7e-4 on -658.7)
    assert float(ours) == pytest.approx(cph.log_likelihood_, rel=1e-6)


def test_strata_match_lifelines(rossi):
    from lifelines import CoxPHFitter

    cph = CoxPHFitter().fit(rossi, "week", "arrest", strata=["race"])
    x = rossi.drop(columns=["week", "arrest", "race"]).to_numpy(float)
    risk = torch.tensor(x @ cph.params_.to_numpy())
    n_events = int(rossi.arrest.sum())
    ours = (
        -cox_nll(
            risk,
            torch.tensor(rossi.week.values),
            torch.tensor(rossi.arrest.values),
            strata=torch.tensor(rossi.race.values),
        )
        * n_events
    )
    assert float(ours) == pytest.approx(cph.log_likelihood_, rel=1e-6)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ties_match_direct_loop(ties, seed):
    rng = np.random.default_rng(seed)
    n = 200
    time = rng.integers(1, 12, n).astype(float)  # heavy ties
    event = rng.random(n) < 0.4  # heavy censoring
    risk = rng.normal(size=n)
    ref = loop_cox_loglik(risk, time, event, ties)
    ours = cox_nll(
        torch.tensor(risk), torch.tensor(time), torch.tensor(event), ties=ties, reduction="sum"
    )
    assert float(-ours) == pytest.approx(ref, rel=1e-6)


def test_no_ties_efron_equals_breslow():
    rng = np.random.default_rng(3)
    t, e, r = (torch.tensor(rng.random(50)), torch.tensor(rng.random(50) < 0.5), torch.randn(50))
    assert float(cox_nll(r, t, e, "efron")) == pytest.approx(float(cox_nll(r, t, e, "breslow")))


def test_concatenated_microbatches_equal_unbatched_with_grad():
    torch.manual_seed(0)
    x = torch.randn(96, 5)
    time = torch.rand(96).mul(10).round()
    event = torch.rand(96) < 0.5
    lin_a = torch.nn.Linear(5, 1)
    lin_b = torch.nn.Linear(5, 1)
    lin_b.load_state_dict(lin_a.state_dict())
    full = cox_nll(lin_a(x).squeeze(-1), time, event)
    full.backward()
    chunks = [lin_b(xc).squeeze(-1) for xc in x.split(32)]  # three micro-batches
    acc = cox_nll(torch.cat(chunks), time, event)
    acc.backward()
    assert acc.item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(lin_a.weight.grad, lin_b.weight.grad, rtol=1e-5, atol=1e-7)


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 40),
    shift=st.floats(-50, 50),
    seed=st.integers(0, 10_000),
    ties=st.sampled_from(["efron", "breslow"]),
)
def test_invariant_to_shift_and_order(n, shift, seed, ties):
    g = torch.Generator().manual_seed(seed)
    risk = torch.randn(n, generator=g, dtype=torch.float64)
    time = torch.randint(0, 5, (n,), generator=g).double()
    event = torch.rand(n, generator=g) < 0.6
    event[0] = True
    base = cox_nll(risk, time, event, ties)
    perm = torch.randperm(n, generator=g)
    assert float(cox_nll(risk + shift, time, event, ties)) == pytest.approx(
        float(base), rel=1e-4, abs=1e-4
    )
    assert float(cox_nll(risk[perm], time[perm], event[perm], ties)) == pytest.approx(
        float(base), rel=1e-5
    )


def test_no_event_batch_is_zero_with_grad_and_counted():
    risk = torch.randn(8, requires_grad=True)
    with track_loss_stats() as stats:
        loss = cox_nll(risk, torch.rand(8), torch.zeros(8, dtype=torch.bool))
        with track_loss_stats() as inner:  # the innermost block counts
            cox_nll(risk, torch.rand(8), torch.zeros(8, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.dtype == torch.float32
    loss.backward()
    assert risk.grad is not None and torch.isfinite(risk.grad).all()
    assert stats.no_event_batches == 1 and inner.no_event_batches == 1
    cox_nll(risk, torch.rand(8), torch.zeros(8, dtype=torch.bool))  # outside: nobody counts
    assert stats.no_event_batches == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_low_precision_gives_float32(dtype):
    lin = torch.nn.Linear(4, 1)
    x = torch.randn(32, 4)
    time, event = torch.rand(32), torch.rand(32) < 0.5
    with torch.autocast("cpu", dtype=torch.bfloat16):
        risk = lin(x).squeeze(-1)
        loss = cox_nll(risk.to(dtype), time, event)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_extreme_risks_stay_finite():
    risk = torch.tensor([-300.0, 0.0, 300.0, 50.0], requires_grad=True)
    loss = cox_nll(risk, torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([1, 1, 1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(risk.grad).all()


def test_module_and_bad_input():
    loss = CoxPartialLikelihoodLoss(ties="breslow")
    assert loss(torch.randn(5, 1), torch.rand(5), torch.ones(5)).shape == ()
    with pytest.raises(ValueError, match="Did you mean"):
        cox_nll(torch.randn(3), torch.rand(3), torch.ones(3), ties="efrom")
    with pytest.raises(ValueError, match="shape"):
        cox_nll(torch.randn(3), torch.rand(4), torch.ones(3))
