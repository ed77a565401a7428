"""Performance of a run from its out-of-fold predictions: discrimination with bootstrap CIs,
calibration at round horizons, Kaplan-Meier by risk group.

Every patient is scored by the fold model that did not train on it (``split == "val"`` rows of
``predictions.csv``; risks centred per fold on the fold's mean training risk). Confidence
intervals are percentile bootstraps over patients of these pooled predictions, seeded; the
run's own per-fold mean and SD (``metrics.json``) are shown beside them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError
from multimodal.robustness import YEAR_IN, horizon_label
from multimodal.survival.calibration import HorizonCalibration, calibration_at_horizon
from multimodal.survival.metrics import bootstrap_ci, harrell_c, td_auc, uno_c

__all__ = [
    "Calibration",
    "calibration_table",
    "discrimination_table",
    "fold_summary",
    "main_horizon",
    "report_horizons",
]

#: Share of patients that must still be followed at a horizon for it to be reported.
MIN_FOLLOWED = 0.1


def report_horizons(
    time: np.ndarray, unit: str, n: int = 3, last: float | None = None
) -> list[float]:
    """``n`` round horizons in the cohort's time unit: 1, 3 and 5 years where at least
    :data:`MIN_FOLLOWED` of the patients are still followed, else the nearest other round ones
    (6 months, 2, 4, 10 years), else quartiles of the observed times; none after ``last`` (the
    last time predictions exist at, when they cannot be recomputed)."""
    per_year = YEAR_IN.get(unit, 12.0)
    t = np.asarray(time, float)
    t = t[np.isfinite(t)]

    def in_unit(years: float) -> float:
        return float(max(round(years * per_year), 1)) if per_year > 1 else float(years)

    def followed(h: float) -> bool:
        inside = last is None or h <= last
        return bool(len(t)) and inside and np.mean(t >= h) >= MIN_FOLLOWED and h < t.max()

    chosen = [h for h in map(in_unit, (1, 3, 5)) if followed(h)]
    for years in (2, 0.5, 4, 10, 0.25):
        h = in_unit(years)
        if len(chosen) < n and followed(h) and h not in chosen:
            chosen.append(h)
    for q in (0.5, 0.25, 0.75):
        h = float(round(np.quantile(t, q))) if len(t) else 0.0
        if len(chosen) < n and followed(h) and h > 0 and h not in chosen:
            chosen.append(h)
    return sorted(chosen)[:n]


def main_horizon(horizons: list[float], unit: str) -> float | None:
    """The horizon closest to 3 years (on a log scale): the one of the summary, the risk groups
    and the subgroup audit."""
    per_year = YEAR_IN.get(unit, 12.0)
    if not horizons:
        return None
    return min(horizons, key=lambda h: abs(np.log(h / (3 * per_year))))


def _metric_rows(
    name: str,
    how: str,
    fn: Callable[..., float],
    arrays: tuple[np.ndarray, ...],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    try:
        if n_boot > 0:
            est, low, high = bootstrap_ci(fn, *arrays, n_boot=n_boot, seed=seed)
        else:
            est, low, high = float(fn(*arrays)), np.nan, np.nan
    except (DataError, ValueError) as exc:
        return {
            "metric": name,
            "estimate": np.nan,
            "low": np.nan,
            "high": np.nan,
            "how": f"{how} (not computed: {exc})",
        }
    return {"metric": name, "estimate": est, "low": low, "high": high, "how": how}


def discrimination_table(
    val: pd.DataFrame,
    horizons: list[float],
    unit: str,
    eval_times: list[float],
    n_boot: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """Harrell's C, Uno's C and the cumulative/dynamic AUC at each horizon and over the run's
    evaluation times, on the pooled out-of-fold predictions ``val`` (``time, event, risk``), each
    with a ``n_boot`` bootstrap 95% CI over patients (``seed``).

    Returns
    -------
    DataFrame ``metric, estimate, low, high, how``.
    """
    t = val["time"].to_numpy(float)
    e = val["event"].to_numpy(bool)
    r = val["risk"].to_numpy(float)
    arrays = (t, e, r)
    # Uno's C and the AUC weight by the censoring distribution; pooled, it is estimated from the
    # same patients (every patient of the cohort, each once)
    rows = [
        _metric_rows("Harrell's C", "pooled out-of-fold risks", harrell_c, arrays, n_boot, seed),
        _metric_rows(
            "Uno's C",
            "pooled; censoring weights from the same patients; truncated at the last time",
            lambda a, b, c: uno_c(a, b, a, b, c),
            arrays,
            n_boot,
            seed,
        ),
    ]
    for h in horizons:
        rows.append(
            _metric_rows(
                f"time-dependent AUC at {horizon_label(h, unit)}",
                "cumulative/dynamic AUC (events by then vs patients still event-free)",
                lambda a, b, c, h=h: td_auc(a, b, a, b, c, [h])[0][0],
                arrays,
                n_boot,
                seed,
            )
        )
    inside = [x for x in eval_times if t.min() < x < t.max()]
    if len(inside) >= 2:
        rows.append(
            _metric_rows(
                "mean time-dependent AUC",
                f"over the run's {len(inside)} evaluation times ({inside[0]:.3g} to {inside[-1]:.3g} {unit})",
                lambda a, b, c: _mean_auc(a, b, c, inside),
                arrays,
                n_boot,
                seed,
            )
        )
    return pd.DataFrame(rows)


def _mean_auc(time: np.ndarray, event: np.ndarray, risk: np.ndarray, times: list[float]) -> float:
    """The mean cumulative/dynamic AUC over ``times``, each inside the follow-up of the pooled
    patients. A bootstrap resample may lack the earliest or latest of them: its mean is over
    the times inside its own follow-up, without a warning for each such resample."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "td_auc: evaluation times", UserWarning)
        return td_auc(time, event, time, event, risk, times, outside="drop")[1]


def fold_summary(metrics: dict[str, Any]) -> pd.DataFrame:
    """The run's own per-fold mean and SD (``metrics.json``): ``metric, mean, sd, folds``; the SD
    is None (undefined, shown as "–") where fewer than two folds have the metric."""
    names = {
        "c_index": "Harrell's C",
        "uno_c": "Uno's C",
        "td_auc": "mean time-dependent AUC",
        "ibs": "integrated Brier score",
    }
    rows = []
    for key, name in names.items():
        if metrics.get(key) is None:
            continue
        per_fold = [f.get(key) for f in metrics.get("folds", [])]
        defined = [v for v in per_fold if v is not None and np.isfinite(v)]
        rows.append(
            {
                "metric": name,
                "mean": metrics[key],
                "sd": metrics.get(f"{key}_std") if len(defined) > 1 else None,
                "folds": ", ".join("–" if v is None else f"{v:.3f}" for v in per_fold),
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Calibration:
    """Calibration of the pooled out-of-fold predictions at one horizon."""

    horizon: float
    label: str
    result: HorizonCalibration
    predicted_mean: float
    observed_km: float


def calibration_table(val: pd.DataFrame, horizons: list[float], unit: str) -> list[Calibration]:
    """Predicted vs Kaplan-Meier observed event probability at each horizon, in quantile groups
    of the prediction (5 groups under 250 patients, else 10). S(horizon) of a patient is its
    ``surv_<horizon>`` column, else interpolated linearly between its ``surv_<t>`` columns."""
    from multimodal.cohort_analysis import survival_at

    out = []
    t = val["time"].to_numpy(float)
    e = val["event"].to_numpy(bool)
    groups = 5 if len(val) < 250 else 10
    for h in horizons:
        s = survival_at(val, h)
        res = calibration_at_horizon(t, e, s, h, n_groups=groups)
        km = _km_at(t, e, h)
        out.append(Calibration(h, horizon_label(h, unit), res, float(np.mean(1 - s)), 1 - km))
    return out


def _km_at(t: np.ndarray, e: np.ndarray, h: float) -> float:
    from multimodal.survival import kaplan_meier

    km_t, km_s = kaplan_meier(t, e)
    pos = np.searchsorted(km_t, h, side="right") - 1
    return 1.0 if pos < 0 else float(km_s[pos])
