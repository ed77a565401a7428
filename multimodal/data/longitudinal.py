"""Longitudinal follow-up: repeat measurements (labs, vital signs, tumour markers) per patient.

The ``longitudinal`` modality kind holds a long table, one row per measurement::

    patient_id, time, variable, value

``time`` is measured from the same origin as the patient table's survival time (diagnosis or
enrolment), in the manifest's ``time_unit`` for the modality (days, weeks, months, years; converted
to the cohort's unit when they differ). A wide visits table (``patient_id, time, <variables>``)
is accepted with ``format: wide`` in the manifest and melted on reading.

Checks (each names the file, row, patient and column; see ``docs/longitudinal.md``):

- ``time`` empty, negative or non-numeric: error;
- ``value`` non-numeric: error (code categories as numbers, e.g. Yes/No as 1/0);
- the same (patient, time, variable) twice: error;
- a ``time_unit`` that is not one of days, weeks, months, years: error;
- a measurement after the patient's event or censoring time: error (it is outcome information:
  a patient measured at month 30 was alive at month 30) -- :func:`check_against_outcomes`.

A longitudinal modality is trained only with landmarking (:mod:`multimodal.data.landmark`):
each prediction uses what was measured up to its landmark time, never later.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from multimodal.data.manifest import Problems, coerce_column, rows_text
from multimodal.data.sources import SOURCES, ModalitySource
from multimodal.exceptions import DataError, SchemaError

__all__ = [
    "TIME_UNITS",
    "LongitudinalSource",
    "check_against_outcomes",
    "convert_time",
    "ols_slope",
]

#: Length of each accepted time unit in years.
TIME_UNITS = {"days": 1 / 365.25, "weeks": 7 / 365.25, "months": 1 / 12, "years": 1.0}

_KEY = ["patient_id", "time", "variable"]


def ols_slope(time: np.ndarray, value: np.ndarray) -> float:
    """Least-squares slope of ``value`` over ``time`` (per unit of time); 0 with fewer than two
    distinct times (one visit: no trend yet)."""
    t = np.asarray(time, dtype=np.float64)
    x = np.asarray(value, dtype=np.float64)
    if len(t) < 2 or np.ptp(t) <= 0:
        return 0.0
    tc = t - t.mean()
    return float((tc * (x - x.mean())).sum() / (tc * tc).sum())


def convert_time(values: Any, unit: str, to_unit: str) -> Any:
    """``values`` in ``unit`` expressed in ``to_unit`` (both from :data:`TIME_UNITS`)."""
    if unit == to_unit:
        return values
    return values * (TIME_UNITS[unit] / TIME_UNITS[to_unit])


def _melt_wide(frame: pd.DataFrame, label: str, problems: Problems) -> pd.DataFrame | None:
    """A wide visits table (patient_id, time, <variables>) as the long table."""
    variables = [c for c in frame.columns if c not in ("patient_id", "time")]
    if not variables:
        problems.error(
            SchemaError,
            f"{label}: a wide longitudinal table needs measurement columns besides patient_id and "
            "time",
        )
        return None
    frame = frame.reset_index(drop=True)
    frame["_row"] = np.arange(len(frame))
    long = frame.melt(
        id_vars=["patient_id", "time", "_row"], value_vars=variables, var_name="variable"
    )
    long = long[long["value"].notna()]
    long = long.sort_values(["_row", "variable"], kind="stable")
    long.index = pd.Index(long.pop("_row").to_numpy())  # file rows for messages
    return long


@SOURCES.register("longitudinal")
class LongitudinalSource(ModalitySource):
    """Repeat measurements. ``table``: columns patient_id (str), time (float, cohort unit),
    variable (str), value (float); sorted by patient and time; the index is the row in the file.

    Attributes
    ----------
    variables : the measured variables, in order of first appearance.
    time_unit : the unit of ``table.time`` (the cohort's once the cohort converted it).
    """

    kind = "longitudinal"
    schema = "longitudinal_table"
    one_row_per_patient = False

    def __init__(self, name, table, variables: list[str], time_unit: str | None, path=None):
        super().__init__(name, table, path)
        self.variables = list(variables)
        self.time_unit = time_unit
        #: per row (patient or patient@landmark): the landmark time its measurements stop at;
        #: None until :func:`multimodal.data.landmark.landmark_cohort` sets it.
        self.landmarks: pd.Series | None = None

    @property
    def patient_ids(self) -> pd.Index:
        """The patients with this modality: every landmarked row (no measurement before the
        landmark is a valid state: nothing known yet), else those with measurements."""
        if self.landmarks is not None:
            return pd.Index(self.landmarks.index, name="patient_id")
        return pd.Index(self.table["patient_id"].unique(), name="patient_id")

    def subset(self, ids: Iterable[str]) -> LongitudinalSource:
        ids = pd.Index(list(ids))
        new = self._copy_with(self.table[self.table["patient_id"].isin(ids)])
        if self.landmarks is not None:
            new.landmarks = self.landmarks[self.landmarks.index.isin(ids)]
        return new

    @classmethod
    def build(cls, name, frame, spec, label, problems, known_ids=None, base_dir=None, root=None):
        if spec.get("format", "long") == "wide" and "patient_id" in frame.columns:
            if "time" not in frame.columns:
                problems.error(SchemaError, f"{label}: required column 'time' is missing")
                return None
            frame = _melt_wide(frame, label, problems)
            if frame is None:
                return None
        return super().build(name, frame, spec, label, problems, known_ids, base_dir, root)

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        unit = spec.get("time_unit")
        if unit is not None and unit not in TIME_UNITS:
            problems.error(
                SchemaError,
                f"{label}: time_unit {unit!r} is not a unit the package knows; use one of "
                f"{', '.join(TIME_UNITS)} (the unit of the file's time column)",
            )
            return None
        ids = frame["patient_id"]
        before = len(problems.errors)
        # empty, non-numeric or negative times and non-numeric values are reported by row
        time = coerce_column(frame, "time", {"type": "number", "minimum": 0}, label, problems)
        value = coerce_column(frame, "value", {"type": ["number", "null"]}, label, problems)
        ok = len(problems.errors) == before
        variable = frame["variable"].astype("string").str.strip()
        no_name = variable.isna() | (variable == "")
        if no_name.any():
            pos = np.flatnonzero(no_name.to_numpy())
            problems.error(
                DataError,
                f"{label} column 'variable': {len(pos)} row(s) are empty: "
                f"{rows_text(pos, ids, show_values=False)}; name the measured variable",
            )
            ok = False
        table = pd.DataFrame(
            {
                "patient_id": ids.astype(str).to_numpy(),
                "time": time.to_numpy(dtype=np.float64),
                "variable": variable.to_numpy(dtype=object),
                "value": value.to_numpy(dtype=np.float64),
            },
            index=frame.index,
        )
        dup = table.duplicated(_KEY, keep=False).to_numpy() & table["time"].notna().to_numpy()
        if dup.any():
            pos = np.flatnonzero(dup)
            problems.error(
                DataError,
                f"{label}: {len(pos)} row(s) repeat the same (patient_id, time, variable): "
                f"{rows_text(pos, table['patient_id'], table['variable'])}; keep one value per "
                "variable and time (average repeats, or give them distinct times)",
            )
            ok = False
        if not ok:
            return None
        table = table[table["value"].notna()].sort_values(["patient_id", "time"], kind="stable")
        variables = list(dict.fromkeys(table["variable"]))
        return cls(name, table, variables, unit)

    def up_to(self, landmark: pd.Series | float) -> LongitudinalSource:
        """Only the measurements taken at or before each patient's ``landmark`` (a float for
        everyone, or a Series patient_id -> time)."""
        if isinstance(landmark, pd.Series):
            limit = self.table["patient_id"].map(landmark).to_numpy(dtype=np.float64)
        else:
            limit = np.full(len(self.table), float(landmark))
        keep = self.table["time"].to_numpy() <= limit + 1e-9
        return self._copy_with(self.table[keep])

    def last_time(self) -> pd.Series:
        """Per patient: the time of the last measurement."""
        return self.table.groupby("patient_id", sort=False)["time"].max()

    def measurements_per_patient(self) -> pd.Series:
        """Per patient: the number of measurements (rows)."""
        return self.table.groupby("patient_id", sort=False).size()


def check_against_outcomes(
    source: LongitudinalSource,
    patients: pd.DataFrame,
    cohort_unit: str | None,
    problems: Problems,
    label: str,
) -> LongitudinalSource:
    """Convert ``source`` to the cohort's time unit and report measurements taken after a
    patient's event or censoring time (an error: a later measurement tells the model the patient
    was alive then). Returns the converted source."""
    if source.time_unit and cohort_unit and source.time_unit != cohort_unit:
        if cohort_unit in TIME_UNITS:
            table = source.table.copy()
            table["time"] = convert_time(table["time"], source.time_unit, cohort_unit)
            source = source._copy_with(table)
            source.time_unit = cohort_unit
    elif source.time_unit is None:
        source.time_unit = cohort_unit
    if "time" not in patients:
        return source
    table = source.table
    end = table["patient_id"].map(patients["time"]).to_numpy(dtype=np.float64)
    with np.errstate(invalid="ignore"):
        late = table["time"].to_numpy() > end + 1e-6
    if late.any():
        pos = np.flatnonzero(late)
        ends = pd.Series(end[pos])
        shown = "; ".join(
            f"{rows_text(pos[i : i + 1], table['patient_id'], table['variable'])} at "
            f"{table['time'].iloc[p]:g}, follow-up ends at {ends.iloc[i]:g}"
            for i, p in enumerate(pos[:5])
        )
        more = f"; ... and {len(pos) - 5} more" if len(pos) > 5 else ""
        problems.error(
            DataError,
            f"{label} column 'time': {len(pos)} measurement(s) are after the patient's event or "
            f"censoring time: {shown}{more}. A measurement after follow-up ends leaks the outcome "
            "(the patient was alive then); check the time unit (the modality's time_unit) and "
            "the patient table's times, or drop those rows",
        )
    return source
