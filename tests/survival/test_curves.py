"""Kaplan-Meier and Breslow against lifelines and scikit-survival."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.survival.curves import (
    breslow_baseline,
    kaplan_meier,
    step_function_at,
    step_values,
)


def _datasets():
    from lifelines.datasets import load_rossi
    from sksurv.datasets import load_gbsg2, load_veterans_lung_cancer, load_whas500

    out = {}
    for name, loader in [
        ("whas500", load_whas500),
        ("gbsg2", load_gbsg2),
        ("veterans", load_veterans_lung_cancer),
    ]:
        _, y = loader()
        ev, tm = y.dtype.names
        out[name] = (y[tm].astype(float), y[ev].astype(bool))
    r = load_rossi()
    out["rossi"] = (r.week.to_numpy(float), r.arrest.to_numpy(bool))
    return out


DATA = _datasets()


@pytest.mark.parametrize("name", list(DATA))
def test_kaplan_meier_matches_sksurv_and_lifelines(name):
    from lifelines import KaplanMeierFitter
    from sksurv.nonparametric import kaplan_meier_estimator

    t, e = DATA[name]
    times, surv = kaplan_meier(t, e)
    sk_t, sk_s = kaplan_meier_estimator(e, t)
    np.testing.assert_allclose(times, sk_t)
    np.testing.assert_allclose(surv, sk_s, atol=1e-12)
    kmf = KaplanMeierFitter().fit(t, e)
    ll = kmf.survival_function_.iloc[:, 0]
    np.testing.assert_allclose(surv, ll.loc[times].to_numpy(), atol=1e-12)


def test_breslow_matches_lifelines_baseline():
    from lifelines import CoxPHFitter
    from lifelines.datasets import load_rossi

    df = load_rossi()
    cph = CoxPHFitter().fit(df, "week", "arrest")
    x = df.drop(columns=["week", "arrest"])
    risk = (x - cph._norm_mean).to_numpy(float) @ cph.params_.to_numpy()  # lifelines centres X
    times, cumhaz = breslow_baseline(risk, df.week, df.arrest)
    ref = cph.baseline_cumulative_hazard_.iloc[:, 0]
    np.testing.assert_allclose(cumhaz, ref.loc[times].to_numpy(), rtol=1e-6)


def test_breslow_shift_equivariance():
    rng = np.random.default_rng(0)
    t, e, r = rng.exponential(size=50), rng.random(50) < 0.5, rng.normal(size=50)
    _, h0 = breslow_baseline(r, t, e)
    _, h1 = breslow_baseline(r + 3.0, t, e)
    np.testing.assert_allclose(h1 * np.exp(3.0), h0, rtol=1e-10)


def test_step_values_matches_step_function_at_and_takes_left_limits():
    import torch

    knots = np.array([1.0, 2.0, 4.0])
    values = np.array([[0.9, 0.7, 0.4], [0.8, 0.5, 0.1]])
    at = np.array([0.0, 1.0, 1.5, 2.0, 3.9, 4.0, 9.0])
    for before in (0.0, 1.0):
        expected = step_function_at(
            torch.from_numpy(knots), torch.from_numpy(values), torch.from_numpy(at), before
        ).numpy()
        np.testing.assert_array_equal(step_values(knots, values, at, before=before), expected)
    left = step_values(knots, values[0], at, before=1.0, left_limit=True)
    np.testing.assert_array_equal(left, [1.0, 1.0, 0.9, 0.9, 0.7, 0.7, 0.4])
    empty = step_values(np.zeros(0), np.zeros(0), at)  # no knots: the "before" value everywhere
    np.testing.assert_array_equal(empty, np.zeros(at.size))
