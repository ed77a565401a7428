"""The patient table: outcomes checked and converted once, at the data boundary.

Conventions (see :mod:`multimodal.types`): ``time`` float >= 0, ``event`` bool (True = event
observed). Loaders that rename the user's columns (the TCGA folder: ``survival_months`` ->
``time``) pass the renaming so that messages name the column as it is in the user's file.
Row numbers in messages count the header as row 1 (the first patient is row 2).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from multimodal.data.manifest import Problems, coerce_column, load_schema, parse_bool, rows_text
from multimodal.data.sources import check_patient_ids, check_required_columns
from multimodal.exceptions import DataError, SchemaError

__all__ = ["check_censorship", "check_time_unit", "parse_patients"]


def _endpoint_dtype(values: pd.Series, kind: str) -> pd.Series:
    if kind == "boolean":
        return values.astype(bool) if values.notna().all() else values.astype("boolean")
    if kind == "integer":
        return values.astype("int64") if values.notna().all() else values.astype("Int64")
    return values.astype(float)


def _check_pairs(
    out: pd.DataFrame, ids: pd.Series, label: str, problems: Problems, name: Mapping[str, str]
) -> None:
    """Each ``*_time`` column needs its ``*_event``; a patient with only one has it unknown."""
    for time_col, event_col in load_schema("patient_table").get("x-paired-columns", []):
        if (time_col in out) != (event_col in out):
            have, lack = (time_col, event_col) if time_col in out else (event_col, time_col)
            problems.error(
                SchemaError, f"{label}: column {name[have]!r} needs its partner {name[lack]!r}"
            )
            continue
        if time_col in out:
            half = (out[time_col].isna() != out[event_col].isna()).to_numpy()
            if half.any():
                problems.warn(
                    f"{label}: {int(half.sum())} patient(s) have only one of "
                    f"{name[time_col]}/{name[event_col]} ({rows_text(np.flatnonzero(half), ids)}); "
                    "their endpoint is treated as unknown"
                )
                out.loc[half, [time_col, event_col]] = np.nan


def parse_patients(
    frame: pd.DataFrame,
    label: str,
    problems: Problems,
    source_columns: Mapping[str, str] | None = None,
    require_outcomes: bool = True,
) -> pd.DataFrame | None:
    """Check and convert a patient table (``data_schemas/patient_table.schema.json``).

    Parameters
    ----------
    frame : the table with the schema's column names (``patient_id``, ``time``, ``event``, ...).
    label : the file as named in messages (``patients.csv``, ``blca/clinical.csv``).
    problems : collector of errors and warnings.
    source_columns : schema column -> the user's column it was read from, when the loader renamed
        it (``{"time": "survival_months"}``); messages name the user's column. Default: no renaming.
    require_outcomes : False for patients to predict (no follow-up yet): ``time`` and ``event``
        may be absent or empty (then NaN / ``<NA>``, ``event`` nullable ``boolean``), and a table
        without any event is accepted. Present values are still checked.

    Returns
    -------
    DataFrame indexed by patient_id (str): ``time`` float, ``event`` bool, and when present
    ``event_type`` int, ``pfs_time``/``dss_time`` float, ``pfs_event``/``dss_event`` bool
    (nullable ``boolean`` when some patients lack the endpoint), ``site`` str; other columns are
    kept as metadata. None when required columns are missing. Bad cells are reported to
    ``problems`` (and become NaN).
    """
    schema = load_schema("patient_table")
    name = {col: (source_columns or {}).get(col, col) for col in schema["properties"]}
    required = set(schema["required"]) if require_outcomes else {"patient_id"}
    if not require_outcomes:  # prediction: outcomes optional (absent = unknown for every patient)
        frame = frame.assign(**{c: np.nan for c in ("time", "event") if c not in frame.columns})
    if not check_required_columns(frame, "patient_table", label, problems):
        return None
    frame = check_patient_ids(frame, label, None, problems, unique=True)
    out = pd.DataFrame(index=pd.Index(frame["patient_id"].astype(str), name="patient_id"))
    kinds = {}
    for col, prop in schema["properties"].items():
        if col == "patient_id" or col not in frame.columns:
            continue
        types = {prop["type"]} if isinstance(prop["type"], str) else set(prop["type"])
        kinds[col] = next(t for t in ("boolean", "integer", "number", "string") if t in types)
        if col not in required and "null" not in types:
            prop = {**prop, "type": [*types, "null"]}
        column = coerce_column(frame, col, prop, label, problems, name=name[col])
        out[col] = column.to_numpy()
    _check_pairs(out, frame["patient_id"], label, problems, name)
    if (
        require_outcomes
        and "event" in out
        and out["event"].notna().all()
        and not out["event"].astype(bool).any()
    ):
        problems.error(
            DataError,
            f"{label}: no patient has {name['event']} = 1; survival models need observed events "
            "(is the column a censoring flag? then event = 1 - censorship)",
        )
    for col, kind in kinds.items():
        # required columns with bad cells (already reported) keep NaN instead of failing here
        if kind != "string" and (col not in required or out[col].notna().all()):
            out[col] = _endpoint_dtype(out[col], kind)
    extra = [c for c in frame.columns if c not in out.columns and c != "patient_id"]
    for col in extra:
        out[col] = frame[col].to_numpy()
    return out


#: Follow-up beyond this many years, as a median, means the times are in another unit.
MAX_MEDIAN_YEARS = 50.0

#: Length of one time unit in years.
_UNIT_YEARS = {"days": 1 / 365.25, "weeks": 7 / 365.25, "months": 1 / 12, "years": 1.0}

#: Columns read as a censoring flag (1 = censored), the opposite of ``event``.
CENSORSHIP_COLUMNS = ("censorship", "censored", "is_censored", "censor")


def check_time_unit(
    time: pd.Series, unit: str | None, label: str, problems: Problems, column: str = "time"
) -> None:
    """Warn when the median time is implausible in ``unit`` (over :data:`MAX_MEDIAN_YEARS`).

    Times in days under ``time_unit: months`` make a median follow-up of centuries; the model
    trains anyway, but survival curves, evaluation times and reports are in the wrong unit.
    No unit (None): nothing to compare with.
    """
    values = pd.to_numeric(time, errors="coerce").dropna()
    if unit not in _UNIT_YEARS or values.empty:
        return
    median = float(values.median())
    years = median * _UNIT_YEARS[unit]
    if years <= MAX_MEDIAN_YEARS:
        return
    # the unit in which the median is closest to a typical follow-up of about 3 years
    guess = min(
        (u for u in _UNIT_YEARS if u != unit),
        key=lambda u: abs(np.log(max(median * _UNIT_YEARS[u], 1e-9) / 3.0)),
    )
    problems.warn(
        f"{label} column {column!r}: the median time is {median:g} {unit} ({years:,.0f} years), "
        f"implausible as follow-up; are the times in {guess}? Set patients.time_unit in the "
        "manifest to the unit of the column (days, weeks, months, years), or convert the times"
        + (" to months (a TCGA clinical.csv holds months)" if column == "survival_months" else "")
    )


def check_censorship(
    frame: pd.DataFrame, label: str, problems: Problems, event_column: str = "event"
) -> None:
    """Report a censoring-flag column (``censorship``, ...) that agrees with ``event``.

    ``censorship`` = 1 means censored, ``event`` = 1 means observed: the two are opposites. Equal
    in every row means the event indicator was put in both; equal in some rows means one of the
    two is wrong there. ``frame`` has ``patient_id`` and both columns, with the file's row index.
    """
    if event_column not in frame.columns:
        return
    event = parse_bool(frame[event_column])
    for col in (c for c in frame.columns if str(c).lower() in CENSORSHIP_COLUMNS):
        cens = parse_bool(frame[col])
        both = (event.notna() & cens.notna()).to_numpy(bool)
        same = both & (event.to_numpy() == cens.to_numpy())
        if not same.any():
            continue
        if same.sum() == both.sum():
            problems.error(
                DataError,
                f"{label} column {col!r} equals column {event_column!r} in every row: the event "
                f"indicator seems to be in both. {col!r} is 1 for censored patients (1 - "
                f"{event_column}); fix it, or drop it",
            )
            continue
        pos = np.flatnonzero(same)
        problems.error(
            DataError,
            f"{label} column {col!r} equals column {event_column!r} in {len(pos)} row(s): "
            f"{rows_text(pos, frame['patient_id'], frame[col])}; {col!r} is 1 for censored "
            f"patients (1 - {event_column}): one of the two columns is wrong in these rows",
        )
