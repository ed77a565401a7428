"""D-calibration and horizon calibration: hand-computed values and simulated models."""

from __future__ import annotations

import numpy as np
import pytest

from multimodal.survival.calibration import calibration_at_horizon, d_calibration


def simulate(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    rate = np.exp(x)
    t = rng.exponential(1 / rate)
    c = rng.exponential(2.0, n)
    return np.minimum(t, c), t <= c, rate


def test_d_calibration_hand_example():
    # events at S = 0.05 and 0.95 (bins 0 and 9); one censored at S = 0.5 spreads 0.2 to each of
    # bins 0..4 (0.1/0.5 each; its own bin [0.5, 0.6) gets (0.5-0.5)/0.5 = 0)
    stat, p = d_calibration([1, 2, 3], [True, True, False], np.array([0.05, 0.95, 0.5]), n_bins=10)
    counts = np.array([1.2, 0.2, 0.2, 0.2, 0.2, 0, 0, 0, 0, 1.0])
    expected = 0.3
    assert stat == pytest.approx(((counts - expected) ** 2 / expected).sum())
    assert 0 <= p <= 1


def test_d_calibration_true_model_passes_wrong_model_fails():
    time, event, rate = simulate()
    s_true = np.exp(-rate * time)
    assert d_calibration(time, event, s_true)[1] > 0.01
    s_wrong = np.exp(-0.4 * rate * time)  # hazards underestimated
    assert d_calibration(time, event, s_wrong)[1] < 1e-4


def test_d_calibration_from_curves_matches_pointwise():
    time, event, rate = simulate(300, 1)
    grid = np.linspace(0, time.max(), 2001)
    curves = np.exp(-np.outer(rate, grid))
    a = d_calibration(time, event, curves, times=grid)
    b = d_calibration(time, event, np.exp(-rate * time))
    assert a[0] == pytest.approx(b[0], rel=1e-2)
    assert d_calibration(time, event, lambda t: np.exp(-rate * t)) == b
    with pytest.raises(ValueError, match="times"):
        d_calibration(time, event, curves)


def test_calibration_at_horizon_true_vs_wrong():
    time, event, rate = simulate(4000, 2)
    h = 0.5
    good = calibration_at_horizon(time, event, np.exp(-rate * h), h)
    bad = calibration_at_horizon(time, event, np.exp(-0.3 * rate * h), h)
    assert list(good.table.columns) == ["group", "n", "predicted", "observed", "abs_diff"]
    assert len(good.table) == 10 and good.table.n.sum() == 4000
    assert good.ici < 0.03 and bad.ici > 0.1
    assert good.e50 <= good.e90
    with pytest.raises(ValueError, match="horizon"):
        calibration_at_horizon(time, event, np.exp(-rate * h), time.max() + 1)
