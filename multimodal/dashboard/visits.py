"""A new patient's visits for a landmark run's form: the table the form edits, its checks and
the long table (``patient_id, time, variable, value``) of the ``longitudinal`` modality it
becomes.

The form's table has one row per visit: ``time`` (in the cohort's time unit, from the same origin
as the training patients' times: diagnosis or enrolment) and one column per variable the model was
trained on; an empty cell is a value not measured at that visit (as in training: the long table
has no row for it). A row with a time and no value is a visit without measurements: it still
moves the landmark (the patient was known alive then). Values are checked by the model's own input
checks when it predicts (values far outside the training range are refused there); the form
refuses what the model cannot read at all: a missing, negative or non-finite time, the same time
twice.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multimodal.models.input_checks import PLAUSIBLE_RANGES

__all__ = [
    "TIME_COLUMN",
    "accepted_range",
    "clean_visits",
    "last_visit",
    "long_table",
    "measured",
    "visit_refusals",
    "visit_times",
    "visits_template",
]

#: The time column of the form's visits table.
TIME_COLUMN = "time"


def visits_template(variables: list[str], n_rows: int = 3) -> pd.DataFrame:
    """An empty visits table: ``time`` and one float column per variable, ``n_rows`` rows."""
    columns = [TIME_COLUMN, *[v for v in variables if v != TIME_COLUMN]]
    return pd.DataFrame({c: pd.Series([np.nan] * n_rows, dtype=float) for c in columns})


def clean_visits(frame: pd.DataFrame | None) -> pd.DataFrame:
    """The visits table without its empty rows (no time and no value), cells as numbers (NaN
    where empty or not a number); the rows keep their position in the form (0-based)."""
    if frame is None or frame.empty:
        return pd.DataFrame(columns=[TIME_COLUMN])
    out = frame.apply(pd.to_numeric, errors="coerce")
    empty = out.isna().all(axis=1)
    return out[~empty.to_numpy()]


def visit_refusals(
    frame: pd.DataFrame | None, raw: pd.DataFrame | None = None, unit: str = ""
) -> list[str]:
    """Why the visits cannot be predicted from (empty when they can): a visit with values but no
    time, a negative or non-finite time, the same time twice, a value that is not a number
    (``raw``: the table as typed, to name such cells). ``unit``: of the times, for messages."""
    u = f" {unit}" if unit else ""
    visits = clean_visits(frame)
    out = []
    if raw is not None and not raw.empty:
        typed = raw.reindex(index=visits.index, columns=visits.columns)
        bad = typed.notna() & visits.isna()
        for i, col in zip(*np.nonzero(bad.to_numpy())):
            out.append(
                f"visit {visits.index[i] + 1}: {visits.columns[col]} = {typed.iat[i, col]!r} is "
                "not a number; type a number or leave the cell empty (not measured)."
            )
    if TIME_COLUMN not in visits:
        return out
    for pos, t in zip(visits.index, visits[TIME_COLUMN].to_numpy(float)):
        if np.isnan(t):
            out.append(
                f"visit {pos + 1} has values but no time; give the visit's time (or clear the row)."
            )
        elif not np.isfinite(t):
            out.append(f"visit {pos + 1}: time {t} is not a finite number; give the visit's time.")
        elif t < 0:
            out.append(
                f"visit {pos + 1}: time {t:g}{u} is refused: visit times count from the time origin "
                "of the training patients (diagnosis or enrolment) and are >= 0."
            )
    times = visits[TIME_COLUMN].dropna()
    for t in sorted(set(times[times.duplicated()].tolist())):
        rows = [str(p + 1) for p in times.index[times == t]]
        out.append(
            f"visits {', '.join(rows)} have the same time {t:g}{u}; give one row per visit time."
        )
    return out


def last_visit(frame: pd.DataFrame | None) -> float | None:
    """The latest visit time (None without a visit): the landmark of the prediction."""
    visits = clean_visits(frame)
    if TIME_COLUMN not in visits:
        return None
    t = visits[TIME_COLUMN].to_numpy(float)
    t = t[np.isfinite(t)]
    return float(t.max()) if t.size else None


def visit_times(frame: pd.DataFrame | None) -> list[float]:
    """The distinct visit times of the table (rows with a finite time), in order."""
    visits = clean_visits(frame)
    if TIME_COLUMN not in visits:
        return []
    t = visits[TIME_COLUMN].to_numpy(float)
    return [float(v) for v in np.unique(t[np.isfinite(t)])]


def long_table(frame: pd.DataFrame | None, patient_id: str) -> pd.DataFrame:
    """The visits as the ``longitudinal`` modality's long table: one row per value given
    (``patient_id, time, variable, value``); cells left empty are not measured."""
    visits = clean_visits(frame)
    if TIME_COLUMN not in visits or len(visits.columns) < 2:
        return pd.DataFrame(columns=["patient_id", "time", "variable", "value"])
    long = visits.melt(id_vars=[TIME_COLUMN], var_name="variable", value_name="value")
    long = long[long["value"].notna() & long[TIME_COLUMN].notna()]
    long.insert(0, "patient_id", patient_id)
    return long.sort_values([TIME_COLUMN, "variable"], kind="stable").reset_index(drop=True)


def accepted_range(training: tuple[float, float] | None) -> tuple[float, float] | None:
    """The values of a variable the model's input checks accept
    (:mod:`multimodal.models.input_checks`: the training range widened by
    :data:`~multimodal.models.input_checks.PLAUSIBLE_RANGES` of its width on each side);
    None when the training range is unknown."""
    if training is None:
        return None
    lo, hi = training
    width = (hi - lo) or 1.0
    return lo - PLAUSIBLE_RANGES * width, hi + PLAUSIBLE_RANGES * width


def measured(frame: pd.DataFrame | None) -> dict[str, Any]:
    """How much the visits hold: ``visits`` (rows with a time), ``values`` (cells given) and
    ``variables`` (those given at least once)."""
    visits = clean_visits(frame)
    values = visits.drop(columns=[TIME_COLUMN], errors="ignore")
    return {
        "visits": int(visits[TIME_COLUMN].notna().sum()) if TIME_COLUMN in visits else 0,
        "values": int(values.notna().to_numpy().sum()),
        "variables": [str(c) for c in values.columns if values[c].notna().any()],
    }
