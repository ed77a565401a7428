"""Metrics against scikit-survival, lifelines and brute-force formulas; properties; MCAT table."""

from __future__ import annotations

import time as _time
import warnings

import numpy as np
import pandas as pd
import pytest
from _reference_data import reference_datasets
from hypothesis import given, settings
from hypothesis import strategies as st

from multimodal.exceptions import DataError
from multimodal.survival.curves import kaplan_meier
from multimodal.survival.metrics import (
    bootstrap_ci,
    brier_score,
    compare_c_index,
    default_eval_times,
    harrell_c,
    integrated_brier_score,
    td_auc,
    uno_c,
)

DATA = reference_datasets()


def synthetic(n, seed, ties=False, censor=0.5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    t = rng.exponential(np.exp(-x))
    c = rng.exponential(np.exp(-x).mean() / max(1e-3, 1 - censor) * censor + 1e-9, n)
    time = np.minimum(t, c)
    event = t <= c
    if ties:
        time = np.ceil(time * 4) / 4
    risk = x + rng.normal(scale=0.5, size=n)
    if ties:
        risk = np.round(risk)
    return time, event, risk


CASES = {
    **DATA,
    "ties": synthetic(400, 1, ties=True),
    "censor_heavy": synthetic(400, 2, censor=0.85),
}


@pytest.mark.parametrize("name", list(CASES))
def test_harrell_matches_sksurv_and_lifelines(name):
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    t, e, r = CASES[name]
    ours = harrell_c(t, e, r)
    # tied_tol=0: exact ties in risk (sksurv's default 1e-8 also calls near-equal values ties)
    assert ours == pytest.approx(concordance_index_censored(e, t, r, tied_tol=0)[0], abs=1e-12)
    # lifelines wants a score where higher = longer survival: pass -risk
    assert ours == pytest.approx(concordance_index(t, -r, e), abs=1e-12)


def test_harrell_100k_patients_is_fast():
    t, e, r = synthetic(100_000, 3)
    start = _time.perf_counter()
    c = harrell_c(t, e, r)
    assert 0.5 < c < 1 and _time.perf_counter() - start < 5.0


@settings(max_examples=50, deadline=None)
@given(
    n=st.integers(2, 60),
    seed=st.integers(0, 10_000),
    transform=st.sampled_from([np.exp, lambda v: 3 * v - 7, np.arctan, lambda v: v**3]),
)
def test_harrell_bounds_and_monotone_invariance(n, seed, transform):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 6, n).astype(float)
    e = rng.random(n) < 0.5
    r = rng.normal(size=n).round(1)
    try:
        c = harrell_c(t, e, r)
    except DataError:
        return
    assert 0.0 <= c <= 1.0
    assert harrell_c(t, e, transform(r)) == pytest.approx(c, abs=1e-12)
    assert harrell_c(t, e, -r) == pytest.approx(1 - c, abs=1e-12)


def test_harrell_no_comparable_pairs_raises():
    with pytest.raises(DataError, match="comparable"):
        harrell_c([1.0, 2.0], [False, False], [0.1, 0.2])


def _censoring_km(train_t, train_e):
    times, g = kaplan_meier(train_t, ~train_e)
    return lambda s: np.array(
        [g[np.searchsorted(times, v, side="right") - 1] if v >= times[0] else 1.0 for v in s]
    )


def brute_uno(train_t, train_e, t, e, r, tau):
    g = _censoring_km(train_t, train_e)
    num = den = 0.0
    for i in np.flatnonzero(e & (t < tau)):
        w = 1.0 / g([t[i]])[0] ** 2
        comp = t > t[i]
        num += w * ((r[i] > r[comp]).sum() + 0.5 * (r[i] == r[comp]).sum())
        den += w * comp.sum()
    return num / den


def test_uno_c_matches_sksurv_and_brute_force():
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    tr_t, tr_e, _ = synthetic(500, 4)
    t, e, r = synthetic(300, 5)
    tau = float(np.quantile(t, 0.8))
    ours = uno_c(tr_t, tr_e, t, e, r, tau=tau)
    sk = concordance_index_ipcw(
        Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(e, t), r, tau=tau, tied_tol=0
    )[0]
    assert ours == pytest.approx(sk, abs=1e-12)
    # continuous times, no ties: sksurv's reverse KM equals the KM of the censoring indicator
    assert ours == pytest.approx(brute_uno(tr_t, tr_e, t, e, r, tau), abs=1e-6)


def test_uno_c_default_tau_truncates_beyond_training_follow_up():
    tr_t, tr_e, _ = synthetic(200, 6)
    t, e, r = synthetic(200, 7)
    t = t * 3  # test follow-up much longer than training
    assert 0 <= uno_c(tr_t, tr_e, t, e, r) <= 1


def test_td_auc_matches_sksurv():
    from sksurv.metrics import cumulative_dynamic_auc
    from sksurv.util import Surv

    t, e, r = DATA["whas500"]
    times = default_eval_times(t, train_time=t)
    auc, mean = td_auc(t, e, t, e, r, times)
    ref_auc, ref_mean = cumulative_dynamic_auc(
        Surv.from_arrays(e, t), Surv.from_arrays(e, t), r, times
    )
    np.testing.assert_allclose(auc, ref_auc, atol=1e-12)
    assert mean == pytest.approx(ref_mean, abs=1e-12)


def test_td_auc_where_undefined_raises_and_the_bootstrap_skips_it():
    """No event by a time (or nobody event-free after it): sksurv divides by zero there. The
    AUC is undefined, so td_auc says so instead of warning and returning NaN, and bootstrap_ci
    skips the resamples where it happens."""
    t = np.array([2.0, 3, 4, 5, 6, 7, 8, 9])
    e = np.array([0, 1, 0, 1, 1, 0, 1, 0], bool)
    r = -t
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ValueError, match=r"undefined at times \[2.5\]: no event by then"):
            td_auc(t, e, t, e, r, [2.5, 6.5])
        est, low, high = bootstrap_ci(
            lambda a, b, c: td_auc(a, b, a, b, c, [3.5, 6.5])[1], t, e, r, n_boot=50, seed=0
        )
    assert np.isfinite([est, low, high]).all() and low <= high


def brute_brier(train_t, train_e, t, e, surv, times):
    g = _censoring_km(train_t, train_e)
    out = []
    for k, s in enumerate(times):
        case = (t <= s) & e
        ctrl = t > s
        gi = g(t)
        val = np.where(case, surv[:, k] ** 2 / np.where(case, gi, 1), 0) + np.where(
            ctrl, (1 - surv[:, k]) ** 2 / g([s])[0], 0
        )
        out.append(val.mean())
    return np.array(out)


def test_brier_and_ibs_match_sksurv_and_brute_force():
    from sksurv.metrics import brier_score as sk_brier
    from sksurv.metrics import integrated_brier_score as sk_ibs
    from sksurv.util import Surv

    tr_t, tr_e, _ = synthetic(400, 8)
    t, e, r = synthetic(300, 9)
    times = default_eval_times(t, train_time=tr_t)
    surv = np.exp(-np.outer(np.exp(r), times))  # exponential model S(t|x)
    out_t, scores = brier_score(tr_t, tr_e, t, e, surv, times)
    np.testing.assert_allclose(
        scores, sk_brier(Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(e, t), surv, times)[1]
    )
    np.testing.assert_allclose(scores, brute_brier(tr_t, tr_e, t, e, surv, times), atol=1e-6)
    ibs = integrated_brier_score(tr_t, tr_e, t, e, surv, times)
    assert ibs == pytest.approx(
        sk_ibs(Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(e, t), surv, times)
    )
    assert ibs == pytest.approx(np.trapezoid(scores, out_t) / (out_t[-1] - out_t[0]), rel=1e-10)


def test_eval_times_outside_follow_up_raise_or_drop():
    tr_t, tr_e, _ = synthetic(200, 10)
    t, e, _ = synthetic(100, 11)
    times = np.array([np.median(t), t.max() * 2])
    surv = np.full((100, 2), 0.5)
    with pytest.raises(ValueError, match="outside='drop'"):
        brier_score(tr_t, tr_e, t, e, surv, times)
    with pytest.warns(UserWarning, match="dropping"):
        kept, _ = brier_score(tr_t, tr_e, t, e, surv, times, outside="drop")
    assert kept.tolist() == [times[0]]


def test_bootstrap_ci_and_compare():
    t, e, r = DATA["whas500"]
    est, lo, hi = bootstrap_ci(harrell_c, t, e, r, n_boot=200, seed=1)
    assert est == harrell_c(t, e, r) and lo <= est <= hi
    assert bootstrap_ci(harrell_c, t, e, r, n_boot=50, seed=1) == bootstrap_ci(
        harrell_c, t, e, r, n_boot=50, seed=1
    )
    same = compare_c_index(t, e, r, r, n_boot=100)
    assert same.diff == 0 and same.p_value == 1.0
    noise = np.random.default_rng(0).normal(size=r.size)
    better = compare_c_index(t, e, r, noise, n_boot=300)
    assert better.diff > 0 and better.low > 0 and better.p_value < 0.01


def test_mcat_published_cindex_reproduced(shared_data):
    """Our Harrell C on the MCAT out-of-fold predictions reproduces every published per-fold value
    (within 0.002: MCAT used sksurv with tied_tol=1e-8) and each prediction fold is the val split."""
    from multimodal.evaluation.compare import (
        cindex_by_group,
        load_mcat_oof_predictions,
        load_published_mcat,
    )

    bench = shared_data / "benchmarks"
    preds = load_mcat_oof_predictions(bench / "mcat_iccv2021_oof_predictions.csv.gz")
    pub = load_published_mcat(bench / "published_cindex_mcat_iccv2021.csv")
    ours = cindex_by_group(preds, by=("method", "cancer", "fold"))
    assert len(ours) == 275
    long = pub.melt(
        id_vars=["method", "cancer"],
        value_vars=[f"cindex_fold{k}" for k in range(5)],
        var_name="fold",
        value_name="published",
    )
    long["fold"] = long["fold"].str[-1].astype(int)
    merged = ours.merge(long, on=["method", "cancer", "fold"], validate="one_to_one")
    assert len(merged) == 275
    assert (merged["c_index"] - merged["published"]).abs().max() < 0.002
    for (cancer, fold), grp in preds.groupby(["cancer", "fold"]):
        split = pd.read_csv(
            shared_data
            / "tcga"
            / cancer.lower()
            / "splits"
            / "porpoise_mcat_5fold"
            / f"fold_{fold}.csv"
        )
        val = set(split.loc[split.split == "val", "patient_id"])
        for _, g in grp.groupby("method"):
            assert set(g.patient_id) == val


def test_concordance_counts_give_harrell_c_and_pool_within_groups():
    from multimodal.survival.metrics import concordance_counts

    rng = np.random.default_rng(3)
    t = rng.exponential(size=60).round(1)
    e = rng.random(60) < 0.7
    r = rng.normal(size=60).round(1)  # ties in time and in risk
    agree, comparable = concordance_counts(t, e, r)
    assert comparable > 0 and agree == pytest.approx(harrell_c(t, e, r) * comparable)
    # pooled within two groups = the ratio of the summed counts, never a cross-group pair
    grp = np.arange(60) % 2 == 0
    a1, c1 = concordance_counts(t[grp], e[grp], r[grp])
    a2, c2 = concordance_counts(t[~grp], e[~grp], r[~grp])
    assert c1 + c2 < comparable
    assert a1 / c1 == pytest.approx(harrell_c(t[grp], e[grp], r[grp]))
    assert a2 / c2 == pytest.approx(harrell_c(t[~grp], e[~grp], r[~grp]))
    assert concordance_counts(t[:3], np.zeros(3, bool), r[:3]) == (0.0, 0)
    with pytest.raises(DataError, match="no comparable pairs"):
        harrell_c(t[:3], np.zeros(3, bool), r[:3])
