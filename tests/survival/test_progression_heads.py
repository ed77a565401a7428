"""Progression heads: multi-task OS + PFS, cause-specific Cox, illness-death (contract and math)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from multimodal.survival.heads import HEADS
from multimodal.survival.losses import cox_nll

TIMES = np.linspace(0, 30, 25)


def targets(n=40, seed=0):
    """OS, first event and its cause for ``n`` patients (consistent: first event <= OS time)."""
    g = np.random.default_rng(seed)
    first = g.exponential(6, n).round(1) + 0.1
    etype = g.choice([0, 1, 2], n, p=[0.3, 0.45, 0.25])
    etype[:3] = [1, 2, 0]
    time = np.where(etype == 1, first + g.exponential(5, n).round(1) + 0.1, first)
    event = np.where(etype == 2, True, (etype == 1) & (g.random(n) < 0.6))
    return {
        "time": torch.as_tensor(time, dtype=torch.float32),
        "event": torch.as_tensor(event),
        "pfs_time": torch.as_tensor(first, dtype=torch.float32),
        "pfs_event": torch.as_tensor(etype > 0),
        "event_type": torch.as_tensor(etype),
    }


def for_head(head, tg):
    return {k: tg[k] for k in head.targets}


@pytest.mark.parametrize(
    ("name", "width"), [("multitask_cox", 2), ("cause_specific_cox", 2), ("illness_death_cox", 3)]
)
def test_progression_head_contract(name, width):
    head = HEADS.get(name)(6)
    assert head.n_offsets == width and head.supports_offset
    x = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))
    tg = targets()
    out = head(x)
    assert out.shape == (40, width)
    loss = head.loss(out, **for_head(head, tg))
    assert loss.shape == () and loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in head.parameters())
    head.fit_baseline(out.detach(), **for_head(head, tg))
    s = head.survival(out, TIMES)
    assert s.shape == (40, len(TIMES)) and (s >= 0).all() and (s <= 1).all()
    assert (s[:, 1:] <= s[:, :-1] + 1e-6).all() and torch.allclose(s[:, 0], torch.ones(40))
    assert 0.0 <= head.score(out, **for_head(head, tg)) <= 1.0
    # the fitted baseline travels in the state dict
    clone = HEADS.get(name)(6)
    clone.load_state_dict(head.state_dict())
    assert torch.equal(clone.survival(out, TIMES), s)


def test_missing_targets_say_what_is_needed():
    head = HEADS.get("multitask_cox")(4)
    out = head(torch.randn(8, 4))
    with pytest.raises(ValueError, match="needs pfs_time"):
        head.loss(out, torch.rand(8), torch.ones(8, dtype=torch.bool))
    head = HEADS.get("cause_specific_cox")(4)
    with pytest.raises(ValueError, match="needs event_type"):
        head.loss(head(torch.randn(8, 4)), torch.rand(8), torch.ones(8, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="fit_baseline"):
        head.cif(head(torch.randn(8, 4)), [1.0])


def test_multitask_loss_with_zero_pfs_weight_is_the_os_loss():
    tg = targets()
    head = HEADS.get("multitask_cox")(6, task_weights={"pfs": 0.0})
    out = head(torch.randn(40, 6)).detach()
    loss = head.loss(out, **for_head(head, tg))
    assert float(loss) == float(cox_nll(out[:, 0], tg["time"], tg["event"]))
    both = HEADS.get("multitask_cox")(6, task_weights={"os": 1.0, "pfs": 0.5})
    expected = cox_nll(out[:, 0], tg["time"], tg["event"]) + 0.5 * cox_nll(
        out[:, 1], tg["pfs_time"], tg["pfs_event"]
    )
    assert float(both.loss(out, **for_head(both, tg))) == pytest.approx(float(expected))


def test_multitask_uncertainty_weights_are_learned():
    tg = targets()
    head = HEADS.get("multitask_cox")(6, weighting="uncertainty")
    out = head(torch.randn(40, 6))
    with torch.no_grad():  # at s = 0 the loss is the plain sum
        plain = cox_nll(out[:, 0], tg["time"], tg["event"]) + cox_nll(
            out[:, 1], tg["pfs_time"], tg["pfs_event"]
        )
    loss = head.loss(out, **for_head(head, tg))
    assert float(loss.detach()) == pytest.approx(float(plain))
    loss.backward()
    assert head.log_vars.grad is not None and (head.log_vars.grad != 0).all()


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"task_weights": {"dss": 1.0}}, "unknown task"),
        ({"task_weights": {"os": 0, "pfs": 0}}, "> 0"),
        ({"weighting": "learned"}, "weighting"),
    ],
)
def test_multitask_bad_options(options, match):
    with pytest.raises(ValueError, match=match):
        HEADS.get("multitask_cox")(4, **options)


def test_cause_specific_loss_is_the_joint_partial_likelihood():
    tg = targets()
    head = HEADS.get("cause_specific_cox")(6)
    out = head(torch.randn(40, 6)).detach()
    k = tg["event_type"]
    total = sum(cox_nll(out[:, c - 1], tg["time"], k == c, reduction="sum") for c in (1, 2))
    assert float(head.loss(out, **for_head(head, tg))) == pytest.approx(
        float(total / (k > 0).sum())
    )


def test_cause_specific_cif_partitions_probability_and_orders_risk():
    tg = targets(200, seed=1)
    head = HEADS.get("cause_specific_cox")(6)
    out = torch.zeros(200, 2)
    out[:, 0] = torch.linspace(-1, 1, 200)  # increasing progression hazard ratio
    head.fit_baseline(out, **for_head(head, tg))
    cif = head.cif(out, TIMES)
    s = head.survival(out, TIMES)
    assert torch.allclose(s + cif.sum(1), torch.ones_like(s), atol=1e-5)
    assert (torch.diff(cif, dim=-1) >= -1e-6).all()
    assert (torch.diff(cif[:, 0, -1]) >= -1e-6).all()  # higher risk, more progression
    assert (torch.diff(cif[:, 1, -1]) <= 1e-6).all()  # and less death without progression


def test_illness_death_states_sum_to_one_and_match_the_curves():
    torch.manual_seed(0)  # head initialisation and inputs; other tests move the global RNG
    tg = targets(120, seed=2)
    head = HEADS.get("illness_death_cox")(6)
    out = head(torch.randn(120, 6)).detach()
    head.fit_baseline(out, **for_head(head, tg))
    p = head.state_probabilities(out, TIMES)
    assert p.shape == (120, 3, len(TIMES))
    assert torch.allclose(p.sum(1), torch.ones(120, len(TIMES), dtype=torch.float64), atol=1e-12)
    assert torch.allclose(p[:, :, 0], p.new_tensor([1.0, 0.0, 0.0]).expand(120, 3))
    os_ = head.survival(out, TIMES)
    assert torch.allclose(os_.double(), p[:, 0] + p[:, 1], atol=1e-6)
    cif = head.cif(out, TIMES).double()
    # progression-free = 1 - CIF(progression) - CIF(death without progression)
    assert torch.allclose(p[:, 0], 1 - cif.sum(1), atol=1e-6)
    risk = head.risk(out).numpy()
    assert np.isfinite(risk).all()
    # risk is minus the restricted mean overall survival: it ranks patients like their OS curve
    rank = np.argsort(np.argsort(risk))
    rank_os = np.argsort(np.argsort(-os_[:, len(TIMES) // 2].numpy()))
    assert np.corrcoef(rank, rank_os)[0, 1] > 0.9
