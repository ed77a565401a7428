"""Check a cohort (manifest or TCGA folder) and report every problem found, without raising.

:func:`validate` loads the cohort collecting errors and warnings, then checks what loading does
not touch: that each image file exists and its header loads (nibabel for NIfTI, the PNG
signature + IHDR chunk, a folder with ``.dcm`` files for DICOM, read with pydicom when installed)
and that each feature-bag file exists and is not empty, and that declared fold files are usable.
Row numbers in messages count the header as row 1.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from multimodal.data.cohort import Cohort, _load_from_manifest, load_tcga, locate_cohort
from multimodal.data.manifest import MAX_ROWS_SHOWN, Problems
from multimodal.data.sources import FeatureBagSource, ImagingSource
from multimodal.exceptions import DataError, MultimodalError

__all__ = ["ValidationReport", "check_image_file", "validate"]

log = logging.getLogger(__name__)

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class ValidationReport:
    """What :func:`validate` found.

    Attributes
    ----------
    path : the manifest or folder checked.
    errors : list[str] -- one problem per entry (file, row, patient, column, how to fix).
    warnings : list[str] -- suspicious but usable (e.g. modality rows of unknown patients, dropped).
    coverage : DataFrame from :meth:`Cohort.coverage` (None when no cohort could be built).
    n_patients : number of patients loaded (0 when none).
    """

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    coverage: pd.DataFrame | None = None
    n_patients: int = 0

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def format(self) -> str:
        """Human-readable report: errors, warnings, then the coverage table."""
        lines = [f"error: {e}" for e in self.errors] + [f"warning: {w}" for w in self.warnings]
        if self.coverage is not None and len(self.coverage):
            table = self.coverage.copy()
            table["fraction"] = table["fraction"].map("{:.3f}".format)
            lines += ["", table.to_string()]
        status = "OK" if self.ok else f"{len(self.errors)} error(s)"
        lines.append(f"{status}: {self.n_patients} patients ({self.path})")
        return "\n".join(lines)


def _check_nifti(path: str) -> str | None:
    import nibabel as nib

    try:
        img = nib.load(path)  # reads the header only; the data stay on disk
        _ = img.header.get_data_shape()
    except Exception as exc:  # nibabel raises many types on corrupt files
        return f"not a readable NIfTI file ({type(exc).__name__}: {str(exc)[:80]})"
    return None


def _check_png(path: str) -> str | None:
    with open(path, "rb") as fh:
        head = fh.read(24)
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        return "not a PNG file (bad signature or IHDR header)"
    width, height = struct.unpack(">II", head[16:24])
    if width == 0 or height == 0:
        return f"PNG header gives size {width}x{height}"
    return None


def _check_dicom_file(path: str) -> str | None:
    try:
        import pydicom
    except ImportError:  # optional dependency: fall back to the DICM preamble check
        with open(path, "rb") as fh:
            head = fh.read(132)
        return None if head[128:132] == b"DICM" else "no DICM marker (not a DICOM Part 10 file)"
    try:
        pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as exc:  # pydicom raises several types on corrupt files
        return f"not a readable DICOM file ({type(exc).__name__})"
    return None


def _check_dicom(path: str) -> str | None:
    if os.path.isdir(path):
        first = next(
            (e.path for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(".dcm")),
            None,
        )
        if first is None:
            return "DICOM series folder holds no .dcm files"
        return _check_dicom_file(first)
    return _check_dicom_file(path)


_CHECKS = {"nifti": _check_nifti, "png": _check_png, "dicom": _check_dicom}


def check_image_file(path: str, fmt: str) -> str | None:
    """Return None when the image exists and its header loads, else the problem (str)."""
    if not os.path.exists(path):
        return "file not found"
    if fmt != "dicom" and os.path.isdir(path):
        return "is a folder"
    if os.path.isfile(path) and os.path.getsize(path) == 0:
        return "file is empty"
    try:
        return _CHECKS[fmt](path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"


def _report_files(label: str, bad: list[tuple[str, str, str]], problems: Problems) -> None:
    if not bad:
        return
    shown = "; ".join(f"patient {pid}: {path}: {why}" for pid, path, why in bad[:MAX_ROWS_SHOWN])
    more = f"; ... and {len(bad) - MAX_ROWS_SHOWN} more" if len(bad) > MAX_ROWS_SHOWN else ""
    problems.error(DataError, f"{label}: {len(bad)} file(s) missing or unreadable: {shown}{more}")


def _check_files(cohort: Cohort, problems: Problems) -> None:
    for name, source in cohort.sources.items():
        label = f"{source.path.name if source.path else name} (modality {name!r})"
        if isinstance(source, ImagingSource):
            t = source.table
            bad = []
            for pid, path, fmt in zip(t.index, t["path"], t["format"], strict=True):
                why = check_image_file(path, fmt)
                if why:
                    bad.append((pid, path, why))
            _report_files(label, bad, problems)
        elif isinstance(source, FeatureBagSource):
            t = source.table
            bad = []
            for pid, path in zip(t["patient_id"], t["path"], strict=True):
                if not os.path.isfile(path):
                    bad.append((pid, path, "file not found"))
                elif os.path.getsize(path) == 0:
                    bad.append((pid, path, "file is empty"))
            _report_files(label, bad, problems)


def _load(path: Path, problems: Problems) -> Cohort | None:
    kind, target = locate_cohort(path)
    if kind == "tcga":
        return load_tcga(target, problems=problems)
    return _load_from_manifest(target, problems)


def validate(path: str | Path, check_files: bool = True) -> ValidationReport:
    """Check a cohort manifest or TCGA folder and collect every problem.

    Parameters
    ----------
    path : manifest file (YAML/JSON), folder holding ``cohort.yaml``, or TCGA cancer folder.
    check_files : also check that image / feature-bag files exist and their headers load.

    Returns
    -------
    ValidationReport -- ``.ok`` is False when there is any error; never raises on bad data.
    """
    path = Path(path)
    problems = Problems(log_warnings=False)  # the report carries them: shown once, by the caller
    cohort = None
    try:
        cohort = _load(path, problems)
    except MultimodalError as exc:
        known = set(problems.messages())
        for line in str(exc).splitlines():
            if line not in known:
                problems.error(type(exc), line)
    if cohort is not None:
        if check_files:
            _check_files(cohort, problems)
        if cohort.folds_dir is not None:
            try:
                cohort.folds()
            except MultimodalError as exc:
                problems.error(type(exc), str(exc))
    report = ValidationReport(
        path=path, errors=problems.messages(), warnings=list(problems.warnings)
    )
    if cohort is not None:
        report.coverage = cohort.coverage()
        report.n_patients = len(cohort)
    log.info("validated %s: %d errors, %d warnings", path, len(report.errors), len(report.warnings))
    return report
