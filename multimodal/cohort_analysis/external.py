"""External validation: fit on one cohort, report on another (e.g. train on LUAD, test on LUSC).

The development cohort A is summarised by the run's out-of-fold predictions (each patient
predicted by a model that did not train on it), or by the ensemble's predictions on ``cohort_a``
when given. The external cohort B is predicted by the ensemble. For each cohort: discrimination
(Harrell's C with a bootstrap CI) and, at each horizon, calibration-in-the-large (mean predicted
S(h) vs Kaplan-Meier observed S(h)) and the grouped calibration index. Drift rows compare them:
``c_index_change = C_B - C_A`` and ``calibration_drift = error_B - error_A`` (error = predicted -
observed survival; positive drift = the model is more optimistic on B than on A).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohort_analysis._inputs import (
    as_predictions,
    kaplan_meier_at,
    survival_at,
    validation_rows,
)
from multimodal.cohort_analysis.subgroups import _c_index

__all__ = ["external_validation"]


def _metrics(
    name: str, frame: pd.DataFrame, horizons: list[float], n_boot: int, seed: int
) -> list[dict[str, Any]]:
    from multimodal.survival.calibration import calibration_at_horizon

    t, e, r = (frame[c].to_numpy(float) for c in ("time", "event", "risk"))
    e = e.astype(bool)
    c, lo, hi = _c_index(t, e, r, n_boot, seed)
    rows = [
        {"cohort": name, "metric": "n", "horizon": np.nan, "value": len(frame)},
        {"cohort": name, "metric": "events", "horizon": np.nan, "value": int(e.sum())},
        {
            "cohort": name,
            "metric": "c_index",
            "horizon": np.nan,
            "value": c,
            "ci_low": lo,
            "ci_high": hi,
        },
    ]
    for h in horizons:
        pred = survival_at(frame, h)
        obs, olo, ohi = kaplan_meier_at(t, e, h)
        rows += [
            {"cohort": name, "metric": "predicted_surv", "horizon": h, "value": float(pred.mean())},
            {
                "cohort": name,
                "metric": "observed_surv",
                "horizon": h,
                "value": obs,
                "ci_low": olo,
                "ci_high": ohi,
            },
            {
                "cohort": name,
                "metric": "calibration_error",
                "horizon": h,
                "value": float(pred.mean()) - obs,
            },
        ]
        if h < t.max() and len(t) >= 20:
            cal = calibration_at_horizon(t, e, pred, h, n_groups=min(10, len(t) // 20))
            rows.append({"cohort": name, "metric": "ici", "horizon": h, "value": cal.ici})
    return rows


def external_validation(
    model: Any,
    cohort_b: Any,
    cohort_a: Any = None,
    horizons: Sequence[float] | None = None,
    n_boot: int = 200,
    seed: int = 0,
    names: tuple[str, str] = ("development", "external"),
) -> pd.DataFrame:
    """Metrics of a trained model on its development cohort and on an external cohort, and the
    drift between them.

    Parameters
    ----------
    model : TrainedModel or run folder.
    cohort_b : the external cohort.
    cohort_a : the development cohort (default: the run's out-of-fold predictions).
    horizons : times for calibration (default: the config's ``eval.horizons`` that lie inside
        both cohorts' follow-up).
    n_boot : bootstrap replicates of the C-index CIs.
    names : labels of the two cohorts in the ``cohort`` column.

    Returns
    -------
    Tidy DataFrame ``cohort, metric, horizon, value, ci_low, ci_high``: metrics ``n, events,
    c_index, predicted_surv, observed_surv, calibration_error, ici`` per cohort, then rows with
    ``cohort == "drift"``: ``c_index_change`` and ``calibration_drift`` per horizon.
    """
    from multimodal.models.run import load_run

    if isinstance(model, (str, Path)):
        model = load_run(model)
    if horizons is None:
        horizons = list(model.config.eval.horizons or [])
    horizons = [float(h) for h in horizons]
    pred_b = as_predictions(model, cohort_b, times=horizons)
    if cohort_a is None:
        pred_a = validation_rows(as_predictions(model.run_dir))
    else:
        pred_a = as_predictions(model, cohort_a, times=horizons)
    last = min(pred_a["time"].max(), pred_b["time"].max())
    dropped = [h for h in horizons if h >= last]
    horizons = [h for h in horizons if h < last]
    if dropped:
        import logging

        logging.getLogger(__name__).warning(
            "horizons %s lie beyond the follow-up of a cohort (%.4g); skipped", dropped, last
        )
    rows = _metrics(names[0], pred_a, horizons, n_boot, seed)
    rows += _metrics(names[1], pred_b, horizons, n_boot, seed)
    table = pd.DataFrame(
        rows, columns=["cohort", "metric", "horizon", "value", "ci_low", "ci_high"]
    )

    def value(cohort: str, metric: str, h: float | None = None) -> float:
        sel = (table["cohort"] == cohort) & (table["metric"] == metric)
        sel &= table["horizon"].isna() if h is None else table["horizon"] == h
        return float(table.loc[sel, "value"].iloc[0])

    drift = [
        {
            "cohort": "drift",
            "metric": "c_index_change",
            "horizon": np.nan,
            "value": value(names[1], "c_index") - value(names[0], "c_index"),
        }
    ]
    for h in horizons:
        drift.append(
            {
                "cohort": "drift",
                "metric": "calibration_drift",
                "horizon": h,
                "value": value(names[1], "calibration_error", h)
                - value(names[0], "calibration_error", h),
            }
        )
    return pd.concat([table, pd.DataFrame(drift)], ignore_index=True)
