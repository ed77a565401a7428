"""Heads: the contract of docs/architecture.md, survival curves, baseline persistence."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.exceptions import ConfigError
from multimodal.survival.discrete import make_time_grid
from multimodal.survival.heads import HEADS, CoxHead

CUTS = np.array([0.0, 1.0, 2.5, 4.0, 7.0, 10.0])


def make_head(name, in_features=6):
    cls = HEADS.get(name)
    if name == "cox":
        return cls(in_features)
    if name == "deephit_competing":
        return cls(in_features, cuts=CUTS, n_causes=3)
    return cls(in_features, cuts=CUTS)


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    time = torch.rand(n, generator=g) * 12
    event = torch.rand(n, generator=g) < 0.6
    event[0] = True
    event_type = torch.where(event, torch.randint(1, 4, (n,), generator=g), 0)
    return x, time, event, event_type


def test_registry_names_and_typo():
    assert set(HEADS.names()) == {
        "cox",
        "logistic_hazard",
        "pmf",
        "deephit",
        "deephit_competing",
        # progression heads (tests/survival/test_progression_heads.py)
        "multitask_cox",
        "cause_specific_cox",
        "illness_death_cox",
    }
    with pytest.raises(ConfigError, match="Did you mean 'logistic_hazard'"):
        HEADS.get("logistic_hazards")


@pytest.mark.parametrize("name", ["cox", "logistic_hazard", "pmf", "deephit", "deephit_competing"])
def test_head_contract(name):
    head = make_head(name)
    x, time, event, etype = batch()
    out = head(x)
    expected = {"cox": (16,), "deephit_competing": (16, 3, 5)}.get(name, (16, 5))
    assert tuple(out.shape) == expected
    loss = head.loss(out, time, event, event_type=etype)
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
    assert head.risk(out).shape == (16,)
    head.fit_baseline(out.detach(), time, event)
    times = np.linspace(0, 12, 30)
    s = head.survival(out, times)
    assert s.shape == (16, 30)
    assert (s >= 0).all() and (s <= 1).all()
    assert (s[:, 1:] <= s[:, :-1] + 1e-6).all()
    assert head.supports_offset == (name in ("cox", "logistic_hazard"))
    if name == "deephit_competing":
        cif = head.cif(out, times)
        assert cif.shape == (16, 3, 30)
        assert torch.allclose(cif.sum(1) + s, torch.ones_like(s), atol=1e-5)
        assert (cif[..., 1:] >= cif[..., :-1] - 1e-6).all()


@settings(max_examples=30, deadline=None)
@given(
    name=st.sampled_from(["logistic_hazard", "pmf", "deephit", "deephit_competing"]),
    scale=st.floats(0.01, 50.0),
    seed=st.integers(0, 1000),
)
def test_discrete_survival_bounded_nonincreasing(name, scale, seed):
    head = make_head(name)
    g = torch.Generator().manual_seed(seed)
    shape = (8, 3, 5) if name == "deephit_competing" else (8, 5)
    out = torch.randn(*shape, generator=g) * scale
    s = head.survival(out, torch.linspace(0, 15, 40))
    assert torch.isfinite(s).all() and (s >= 0).all() and (s <= 1).all()
    assert (s[:, 1:] <= s[:, :-1] + 1e-6).all()
    assert torch.allclose(s[:, 0], torch.ones(8))


def test_discrete_risk_is_minus_rmst_and_offset_monotone():
    head = make_head("logistic_hazard")
    out = torch.randn(4, 5)
    grid = torch.linspace(0, 10, 20001)
    s = head.survival(out, grid).double()
    rmst = torch.trapezoid(s, grid.double(), dim=1)
    assert torch.allclose(head.risk(out).double(), -rmst, atol=1e-4)
    offset = torch.tensor([0.0, 0.5, 1.0, 2.0])
    shifted = head.risk(out[:1].repeat(4, 1) + offset[:, None])
    assert (shifted[1:] > shifted[:-1]).all()


def test_cox_survival_and_baseline_match_lifelines_and_persist():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    df = load_rossi()
    cph = CoxPHFitter().fit(df, "week", "arrest")
    x = (df.drop(columns=["week", "arrest"]) - cph._norm_mean).to_numpy(float)
    head = CoxHead(x.shape[1])
    with torch.no_grad():
        head.linear.weight.copy_(torch.tensor(cph.params_.to_numpy())[None, :])
    xt = torch.tensor(x, dtype=torch.float32)
    out = head(xt)
    with pytest.raises(RuntimeError, match="fit_baseline"):
        head.survival(out, [10.0])
    head.fit_baseline(out, torch.tensor(df.week.values), torch.tensor(df.arrest.values))
    times = np.array([5.0, 20.0, 40.0, 52.0])
    ours = head.survival(out[:20], times).numpy()
    ref = cph.predict_survival_function(df.drop(columns=["week", "arrest"]).iloc[:20], times=times)
    # float32 weights/activations: agreement to 1e-5
    np.testing.assert_allclose(ours, ref.to_numpy().T, atol=1e-5)
    restored = CoxHead(x.shape[1])
    restored.load_state_dict(head.state_dict())
    assert torch.equal(restored.baseline_cumhaz, head.baseline_cumhaz)
    np.testing.assert_allclose(restored.survival(out[:20], times).numpy(), ours)


def test_cox_head_bf16_autocast_loss_float32():
    head = CoxHead(6)
    x, time, event, _ = batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(x)
        loss = head.loss(out, time, event)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_discrete_head_bad_cuts_and_missing_event_type():
    with pytest.raises(ValueError, match="make_time_grid"):
        HEADS.get("pmf")(4, cuts=[1.0, 2.0])
    head = make_head("deephit_competing")
    x, time, event, _ = batch()
    with pytest.raises(ValueError, match="event_type"):
        head.loss(head(x), time, event)


def test_heads_train_on_a_grid_from_make_time_grid():
    rng = np.random.default_rng(0)
    t = rng.exponential(5, 64)
    e = rng.random(64) < 0.7
    cuts = make_time_grid(t, e, n_bins=8)
    head = HEADS.get("logistic_hazard")(3, cuts=cuts)
    x = torch.randn(64, 3)
    opt = torch.optim.SGD(head.parameters(), lr=0.5)
    first = None
    for _ in range(30):
        loss = head.loss(head(x), torch.tensor(t), torch.tensor(e))
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
