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

from multimodal.data.manifest import Problems, coerce_column, load_schema, rows_text
from multimodal.data.sources import check_patient_ids, check_required_columns
from multimodal.exceptions import DataError, SchemaError

__all__ = ["parse_patients"]


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
) -> pd.DataFrame | None:
    """Check and convert a patient table (``data_schemas/patient_table.schema.json``).

    Parameters
    ----------
    frame : the table with the schema's column names (``patient_id``, ``time``, ``event``, ...).
    label : the file as named in messages (``patients.csv``, ``blca/clinical.csv``).
    problems : collector of errors and warnings.
    source_columns : schema column -> the user's column it was read from, when the loader renamed
        it (``{"time": "survival_months"}``); messages name the user's column. Default: no renaming.

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
        column = coerce_column(frame, col, prop, label, problems, name=name[col])
        out[col] = column.to_numpy()
    _check_pairs(out, frame["patient_id"], label, problems, name)
    if "event" in out and out["event"].notna().all() and not out["event"].astype(bool).any():
        problems.error(
            DataError,
            f"{label}: no patient has {name['event']} = 1; survival models need observed events "
            "(is the column a censoring flag? then event = 1 - censorship)",
        )
    for col, kind in kinds.items():
        # required columns with bad cells (already reported) keep NaN instead of failing here
        if kind != "string" and (col not in schema["required"] or out[col].notna().all()):
            out[col] = _endpoint_dtype(out[col], kind)
    extra = [c for c in frame.columns if c not in out.columns and c != "patient_id"]
    for col in extra:
        out[col] = frame[col].to_numpy()
    return out
