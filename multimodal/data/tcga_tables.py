"""TCGA cancer folders (``shared/data/tcga/<cancer>/``, PORPOISE/MCAT layout): the tables of a cohort.

:func:`read_tcga_tables` reads the folder into a patient table and modality sources;
:func:`multimodal.data.tcga.load_tcga` and :meth:`Cohort.from_tcga` make the cohort of them.

Mapping, applied once here:

- ``time`` = ``survival_months``; ``event`` = ``event`` (1 = death observed; the benchmark label).
- ``pfs_time`` = ``cdr_pfi_days / 30.4375`` (months), ``pfs_event`` = ``cdr_pfi_event``;
  ``dss_time``/``dss_event`` likewise from ``cdr_dss_*`` (a patient with only one of the pair has
  the endpoint unknown); ``site`` = ``tss_site``. Where the CDR gives the PFI and OS the same day
  count (``cdr_pfi_days == cdr_os_days``: no progression before death or last contact), ``pfs_time``
  is set to ``time`` exactly: ``survival_months`` and the day counts use different month lengths,
  and the progression endpoints tell "death first" from "progression first" by comparing the two.
- ``clinical``: ``age`` (numeric), ``sex`` and ``stage`` (categorical) by default; a requested
  column that is empty for every patient (``stage`` in GBMLGG: gliomas are not staged) is left out.
  Other clinical.csv columns may be asked for (``data.clinical_categorical``, e.g.
  ``histological_grade``); in categorical covariates TCGA's bracketed markers (``[Not
  Available]``, ``[Unknown]``, ``[Discrepancy]``, ...) are missing values.
- ``genomics``: ``genomics.csv.gz`` with groups ``rna``/``mut``/``cnv`` from the column suffixes
  ``_rnaseq``/``_mut``/``_cnv``.
- ``report``: ``reports.csv`` column ``text``; ``report_structured``: ``reports_structured.csv``
  column ``text_structured`` (where the files exist). Report rows of patients outside the cohort
  are left out quietly (the files mark them, e.g. ``in_cohort = 0``).
- Fold files: ``splits/<name>/fold_<k>.csv``.
- Messages about the patient table name the clinical.csv columns (``survival_months``,
  ``cdr_pfi_days``, ...), not the internal names they become (:data:`SOURCE_COLUMNS`).
- Checks beyond the schema: a ``censorship`` column must be ``1 - event`` (equal to ``event``
  means the event indicator was put in both: an error), and a median ``survival_months`` over
  600 (50 years) is a warning (the times are probably days).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multimodal.data.manifest import Problems, read_table
from multimodal.data.patients import check_censorship, check_time_unit, parse_patients
from multimodal.data.sources import ModalitySource, build_source
from multimodal.exceptions import DataError, MultimodalError
from multimodal.registry import did_you_mean
from multimodal.types import columns_by_suffix

__all__ = [
    "CLINICAL_DEFAULTS",
    "DAYS_PER_MONTH",
    "GENOMICS_GROUP_SUFFIXES",
    "SOURCE_COLUMNS",
    "TEXT_FILES",
    "TcgaTables",
    "non_default_covariates",
    "read_tcga_tables",
]

log = logging.getLogger(__name__)

#: Average days per month used to convert the CDR day counts.
DAYS_PER_MONTH = 30.4375

#: genomics group -> column suffix.
GENOMICS_GROUP_SUFFIXES = {"rna": "_rnaseq", "mut": "_mut", "cnv": "_cnv"}

#: modality name -> (file, text column).
TEXT_FILES = {
    "report": ("reports.csv", "text"),
    "report_structured": ("reports_structured.csv", "text_structured"),
}


#: The clinical covariates of a TCGA folder unless a config says otherwise (``data.clinical_*``).
CLINICAL_DEFAULTS: dict[str, list[str]] = {
    "clinical_numeric": ["age"],
    "clinical_categorical": ["sex", "stage"],
}


def non_default_covariates(options: dict[str, list[str]]) -> dict[str, list[str]]:
    """The ``data.clinical_*`` entries of ``options`` that differ from :data:`CLINICAL_DEFAULTS`
    (what a cohort records and a config must match; ``{}``: age, sex and stage)."""
    return {
        key: list(cols) for key, cols in options.items() if list(cols) != CLINICAL_DEFAULTS[key]
    }


#: patient-table column -> the clinical.csv column it is read from (messages name the latter).
SOURCE_COLUMNS = {
    "time": "survival_months",
    "event": "event",
    "pfs_time": "cdr_pfi_days",
    "pfs_event": "cdr_pfi_event",
    "dss_time": "cdr_dss_days",
    "dss_event": "cdr_dss_event",
    "site": "tss_site",
}


def _patients_frame(clinical: pd.DataFrame, label: str) -> pd.DataFrame:
    """The patient table (schema column names) of clinical.csv; see the module docstring."""
    for col in (SOURCE_COLUMNS["time"], SOURCE_COLUMNS["event"]):
        if col not in clinical.columns:
            raise DataError(
                f"{label}: column {col!r} is missing.{did_you_mean(col, map(str, clinical.columns))} "
                "A TCGA clinical.csv needs patient_id, survival_months and event"
            )
    frame = pd.DataFrame({"patient_id": clinical["patient_id"]})
    for col in ("time", "event"):
        frame[col] = clinical[SOURCE_COLUMNS[col]]
    os_time = pd.to_numeric(frame["time"], errors="coerce")
    for endpoint in ("pfs", "dss"):
        days, event = SOURCE_COLUMNS[f"{endpoint}_time"], SOURCE_COLUMNS[f"{endpoint}_event"]
        if days in clinical.columns and event in clinical.columns:
            t = pd.to_numeric(clinical[days], errors="coerce") / DAYS_PER_MONTH
            e = pd.to_numeric(clinical[event], errors="coerce")
            if "cdr_os_days" in clinical.columns:  # same day as OS: the same time, exactly
                same = pd.to_numeric(clinical[days], errors="coerce") == pd.to_numeric(
                    clinical["cdr_os_days"], errors="coerce"
                )
                t = t.where(~same, os_time)
            # unknown also where the OS time it copies is (an empty survival_months is reported once)
            known = t.notna() & e.notna()
            frame[f"{endpoint}_time"] = t.where(known)
            frame[f"{endpoint}_event"] = e.where(known)
    if SOURCE_COLUMNS["site"] in clinical.columns:
        frame["site"] = clinical[SOURCE_COLUMNS["site"]]
    return frame


def _clinical_spec(
    clinical: pd.DataFrame, numeric: Iterable[str], categorical: Iterable[str], label: str
) -> dict:
    spec = {"kind": "clinical", "numeric": list(numeric), "categorical": list(categorical)}
    for key in ("numeric", "categorical"):
        keep = []
        for col in spec[key]:
            if col in clinical.columns and clinical[col].isna().all():
                log.info("%s: column %r is empty for every patient and is not used", label, col)
            else:
                keep.append(col)
        spec[key] = keep
    return spec


def _unmarked(clinical: pd.DataFrame, categorical: Iterable[str]) -> pd.DataFrame:
    """``clinical`` with TCGA's bracketed markers (``[Not Available]``, ``[Unknown]``,
    ``[Discrepancy]``, ``[Not Applicable]``, ...) in the ``categorical`` covariates made missing:
    they say the value was not recorded, and a model should see them as level "unknown", not as
    a level of their own (``histological_grade`` of BRCA is ``[Not Available]`` for everyone)."""
    present = [c for c in categorical if c in clinical.columns]
    if not present:
        return clinical
    out = clinical.copy()
    for col in present:
        text = out[col].astype("string").str.strip()
        out[col] = out[col].mask(text.str.fullmatch(r"\[[^\]]*\]").fillna(False).astype(bool))
    return out


def _genomics_groups(columns: Iterable[str]) -> dict[str, list[str]]:
    """Group name -> the columns with its suffix (:data:`GENOMICS_GROUP_SUFFIXES`), in table
    order; groups without a column are left out."""
    columns = list(columns)
    suffix_of = {suffix.removeprefix("_"): g for g, suffix in GENOMICS_GROUP_SUFFIXES.items()}
    return {
        suffix_of[suffix]: [columns[i] for i in idx]
        for suffix, idx in columns_by_suffix(columns, list(suffix_of))
        if suffix is not None
    }


def _read(path: Path, problems: Problems) -> pd.DataFrame | None:
    try:
        return read_table(path, f"{path.parent.name}/{path.name}")
    except MultimodalError as exc:
        problems.error(type(exc), str(exc))
        return None


@dataclass
class TcgaTables:
    """What :func:`read_tcga_tables` read: the patient table and the modality sources.

    Attributes
    ----------
    name : cohort name, ``tcga-<cancer>``.
    root : the cancer's folder.
    patients : patient table (see :func:`multimodal.data.patients.parse_patients`), or None when
        it could not be built (the errors are in the ``problems`` given).
    sources : modality name -> source.
    """

    name: str
    root: Path
    patients: pd.DataFrame | None
    sources: dict[str, ModalitySource] = field(default_factory=dict)


def read_tcga_tables(
    folder: str | Path,
    clinical_numeric: Iterable[str] = ("age",),
    clinical_categorical: Iterable[str] = ("sex", "stage"),
    problems: Problems | None = None,
) -> TcgaTables:
    """Read a TCGA cancer folder into a patient table and modality sources.

    Parameters
    ----------
    folder : e.g. ``shared/data/tcga/blca``.
    clinical_numeric, clinical_categorical : clinical.csv covariate columns.
    problems : collector of every error and warning found; when None, errors raise at the end.

    Raises
    ------
    DataError
        When the folder, clinical.csv or its ``patient_id`` column is missing (nothing else can be
        checked then).
    """
    own = problems is None
    problems = Problems() if problems is None else problems
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"TCGA folder {folder} not found")
    cancer = folder.name
    label = f"{cancer}/clinical.csv"
    clinical = read_table(folder / "clinical.csv", label)
    if "patient_id" not in clinical.columns:
        raise DataError(f"{label}: column 'patient_id' is missing")
    frame = _patients_frame(clinical, label)
    patients = parse_patients(frame, label, problems, source_columns=SOURCE_COLUMNS)
    check_censorship(clinical, label, problems)
    check_time_unit(
        clinical[SOURCE_COLUMNS["time"]], "months", label, problems, SOURCE_COLUMNS["time"]
    )
    known = patients.index if patients is not None else None
    tables = TcgaTables(name=f"tcga-{cancer}", root=folder, patients=patients)

    def add(name: str, source: ModalitySource | None) -> None:
        if source is not None:
            tables.sources[name] = source

    categorical = list(clinical_categorical)
    covariates = _unmarked(clinical, categorical)  # before: a column of markers only is empty
    spec = _clinical_spec(covariates, clinical_numeric, categorical, label)
    spec["path"] = folder / "clinical.csv"  # messages name the file
    add("clinical", build_source("clinical", covariates, spec, label, problems, known))
    gpath = folder / "genomics.csv.gz"
    frame = _read(gpath, problems) if gpath.is_file() else None
    if frame is not None:
        spec = {"kind": "genomics", "groups": _genomics_groups(frame.columns), "path": gpath}
        glabel = f"{cancer}/{gpath.name}"
        add("genomics", build_source("genomics", frame, spec, glabel, problems, known))
    for name, (file, column) in TEXT_FILES.items():
        path = folder / file
        frame = _read(path, problems) if path.is_file() else None
        if frame is None:
            continue
        if known is not None and "patient_id" in frame.columns:
            frame = frame[frame["patient_id"].isin(known)]  # keeps file row numbers
        spec = {"kind": "text", "text_column": column, "path": path}
        add(name, build_source(name, frame, spec, f"{cancer}/{file}", problems, known))
    if own:
        problems.raise_if_any()
    return tables
