"""TCGA cancer folders (``shared/data/tcga/<cancer>/``, PORPOISE/MCAT layout) as a :class:`Cohort`.

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
- ``genomics``: ``genomics.csv.gz`` with groups ``rna``/``mut``/``cnv`` from the column suffixes
  ``_rnaseq``/``_mut``/``_cnv``.
- ``report``: ``reports.csv`` column ``text``; ``report_structured``: ``reports_structured.csv``
  column ``text_structured`` (where the files exist). Report rows of patients outside the cohort
  are left out quietly (the files mark them, e.g. ``in_cohort = 0``).
- Fold files: ``splits/<name>/fold_<k>.csv``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from multimodal.data.cohort import Cohort, parse_patients
from multimodal.data.manifest import Problems, read_table
from multimodal.data.sources import build_source
from multimodal.exceptions import DataError, MultimodalError
from multimodal.registry import did_you_mean

__all__ = ["DAYS_PER_MONTH", "GENOMICS_GROUP_SUFFIXES", "TEXT_FILES", "load_tcga"]

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


def _patients_frame(clinical: pd.DataFrame, label: str) -> pd.DataFrame:
    for col in ("survival_months", "event"):
        if col not in clinical.columns:
            raise DataError(
                f"{label}: column {col!r} is missing.{did_you_mean(col, map(str, clinical.columns))} "
                "A TCGA clinical.csv needs patient_id, survival_months and event"
            )
    frame = pd.DataFrame(
        {
            "patient_id": clinical["patient_id"],
            "time": clinical["survival_months"],
            "event": clinical["event"],
        }
    )
    for endpoint in ("pfi", "dss"):
        days, event = f"cdr_{endpoint}_days", f"cdr_{endpoint}_event"
        if days in clinical.columns and event in clinical.columns:
            t = pd.to_numeric(clinical[days], errors="coerce") / DAYS_PER_MONTH
            e = pd.to_numeric(clinical[event], errors="coerce")
            known = t.notna() & e.notna()
            out = "pfs" if endpoint == "pfi" else "dss"
            if "cdr_os_days" in clinical.columns:  # same day as OS: the same time, exactly
                same = pd.to_numeric(clinical[days], errors="coerce") == pd.to_numeric(
                    clinical["cdr_os_days"], errors="coerce"
                )
                t = t.where(~same, frame["time"])
            frame[f"{out}_time"] = t.where(known)
            frame[f"{out}_event"] = e.where(known)
    if "tss_site" in clinical.columns:
        frame["site"] = clinical["tss_site"]
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


def _genomics_groups(columns: Iterable[str]) -> dict[str, list[str]]:
    groups = {
        g: [c for c in columns if str(c).endswith(suffix)]
        for g, suffix in GENOMICS_GROUP_SUFFIXES.items()
    }
    return {g: cols for g, cols in groups.items() if cols}


def _read(path: Path, problems: Problems) -> pd.DataFrame | None:
    try:
        return read_table(path, f"{path.parent.name}/{path.name}")
    except MultimodalError as exc:
        problems.error(type(exc), str(exc))
        return None


def _restrict_to_split(cohort: Cohort, folder: Path, splits_name: str) -> Cohort:
    split_dir = cohort._resolve_split(splits_name)
    ids: set[str] = set()
    for path in sorted(split_dir.glob("fold_*.csv")):
        ids |= set(read_table(path, f"{split_dir.name}/{path.name}")["patient_id"].astype(str))
    unknown = sorted(ids - set(cohort.patients.index))
    if unknown:
        raise DataError(
            f"{split_dir}: {len(unknown)} patient(s) of the fold files are not in {folder.name}/clinical.csv "
            f"(e.g. {', '.join(unknown[:5])})"
        )
    sub = cohort.subset([i for i in cohort.patients.index if i in ids])
    sub.folds_dir = split_dir
    return sub


def load_tcga(
    folder: str | Path,
    splits_name: str | None = None,
    clinical_numeric: Iterable[str] = ("age",),
    clinical_categorical: Iterable[str] = ("sex", "stage"),
    problems: Problems | None = None,
) -> Cohort | None:
    """Load a TCGA cancer folder; see the module docstring for the column mapping.

    Parameters
    ----------
    folder : e.g. ``shared/data/tcga/blca``.
    splits_name : optional fold set under ``splits/``; restricts the cohort to its patients and
        becomes the default of :meth:`Cohort.folds`.
    clinical_numeric, clinical_categorical : clinical.csv covariate columns.
    problems : collector; when None, errors raise at the end.

    Returns
    -------
    Cohort, or None (with errors in ``problems``) when the patient table cannot be built.
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
    patients = parse_patients(_patients_frame(clinical, label), label, problems)
    known = patients.index if patients is not None else None
    sources = {}
    spec = _clinical_spec(clinical, clinical_numeric, clinical_categorical, label)
    source = build_source("clinical", clinical, spec, label, problems, known)
    if source is not None:
        sources["clinical"] = source
    gpath = folder / "genomics.csv.gz"
    if gpath.is_file():
        frame = _read(gpath, problems)
        if frame is not None:
            spec = {"kind": "genomics", "groups": _genomics_groups(frame.columns)}
            source = build_source(
                "genomics", frame, spec, f"{cancer}/{gpath.name}", problems, known
            )
            if source is not None:
                sources["genomics"] = source
    for name, (file, column) in TEXT_FILES.items():
        path = folder / file
        if not path.is_file():
            continue
        frame = _read(path, problems)
        if frame is None:
            continue
        if known is not None and "patient_id" in frame.columns:
            frame = frame[frame["patient_id"].isin(known)]  # keeps file row numbers
        spec = {"kind": "text", "text_column": column}
        source = build_source(name, frame, spec, f"{cancer}/{file}", problems, known)
        if source is not None:
            sources[name] = source
    if own:
        problems.raise_if_any()
    if patients is None:
        return None
    cohort = Cohort(patients, sources, name=f"tcga-{cancer}", root=folder)
    if splits_name is not None:
        cohort = _restrict_to_split(cohort, folder, splits_name)
    return cohort
