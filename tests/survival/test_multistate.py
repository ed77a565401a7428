"""Illness-death model: delayed-entry Cox, state occupation, Aalen-Johansen reference values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.survival.competing import aalen_johansen
from multimodal.survival.curves import breslow_baseline, kaplan_meier
from multimodal.survival.losses import cox_nll
from multimodal.survival.multistate import (
    breslow_baseline_delayed_entry,
    cox_nll_delayed_entry,
    illness_death_aalen_johansen,
    state_occupation,
)


def truncated_data(n=250, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    entry = rng.uniform(0, 3, n)
    exit_ = np.round(entry + rng.exponential(5 * np.exp(-0.5 * x)), 0) + 0.5  # many ties
    event = rng.random(n) < 0.7
    return x, entry, exit_, event


def illness_death_data(n=300, seed=0, censor=True):
    rng = np.random.default_rng(seed)
    t_prog, t_death0 = rng.exponential(5, n), rng.exponential(8, n)
    first = np.minimum(t_prog, t_death0)
    cause = np.where(t_prog < t_death0, 1, 2)
    death = np.where(cause == 1, first + rng.exponential(3, n), t_death0)
    c = rng.exponential(15, n) if censor else np.full(n, np.inf)
    event = death <= c
    time = np.minimum(death, c)
    etype = np.where(first <= c, cause, 0)
    first_t = np.minimum(first, c)
    return time, event, first_t, etype, (first, cause, death)


def test_delayed_entry_nll_matches_lifelines():
    from lifelines import CoxPHFitter

    x, a, t, e = truncated_data()
    df = pd.DataFrame({"x": x, "a": a, "t": t, "e": e})
    cph = CoxPHFitter().fit(df, "t", "e", entry_col="a")  # Efron ties
    beta = float(cph.params_["x"])
    nll = cox_nll_delayed_entry(
        torch.as_tensor(beta * x),
        torch.as_tensor(a),
        torch.as_tensor(t),
        torch.as_tensor(e),
        reduction="sum",
    )
    # float32 loss vs float64 lifelines: relative 1e-6
    assert -float(nll) == pytest.approx(cph.log_likelihood_, rel=1e-6)


@pytest.mark.parametrize("ties", ["efron", "breslow"])
def test_delayed_entry_at_zero_is_cox(ties):
    x, _, t, e = truncated_data(seed=1)
    r = torch.as_tensor(x, dtype=torch.float32)
    ours = cox_nll_delayed_entry(
        r, torch.zeros(len(t)), torch.as_tensor(t), torch.as_tensor(e), ties
    )
    assert float(ours) == pytest.approx(
        float(cox_nll(r, torch.as_tensor(t), torch.as_tensor(e), ties)), rel=1e-6
    )


def test_delayed_entry_breslow_matches_brute_force():
    x, a, t, e = truncated_data(seed=2)
    r = 0.4 * x
    _, h = breslow_baseline_delayed_entry(r, a, t, e)
    brute = [
        ((t == v) & e).sum() / np.exp(r[(a < v) & (t >= v)]).sum()
        for v in np.unique(t[e & (t > a)])
    ]
    np.testing.assert_allclose(h, np.cumsum(brute), rtol=1e-12)
    _, h0 = breslow_baseline_delayed_entry(r, np.zeros_like(t), t, e)
    np.testing.assert_allclose(h0, breslow_baseline(r, t, e)[1], rtol=1e-12)


def test_rows_never_at_risk_are_ignored():
    r = torch.tensor([0.3, -0.2, 1.0], requires_grad=True)
    entry, time = torch.tensor([0.0, 0.0, 5.0]), torch.tensor([2.0, 3.0, 5.0])
    loss = cox_nll_delayed_entry(r, entry, time, torch.tensor([True, False, True]))
    ref = cox_nll(r[:2], time[:2], torch.tensor([True, False]))
    assert float(loss.detach()) == pytest.approx(float(ref.detach()))
    loss.backward()
    assert torch.isfinite(r.grad).all()


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.floats(0.0, 3.0), st.integers(0, 2**31 - 1))
def test_state_occupation_sums_to_one(m, scale, seed):
    rng = np.random.default_rng(seed)
    d = [torch.as_tensor(rng.exponential(scale + 1e-9, size=(5, m))) for _ in range(3)]
    p = state_occupation(*d)
    assert p.shape == (5, 3, m)
    assert torch.allclose(p.sum(-2), torch.ones(5, m, dtype=torch.float64), atol=1e-12)
    assert (p >= -1e-12).all()
    assert (torch.diff(p[:, 0], dim=-1) <= 1e-15).all()  # progression-free never comes back
    assert (torch.diff(p[:, 2], dim=-1) >= -1e-15).all()  # death is absorbing


def test_aalen_johansen_without_censoring_is_the_empirical_state_distribution():
    time, event, first_t, etype, (first, cause, death) = illness_death_data(censor=False)
    grid, p = illness_death_aalen_johansen(time, event, first_t, etype)
    for s in (0.5, 2.0, 5.0, 10.0, 20.0):
        j = np.searchsorted(grid, s, side="right") - 1
        empirical = [
            np.mean(first > s),
            np.mean((first <= s) & (cause == 1) & (death > s)),
            np.mean(death <= s),
        ]
        np.testing.assert_allclose(p[:, j], empirical, atol=1e-12)


def test_aalen_johansen_with_censoring_agrees_with_km_and_competing_cif():
    time, event, first_t, etype, _ = illness_death_data(seed=3)
    grid, p = illness_death_aalen_johansen(time, event, first_t, etype)
    np.testing.assert_allclose(p.sum(0), 1.0, atol=1e-12)
    km_t, km_s = kaplan_meier(first_t, etype > 0)
    cr_t, cif, _ = aalen_johansen(first_t, etype)
    at = np.linspace(0, 25, 60)

    def step(knots, values, before):
        pos = np.searchsorted(knots, at, side="right") - 1
        return np.where(pos >= 0, values[..., np.clip(pos, 0, None)], before)

    # P0 is the Kaplan-Meier of the first event; P1 + P2 includes everyone who progressed
    np.testing.assert_allclose(step(grid, p[0], 1.0), step(km_t, km_s, 1.0), atol=1e-12)
    cif_prog_ms = 1.0 - step(grid, p[0], 1.0) - step(cr_t, cif[1], 0.0)
    np.testing.assert_allclose(cif_prog_ms, step(cr_t, cif[0], 0.0), atol=1e-12)
