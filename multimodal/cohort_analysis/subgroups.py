"""Subgroup and fairness audit: does the model work as well for every kind of patient?

For each level of sex, age band, site, stage and modality-availability pattern (or any column of
the patient or clinical tables): number of patients and events, event rate, Harrell's C with a
bootstrap CI, and calibration at a horizon (mean predicted vs Kaplan-Meier observed survival).
A subgroup is flagged when it has enough patients and its C-index is clearly worse than its
reference: the CI's upper bound lies below it, or the drop exceeds ``max_drop``.

The reference of a level is the model's C-index *within the levels of the same variable* (only
pairs of patients in the same level count), not the overall C. Grouping by a prognostic variable
such as stage takes away the between-stage differences a model ranks easily, so every stage has a
lower C than the whole cohort even for the true risk; against the within-stage C, only a stage
where the model ranks worse than in the others stands out. For a variable unrelated to outcome
(site, sex) the two references agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.cohort_analysis._inputs import (
    as_predictions,
    kaplan_meier_at,
    survival_at,
    validation_rows,
)
from multimodal.exceptions import DataError

__all__ = ["AGE_BANDS", "DEFAULT_SUBGROUPS", "patient_attributes", "subgroup_report"]

#: Subgroup variables audited by default (those a cohort lacks are skipped).
DEFAULT_SUBGROUPS: tuple[str, ...] = ("sex", "age_band", "site", "stage", "modalities")
#: Age band edges (years) and labels.
AGE_BANDS: tuple[tuple[float, str], ...] = (
    (50, "<50"),
    (60, "50-59"),
    (70, "60-69"),
    (np.inf, "70+"),
)


def _age_band(age: pd.Series) -> pd.Series:
    a = pd.to_numeric(age, errors="coerce")
    edges = [-np.inf] + [e for e, _ in AGE_BANDS]
    band = pd.cut(a, edges, right=False, labels=[lab for _, lab in AGE_BANDS])
    return band.astype(object).where(a.notna(), "unknown")


def patient_attributes(cohort: Any, names: Sequence[str]) -> pd.DataFrame:
    """Subgroup variables per patient (index patient_id), ``"unknown"`` where missing.

    ``age_band`` bins ``age`` (:data:`AGE_BANDS`); ``modalities`` is the availability pattern
    (``"clinical+genomics+report"``); other names are looked up in the patient table, then in the
    clinical tables.
    """
    index = cohort.patients.index.astype(str)
    tables = [cohort.patients] + [
        s.table for s in cohort.sources.values() if getattr(s, "kind", "") == "clinical"
    ]

    def column(name: str) -> pd.Series | None:
        for t in tables:
            if name in t.columns:
                t = t[~t.index.duplicated()]
                return t[name].reindex(index)
        return None

    out = {}
    for name in names:
        if name == "modalities":
            avail = cohort.availability()
            cols = np.asarray(avail.columns)
            pattern = ["+".join(cols[row]) or "none" for row in avail.to_numpy(bool)]
            out[name] = pd.Series(pattern, index=avail.index.astype(str))
            continue
        col = column("age" if name == "age_band" else name)
        if col is None:
            continue
        col = _age_band(col) if name == "age_band" else col
        out[name] = col.astype(object).where(col.notna(), "unknown").astype(str)
    return pd.DataFrame(out, index=index)


def _c_index(t: np.ndarray, e: np.ndarray, r: np.ndarray, n_boot: int, seed: int):
    from multimodal.survival.metrics import bootstrap_ci, harrell_c

    if e.sum() < 2 or len(t) < 3:
        return np.nan, np.nan, np.nan
    try:
        if n_boot <= 0:
            return float(harrell_c(t, e, r)), np.nan, np.nan
        return bootstrap_ci(harrell_c, t, e, r, n_boot=n_boot, seed=seed)
    except (DataError, ValueError):
        return np.nan, np.nan, np.nan


def _row(part: pd.DataFrame, horizon: float, n_boot: int, seed: int) -> dict[str, Any]:
    t, e = part["time"].to_numpy(float), part["event"].to_numpy(bool)
    c, lo, hi = _c_index(t, e, part["risk"].to_numpy(float), n_boot, seed)
    pred = float(part["surv_h"].mean()) if "surv_h" in part else np.nan
    obs = kaplan_meier_at(t, e, horizon)[0] if len(t) else np.nan
    return {
        "n": len(part),
        "events": int(e.sum()),
        "event_rate": float(e.mean()) if len(e) else np.nan,
        "c_index": c,
        "c_low": lo,
        "c_high": hi,
        "horizon": horizon,
        "predicted_surv": pred,
        "observed_surv": obs,
        "calibration_error": pred - obs,
    }


def _within_levels_c(frame: pd.DataFrame, var: str) -> float:
    """Harrell's C over the pairs of patients in the same level of ``var`` (ties in risk 1/2)."""
    from multimodal.survival.metrics import concordance_counts

    agree = comparable = 0.0
    for _, part in frame.groupby(var, sort=False):
        a, c = concordance_counts(part["time"], part["event"], part["risk"])
        agree, comparable = agree + a, comparable + c
    return float(agree / comparable) if comparable else float("nan")


def subgroup_report(
    source: Any,
    cohort: Any,
    by: Sequence[str] = DEFAULT_SUBGROUPS,
    horizon: float | None = None,
    n_boot: int = 200,
    min_n: int = 100,
    max_drop: float = 0.05,
    seed: int = 0,
) -> pd.DataFrame:
    """C-index, calibration and event rate per subgroup, with flags where the model does worse.

    Parameters
    ----------
    source : run folder (out-of-fold predictions), predictions DataFrame, or TrainedModel.
    cohort : the patients (subgroup variables, outcomes).
    by : subgroup variables (:data:`DEFAULT_SUBGROUPS`; any patient/clinical column works).
    horizon : time of the calibration check (default: the cohort's median observed time).
    n_boot : bootstrap replicates of the C-index CIs (0 = no CI).
    min_n : smallest subgroup that can be flagged (C-indices of small groups are noisy).
    max_drop : flag when ``reference C - subgroup C`` exceeds it (the reference: the C within the
        levels of the same variable; see the module docstring).
    seed : bootstrap seed.

    Returns
    -------
    DataFrame: first row ``variable = level = "all"``, then one row per (variable, level):
    ``variable, level, n, events, event_rate, c_index, c_low, c_high, horizon, predicted_surv,
    observed_surv, calibration_error, c_reference, c_drop, flag, flag_reason``.
    """
    if horizon is None:
        horizon = float(np.median(cohort.patients["time"].dropna()))
    frame = validation_rows(as_predictions(source, cohort, times=[horizon]))
    try:
        frame["surv_h"] = survival_at(frame, horizon)
    except DataError:
        pass  # no survival predictions: calibration columns stay NaN
    attrs = patient_attributes(cohort, by)
    frame = frame.join(attrs, on="patient_id")
    overall = {"variable": "all", "level": "all", **_row(frame, horizon, n_boot, seed)}
    rows = [overall]
    for var in [v for v in by if v in attrs.columns]:
        for level, part in frame.groupby(var, sort=True):
            rows.append({"variable": var, "level": str(level), **_row(part, horizon, n_boot, seed)})
    report = pd.DataFrame(rows)
    reference = {"all": overall["c_index"]}
    for var in report["variable"].unique():
        if var != "all":
            reference[var] = _within_levels_c(frame, var)
    report["c_reference"] = report["variable"].map(reference)
    report["c_drop"] = report["c_reference"] - report["c_index"]
    big = report["n"] >= min_n
    ci_below = big & (report["c_high"] < report["c_reference"])
    drop = big & (report["c_drop"] > max_drop)
    report["flag"] = (ci_below | drop) & (report["variable"] != "all")
    report["flag_reason"] = np.select(
        [report["flag"] & ci_below, report["flag"] & drop],
        [
            "C-index CI entirely below the C within the other levels",
            f"C-index more than {max_drop:g} below the C within levels",
        ],
        default="",
    )
    return report
