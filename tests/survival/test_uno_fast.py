"""Our O(n log n) Uno's C against scikit-survival's ``concordance_index_ipcw`` (issue #19)."""

from __future__ import annotations

import numpy as np
import pytest
from _reference_data import reference_datasets

from multimodal.exceptions import DataError
from multimodal.survival.metrics import uno_c

# Both sides sum the same pair weights in a different order: float rounding only.
TOL = 1e-10


def sksurv_uno(tr_t, tr_e, t, e, r, tau=None):
    """The previous ``uno_c``: truncate the test data at tau, then call sksurv (tied_tol=0)."""
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    cap = float(np.max(tr_t))
    tau = cap if tau is None else min(float(tau), cap)
    t_cut = np.where(t < tau, t, tau)
    e_cut = np.asarray(e, bool) & (t < tau)
    return concordance_index_ipcw(
        Surv.from_arrays(np.asarray(tr_e, bool), tr_t),
        Surv.from_arrays(e_cut, t_cut),
        r,
        tau=tau,
        tied_tol=0.0,
    )[0]


def cohort(n, seed, time_ties=False, risk_ties=False, censor=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x))
    c = rng.exponential(censor / max(1e-3, 1 - censor) * np.exp(-x).mean() + 1e-9, n)
    time = np.minimum(t, c)
    if time_ties:  # coarse grid: many events and censorings at the same times
        time = np.ceil(time * 4) / 4
    risk = x + rng.normal(scale=0.5, size=n)
    if risk_ties:
        risk = np.round(risk)
    return time, t <= c, risk


@pytest.fixture(scope="module")
def reference_data():
    """The package datasets of tests/survival/test_metrics.py, risk from a ridge Cox fit."""
    return reference_datasets()


@pytest.mark.parametrize("time_ties", [False, True])
@pytest.mark.parametrize("risk_ties", [False, True])
@pytest.mark.parametrize("censor", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("tau_q", [None, 0.5, 0.9])
def test_matches_sksurv_on_random_cohorts(time_ties, risk_ties, censor, tau_q):
    seed = int(time_ties) + 2 * int(risk_ties) + int(10 * censor)
    tr_t, tr_e, _ = cohort(400, seed, time_ties, risk_ties, censor)
    t, e, r = cohort(300, seed + 100, time_ties, risk_ties, censor)
    tau = None if tau_q is None else float(np.quantile(np.unique(t), tau_q))
    assert uno_c(tr_t, tr_e, t, e, r, tau=tau) == pytest.approx(
        sksurv_uno(tr_t, tr_e, t, e, r, tau), abs=TOL
    )


@pytest.mark.parametrize("seed", range(20))
def test_matches_sksurv_on_small_heavily_tied_cohorts(seed):
    # few distinct times and risks: ties between events, censorings and risks everywhere
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 60))
    tr_t = rng.integers(1, 8, 2 * n).astype(float)
    tr_e = rng.random(2 * n) < 0.6
    t = rng.integers(0, 9, n).astype(float)
    e = rng.random(n) < 0.6
    e[0], t[0] = True, 1.0  # at least one event with later patients
    t[1] = 8.0
    r = rng.integers(0, 4, n).astype(float)
    tau = [None, 4.0, 6.5][seed % 3]
    assert uno_c(tr_t, tr_e, t, e, r, tau=tau) == pytest.approx(
        sksurv_uno(tr_t, tr_e, t, e, r, tau), abs=TOL
    )


def test_matches_sksurv_with_all_training_events_and_constant_risk():
    tr_t, _, _ = cohort(200, 1)
    tr_e = np.ones(tr_t.size, bool)  # no censoring: G = 1
    t, e, r = cohort(150, 2, time_ties=True)
    for risk in (r, np.zeros_like(r)):
        assert uno_c(tr_t, tr_e, t, e, risk) == pytest.approx(
            sksurv_uno(tr_t, tr_e, t, e, risk), abs=TOL
        )
    assert uno_c(tr_t, tr_e, t, e, np.zeros_like(r)) == pytest.approx(0.5, abs=TOL)


@pytest.mark.parametrize("name", ["whas500", "gbsg2", "veterans", "rossi"])
def test_matches_sksurv_on_reference_datasets(reference_data, name):
    t, e, r = reference_data[name]
    half = np.arange(t.size) % 2 == 0
    for tau in (None, float(np.quantile(t, 0.5)), float(np.quantile(t, 0.8))):
        # the cohort as its own training set, and train != test (alternate patients)
        assert uno_c(t, e, t, e, r, tau=tau) == pytest.approx(
            sksurv_uno(t, e, t, e, r, tau), abs=TOL
        )
        args = (t[half], e[half], t[~half], e[~half], r[~half])
        assert uno_c(*args, tau=tau) == pytest.approx(sksurv_uno(*args, tau), abs=TOL)


def test_accepts_torch_and_is_invariant_to_monotone_risk_transforms():
    import torch

    tr_t, tr_e, _ = cohort(300, 3)
    t, e, r = cohort(200, 4, time_ties=True, risk_ties=True)
    ref = uno_c(tr_t, tr_e, t, e, r)
    assert uno_c(torch.tensor(tr_t), torch.tensor(tr_e), t, e, torch.tensor(r)) == ref
    assert uno_c(tr_t, tr_e, t, e, np.exp(r) * 3 - 1) == pytest.approx(ref, abs=1e-12)
    perm = np.random.default_rng(0).permutation(t.size)
    assert uno_c(tr_t, tr_e, t[perm], e[perm], r[perm]) == pytest.approx(ref, abs=1e-12)


def test_errors():
    tr_t, tr_e, _ = cohort(100, 5)
    t, e, r = cohort(80, 6)
    with pytest.raises(DataError, match="no test events before tau"):
        uno_c(tr_t, tr_e, t, np.zeros_like(e), r)
    with pytest.raises(DataError, match="no test events before tau"):
        uno_c(tr_t, tr_e, t, e, r, tau=float(t.min()))
    with pytest.raises(DataError, match="all training samples are censored"):
        uno_c(tr_t, np.zeros_like(tr_e), t, e, r)
    # the only event is the last test time: no comparable pair (sksurv raises too)
    with pytest.raises(DataError, match="no comparable pairs"):
        uno_c(
            [1.0, 2.0, 5.0], [True, False, True], [1.0, 2.0, 3.0], [False, False, True], [1, 2, 3]
        )
    with pytest.raises(ValueError, match="pass one risk per patient"):
        uno_c(tr_t, tr_e, t, e, r[:-1])
    with pytest.raises(ValueError, match="risks must be finite"):
        uno_c(tr_t, tr_e, t, e, np.r_[np.nan, r[1:]])
