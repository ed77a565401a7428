"""Competing risks: first-event causes, CIFs against lifelines' Aalen-Johansen, concordance, Brier."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.survival.competing import (
    aalen_johansen,
    cause_specific_c_index,
    cif_brier_score,
    cif_integrated_brier_score,
    competing_c_index,
    cumulative_incidence,
    first_event,
)
from multimodal.survival.heads import HEADS
from multimodal.survival.metrics import brier_score, harrell_c


def competing_data(n=300, seed=0):
    """Untied continuous times (lifelines' Aalen-Johansen jitters ties) with causes 0, 1, 2."""
    rng = np.random.default_rng(seed)
    t = rng.exponential(10.0, n)
    k = rng.choice([0, 1, 2], size=n, p=[0.3, 0.4, 0.3])
    return t, k


def step(knots, values, at):
    pos = np.searchsorted(knots, at, side="right") - 1
    return np.where(pos >= 0, values[..., np.clip(pos, 0, None)], 0.0)


def lifelines_cif(t, k, cause, grid):
    from lifelines import AalenJohansenFitter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ajf = AalenJohansenFitter(calculate_variance=False).fit(t, k, event_of_interest=cause)
    ref = ajf.cumulative_density_
    return step(ref.index.to_numpy(float), ref.to_numpy()[:, 0], grid)


def test_first_event_definition():
    # columns: OS time, death, PFS time, PFS event -> (first time, cause)
    time = np.array([10.0, 10.0, 10.0, 10.0, 10.0, 10.0])
    event = np.array([1, 1, 1, 0, 0, 1])
    pfs_time = np.array([4.0, 10.0, 10.0, 6.0, 10.0, 3.0])
    pfs_event = np.array([1, 1, 0, 1, 0, 0])
    first, etype = first_event(time, event, pfs_time, pfs_event)
    # progression then death; death counted as PFS event; death with PFS censored at death;
    # progression, alive; censored; PFS follow-up ended before death (censored at 3)
    assert etype.tolist() == [1, 2, 2, 1, 0, 0]
    assert first.tolist() == [4.0, 10.0, 10.0, 6.0, 10.0, 3.0]


def test_first_event_matches_synthetic_cohort_event_type():
    from multimodal.data.synth import _outcomes

    rng = np.random.default_rng(1)
    risk = rng.normal(size=2000)
    out = _outcomes(0, 2000, risk, 0.7 * risk + rng.normal(size=2000) * 0.6, np.zeros(2000, int))
    first, etype = first_event(out.time, out.event, out.pfs_time, out.pfs_event)
    # the generator's own labels; ties of progression and death after rounding to 0.01 may differ
    assert np.mean(etype == out.event_type) > 0.995
    assert np.allclose(first, out.pfs_time)


def test_aalen_johansen_matches_lifelines():
    t, k = competing_data()
    times, cif, surv = aalen_johansen(t, k)
    grid = np.linspace(0, 40, 81)
    for cause in (1, 2):
        ours = step(times, cif[cause - 1], grid)
        # both are the same product-limit estimator: equal up to float rounding
        np.testing.assert_allclose(ours, lifelines_cif(t, k, cause, grid), atol=1e-10)
    np.testing.assert_allclose(surv + cif.sum(0), 1.0, atol=1e-12)


def test_cause_specific_cox_with_constant_risk_is_aalen_johansen():
    """Cause-specific Breslow baselines at zero risk are Nelson-Aalen: the CIF is Aalen-Johansen."""
    t, k = competing_data(seed=3)
    head = HEADS.get("cause_specific_cox")(4)
    outputs = torch.zeros(len(t), 2, dtype=torch.float64)
    head.fit_baseline(
        outputs, torch.as_tensor(t), torch.as_tensor(k > 0), event_type=torch.as_tensor(k)
    )
    grid = np.linspace(0, 40, 81)
    cif = head.cif(outputs[:2], grid).double().numpy()
    for cause in (1, 2):
        # float32 output of the head: agreement to 1e-6
        np.testing.assert_allclose(cif[0, cause - 1], lifelines_cif(t, k, cause, grid), atol=1e-6)
    s = head.survival(outputs[:2], grid).numpy()
    np.testing.assert_allclose(s + cif.sum(1), 1.0, atol=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 4), st.integers(1, 30), st.floats(0.0, 2.0), st.integers(0, 2**31 - 1))
def test_cumulative_incidence_is_a_partition(k, m, scale, seed):
    rng = np.random.default_rng(seed)
    d = torch.as_tensor(rng.exponential(scale + 1e-9, size=(3, k, m)))  # increments may exceed 1
    surv, cif = cumulative_incidence(d)
    assert torch.allclose(surv + cif.sum(-2), torch.ones_like(surv), atol=1e-12)
    assert (surv >= -1e-15).all() and (torch.diff(surv, dim=-1) <= 1e-15).all()
    assert (torch.diff(cif, dim=-1) >= -1e-15).all()


def test_cumulative_incidence_rejects_negative_increments():
    with pytest.raises(ValueError, match=">= 0"):
        cumulative_incidence(torch.tensor([[[0.1, -0.2]]]))


def wolbers_brute_force(t, k, r, cause):
    conc = comp = 0.0
    for i in range(len(t)):
        if k[i] != cause:
            continue
        for j in range(len(t)):
            if j == i:
                continue
            if t[j] > t[i] or (k[j] not in (0, cause)):
                comp += 1
                conc += 1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0.0
    return conc / comp


def test_competing_c_index_matches_wolbers_definition():
    rng = np.random.default_rng(4)
    t = rng.exponential(5, 60).round(1)
    k = rng.choice([0, 1, 2], 60)
    r = rng.normal(size=60).round(1)  # ties in risk count 1/2
    t_strict = t + np.arange(60) * 1e-6  # brute force above uses strict time order only
    for cause in (1, 2):
        assert competing_c_index(t_strict, k, r, cause) == pytest.approx(
            wolbers_brute_force(t_strict, k, r, cause), abs=1e-12
        )
        assert cause_specific_c_index(t, k, r, cause) == harrell_c(t, k == cause, r)


def test_cif_brier_hand_computed():
    # training data: censoring at 2 and 5 among 5 patients -> G(t) = 1 to 2, 3/4 from 2, 3/8 from 5
    train_t = np.array([1.0, 2.0, 3.0, 5.0, 6.0])
    train_k = np.array([1, 0, 2, 0, 1])
    # test patients: progression at 1, death at 3, censored at 3.5, alive at 6
    t = np.array([1.0, 3.0, 3.5, 6.0])
    k = np.array([1, 2, 0, 0])
    f = np.array([[0.5], [0.2], [0.4], [0.1]])  # predicted progression CIF at t = 4
    tt, bs = cif_brier_score(train_t, train_k, t, k, f, [4.0], cause=1)
    g_t = 0.75  # G(4)
    expected = (
        (1 - 0.5) ** 2 / 1.0  # progression at 1 <= 4, G(1-) = 1
        + (0 - 0.2) ** 2 / 0.75  # death at 3 <= 4, known not progressed; G(3-) = 3/4
        + 0.0  # censored at 3.5 before 4: weight 0
        + (0 - 0.1) ** 2 / g_t  # still event-free at 4
    ) / 4
    assert tt.tolist() == [4.0]
    assert bs[0] == pytest.approx(expected, abs=1e-12)


def test_cif_brier_single_cause_equals_sksurv_brier():
    rng = np.random.default_rng(5)
    n = 200
    t_ev, t_c = rng.exponential(8, n), rng.exponential(12, n)
    t = np.minimum(t_ev, t_c)
    k = (t_ev <= t_c).astype(int)
    surv = np.exp(-np.outer(rng.uniform(0.05, 0.2, n), [2.0, 5.0, 9.0]))
    times = np.array([2.0, 5.0, 9.0])
    train, test = slice(0, 120), slice(120, None)
    _, ours = cif_brier_score(t[train], k[train], t[test], k[test], 1 - surv[test], times, 1)
    _, ref = brier_score(t[train], k[train] == 1, t[test], k[test] == 1, surv[test], times)
    np.testing.assert_allclose(ours, ref, atol=1e-10)  # untied times: the same estimator
    ibs = cif_integrated_brier_score(t[train], k[train], t[test], k[test], 1 - surv[test], times, 1)
    assert ibs == pytest.approx(np.trapezoid(ours, times) / 7.0)


def test_cif_brier_checks_its_inputs():
    t, k = competing_data(50)
    with pytest.raises(ValueError, match="cif must have shape"):
        cif_brier_score(t, k, t, k, np.zeros((50, 3)), [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="outside the follow-up"):
        cif_brier_score(t, k, t, k, np.zeros((50, 1)), [1e6], 1)
