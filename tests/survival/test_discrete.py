"""Discrete-time grid, discretisation and losses against direct loop implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.survival.discrete import (
    deephit_loss,
    discretize,
    logistic_hazard_nll,
    make_time_grid,
    pmf_nll,
)


def test_time_grid_quantiles_and_equidistant():
    rng = np.random.default_rng(0)
    t = rng.exponential(10, 300)
    e = rng.random(300) < 0.6
    cuts = make_time_grid(t, e, n_bins=20)
    assert cuts[0] == 0 and cuts[-1] == t.max() and np.all(np.diff(cuts) > 0)
    assert len(cuts) == 21
    inner = cuts[1:-1]
    assert np.allclose(inner, np.quantile(t[e], np.linspace(0, 1, 21)[1:-1]))
    eq = make_time_grid(t, e, n_bins=5, scheme="equidistant")
    assert np.allclose(eq, np.linspace(0, t.max(), 6))


def test_time_grid_ties_merge_and_errors():
    t = np.array([1.0, 1, 1, 1, 2, 5])
    cuts = make_time_grid(t, np.ones(6, bool), n_bins=10)
    assert np.all(np.diff(cuts) > 0) and cuts[0] == 0 and cuts[-1] == 5
    with pytest.raises(ValueError, match="no events"):
        make_time_grid(t, np.zeros(6, bool))
    with pytest.raises(ValueError, match="Did you mean"):
        make_time_grid(t, np.ones(6, bool), scheme="quantile")


def test_discretize_convention():
    cuts = np.array([0.0, 1.0, 2.0, 4.0])
    idx, ev = discretize(np.array([0.0, 0.5, 1.0, 1.5, 4.0, 9.0]), np.ones(6), cuts)
    assert idx.tolist() == [0, 0, 0, 1, 2, 2]  # (c_j, c_j+1]; beyond the grid -> last interval
    assert ev.dtype == torch.bool


def _data(b=12, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, generator=g, dtype=torch.float64)
    idx = torch.randint(0, t, (b,), generator=g)
    event = torch.rand(b, generator=g) < 0.5
    return logits, idx, event


def test_logistic_hazard_matches_loop():
    logits, idx, event = _data()
    h = torch.sigmoid(logits)
    ref = 0.0
    for i in range(len(idx)):
        ll = sum(np.log(1 - float(h[i, k])) for k in range(int(idx[i])))
        if event[i]:
            ll += np.log(float(h[i, idx[i]]))
        ref -= ll
    assert float(logistic_hazard_nll(logits, idx, event)) == pytest.approx(ref / len(idx), rel=1e-5)


def test_pmf_matches_loop_and_deephit_likelihood():
    logits, idx, event = _data(seed=1)
    p = torch.softmax(torch.cat([logits, torch.zeros(len(idx), 1, dtype=logits.dtype)], 1), 1)
    ref = 0.0
    for i in range(len(idx)):
        j = int(idx[i])
        ref -= np.log(float(p[i, j])) if event[i] else np.log(float(p[i, j:].sum()))
    pmf = float(pmf_nll(logits, idx, event))
    assert pmf == pytest.approx(ref / len(idx), rel=1e-5)
    # DeepHit with K = 1 and alpha = 1 is the PMF likelihood
    dh = float(deephit_loss(logits[:, None, :], idx, event.long(), alpha=1.0))
    assert dh == pytest.approx(pmf, rel=1e-5)
    # pad=False with the explicit extra column gives the same value
    padded = torch.cat([logits, torch.zeros(len(idx), 1, dtype=logits.dtype)], 1)
    assert float(pmf_nll(padded, idx, event, pad=False)) == pytest.approx(pmf, rel=1e-6)


def test_deephit_competing_matches_loop():
    g = torch.Generator().manual_seed(2)
    b, k, t = 10, 2, 5
    logits = torch.randn(b, k, t, generator=g, dtype=torch.float64)
    idx = torch.randint(0, t, (b,), generator=g)
    etype = torch.randint(0, k + 1, (b,), generator=g)
    alpha, sigma = 0.3, 0.5
    flat = torch.cat([logits.reshape(b, -1), torch.zeros(b, 1, dtype=logits.dtype)], 1)
    p = torch.softmax(flat, 1)[:, :-1].reshape(b, k, t).numpy()
    nll = 0.0
    for i in range(b):
        j, c = int(idx[i]), int(etype[i])
        nll -= np.log(p[i, c - 1, j]) if c > 0 else np.log(1 - p[i, :, :j].sum())
    cif = p.cumsum(2)
    rank = 0.0
    for c in range(k):
        for i in range(b):
            if int(etype[i]) != c + 1:
                continue
            for j in range(b):
                ok = idx[j] > idx[i] or (idx[j] == idx[i] and int(etype[j]) == 0)
                if ok:
                    rank += np.exp(-(cif[i, c, idx[i]] - cif[j, c, idx[i]]) / sigma)
    ref = alpha * nll / b + (1 - alpha) * rank / (b * b)
    ours = deephit_loss(logits, idx, etype, alpha=alpha, sigma=sigma)
    assert float(ours) == pytest.approx(ref, rel=1e-5)
    assert float(deephit_loss(logits, idx, etype, alpha=alpha, ranking=False)) == pytest.approx(
        nll / b, rel=1e-5
    )


@pytest.mark.parametrize("fn", ["lh", "pmf", "deephit"])
def test_losses_float32_under_autocast_and_no_events(fn):
    logits = torch.randn(8, 4, requires_grad=True)
    idx = torch.randint(0, 4, (8,))
    event = torch.zeros(8, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x = logits.to(torch.bfloat16)
        if fn == "lh":
            loss = logistic_hazard_nll(x, idx, event)
        elif fn == "pmf":
            loss = pmf_nll(x, idx, event)
        else:
            loss = deephit_loss(x[:, None, :], idx, event.long())
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(logits.grad).all()


def test_bad_idx_raises():
    with pytest.raises(ValueError, match="discretize"):
        logistic_hazard_nll(torch.randn(3, 4), torch.tensor([0, 4, 1]), torch.ones(3))
