"""The Mayo Clinic PBC follow-up (``pbc2.csv``) as a cohort with a longitudinal modality.

``pbc2.csv`` holds one row per visit (312 patients, 1,945 visits; see ``../shared/data/README.md``):
``id``, follow-up ``years``, ``status`` (alive / transplanted / dead), baseline ``age``, ``sex``,
``drug``, and per visit the ``year`` it took place and the labs and signs measured.

:func:`read_pbc2` reads it into (``Cohort.load("pbc2.csv")`` builds the cohort):

- patients: ``time`` = ``years``, ``event`` = died; ``pfs_time`` = ``years`` and ``pfs_event`` =
  died or transplanted, so the ``competing`` endpoint separates the two (its cause 1,
  named "progression" in the package's columns, is transplantation here; cause 2 is death);
  time unit years;
- ``clinical``: age, sex and drug at enrolment;
- ``labs``: a longitudinal source with every visit's serBilir, serChol, albumin, alkaline, SGOT,
  platelets, prothrombin, histologic stage, and ascites / hepatomegaly / spiders (Yes = 1,
  No = 0) and edema (none 0, without diuretics 0.5, despite diuretics 1).

The file is read, never copied; the same cohort can be described by a manifest instead
(``docs/longitudinal.md`` shows one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.data.longitudinal import check_against_outcomes
from multimodal.data.manifest import Problems, read_table
from multimodal.data.sources import build_source
from multimodal.exceptions import SchemaError

__all__ = ["PBC_LABS", "read_pbc2"]

#: Per-visit measurements taken into the ``labs`` modality (after coding the signs as numbers).
PBC_LABS = (
    "serBilir",
    "serChol",
    "albumin",
    "alkaline",
    "SGOT",
    "platelets",
    "prothrombin",
    "histologic",
    "ascites",
    "hepatomegaly",
    "spiders",
    "edema",
)
_YES_NO = {"Yes": 1.0, "No": 0.0}
_EDEMA = {"No edema": 0.0, "edema no diuretics": 0.5, "edema despite diuretics": 1.0}
_REQUIRED = ("id", "years", "status", "age", "sex", "drug", "year", *PBC_LABS)


def read_pbc2(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The patient table and the ``clinical`` and ``labs`` sources of ``path`` (``pbc2.csv``);
    ``Cohort.from_pbc2`` / ``Cohort.load`` make the cohort."""
    path = Path(path)
    label = path.name
    frame = read_table(path, label)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise SchemaError(f"{label}: columns {missing} are missing; is this the pbc2.csv file?")
    frame = frame.copy()
    frame["patient_id"] = "PBC-" + frame["id"].astype(int).astype(str).str.zfill(3)
    first = frame.groupby("patient_id", sort=False).first()
    status = first["status"].astype(str)
    patients = pd.DataFrame(
        {
            "time": first["years"].astype(float),
            "event": status.eq("dead"),
            "pfs_time": first["years"].astype(float),
            "pfs_event": status.isin(["dead", "transplanted"]),
        },
        index=pd.Index(first.index.astype(str), name="patient_id"),
    )
    problems = Problems()
    clinical = build_source(
        "clinical",
        first.reset_index()[["patient_id", "age", "sex", "drug"]],
        {"kind": "clinical", "numeric": ["age"], "categorical": ["sex", "drug"]},
        label,
        problems,
        patients.index,
    )
    visits = frame[["patient_id", "year", *PBC_LABS]].rename(columns={"year": "time"})
    for col in ("ascites", "hepatomegaly", "spiders"):
        visits[col] = visits[col].map(_YES_NO)
    visits["edema"] = visits["edema"].map(_EDEMA).astype(np.float64)
    labs = build_source(
        "labs",
        visits,
        {"kind": "longitudinal", "format": "wide", "time_unit": "years"},
        label,
        problems,
        patients.index,
    )
    if labs is not None:
        labs = check_against_outcomes(labs, patients, "years", problems, label)
    problems.raise_if_any()
    return patients, {"clinical": clinical, "labs": labs}
