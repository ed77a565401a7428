"""Check a cohort (manifest or TCGA folder) and report every problem found, without raising.

:func:`validate` loads the cohort collecting errors and warnings (the loaders check the tables:
types, outcomes, non-finite values, paths leaving the cohort folder, implausible time units, a
censorship column equal to the event column, modalities without patients), then checks what
loading does not touch:

- every image's header (:func:`multimodal.data.files.image_info`: the file is whole, its axes
  match the modality's ``spatial_dims``) and every feature-bag file's existence;
- the pixels of a seeded sample of images and the contents of a sample of bags (all of them with
  ``check_all_files=True``): numeric, finite, not constant; bags ``(N, D)`` with one ``D`` per
  modality;
- fold files (a manifest's ``splits.folds_dir``, every ``splits/<name>/`` of a TCGA folder):
  unknown patients, a patient in both train and val, empty folds, training folds without events;
- that there are events enough to cross-validate (one event cannot be).

Row numbers in messages count the header as row 1.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.data.cohort import (
    Cohort,
    _load_from_manifest,
    check_training_covariates,
    load_tcga,
    locate_cohort,
)
from multimodal.data.files import (
    FileProblem,
    bag_tensor,
    image_info,
    read_image_array,
    spatial_axes,
)
from multimodal.data.manifest import MAX_ROWS_SHOWN, Problems, read_table
from multimodal.data.sources import FeatureBagSource, ImagingSource, ModalitySource
from multimodal.data.splits import (
    EVENT_COLUMNS,
    check_fold_files,
    check_training_events,
    event_flags,
)
from multimodal.exceptions import DataError, MultimodalError

__all__ = ["DEFAULT_SAMPLE", "ValidationReport", "check_image_file", "validate"]

log = logging.getLogger(__name__)

#: Files decoded per modality by default (the rest get the cheap header check only).
DEFAULT_SAMPLE = 20


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
    decoded : modality -> (files decoded, files that exist and whose header passed): how many
        images / bags had their contents checked (a sample unless ``check_all_files``).
    """

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    coverage: pd.DataFrame | None = None
    n_patients: int = 0
    decoded: dict[str, tuple[int, int]] = field(default_factory=dict)

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


def check_image_file(path: str, fmt: str) -> str | None:
    """Return None when the image exists, its header loads and the file is whole, else the
    problem (str)."""
    try:
        image_info(path, fmt)
    except FileProblem as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- file problems
@dataclass(frozen=True)
class _File:
    """One row of an image / bag table: where it is in the table and where it points."""

    pid: str
    path: str  # absolute, as the source holds it
    written: str  # as the table names it (or the absolute path when the table is unknown)
    row: int | None  # row number in the table (header = 1)

    def where(self) -> str:
        row = f"row {self.row}, " if self.row is not None else ""
        return f"{row}patient {self.pid}: {self.written}"


class _Findings:
    """File problems of one modality, grouped by kind: one error (or warning) per kind."""

    def __init__(self, source: ModalitySource, noun: str) -> None:
        self.label = (
            f"{source.path.name if source.path else source.name} (modality {source.name!r})"
        )
        self.noun = noun
        self.groups: dict[tuple[str, str, bool], list[tuple[_File, str]]] = {}

    def add(self, what: str, fix: str, file: _File, detail: str, warning: bool = False) -> None:
        self.groups.setdefault((what, fix, warning), []).append((file, detail))

    def report(self, problems: Problems) -> None:
        for (what, fix, warning), items in self.groups.items():
            shown = "; ".join(f"{f.where()}: {d}" for f, d in items[:MAX_ROWS_SHOWN])
            more = len(items) - MAX_ROWS_SHOWN
            noun = "file" if (what, fix) == _UNREADABLE else self.noun
            text = (
                f"{self.label}: {len(items)} {noun}(s) {what} (column 'path'): {shown}"
                + (f"; ... and {more} more" if more > 0 else "")
                + (f"; {fix}" if fix else "")
            )
            if warning:
                problems.warn(text)
            else:
                problems.error(DataError, text)


_UNREADABLE = ("missing or unreadable", "")


def _files(source: ModalitySource) -> list[_File]:
    """The source's files with their table rows (the table is read again for row numbers)."""
    t = source.table
    pids = t["patient_id"] if "patient_id" in t.columns else pd.Series(t.index, index=t.index)
    rows: dict[tuple[str, str], tuple[int, str]] = {}
    if source.path is not None and source.path.is_file():
        try:
            frame = read_table(source.path, source.path.name)
            base = str(source.path.parent)
            for i, (pid, p) in enumerate(zip(frame["patient_id"], frame["path"])):
                if isinstance(p, str) and p.strip():
                    key = (str(pid).strip(), os.path.normpath(os.path.join(base, p.strip())))
                    rows.setdefault(key, (i + 2, p.strip()))
        except (MultimodalError, KeyError):  # reported when the source was built
            rows = {}
    out = []
    for pid, path in zip(pids.astype(str), t["path"].astype(str)):
        row, written = rows.get((pid, path), (None, path))
        out.append(_File(pid, path, written, row))
    return out


def _sample(n: int, size: int | None, seed: int) -> np.ndarray:
    """Sorted positions of ``size`` of ``n`` items (all when ``size`` is None or >= n)."""
    if size is None or size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))


def _check_pixels(found: _Findings, file: _File, fmt: str) -> bool:
    """Decode one image and check its values; False when it could not be decoded."""
    try:
        data = read_image_array(file.path, fmt)
    except FileProblem as exc:
        found.add(*_UNREADABLE, file, str(exc))
        return False
    if data is None:  # DICOM without pydicom: nothing to decode with
        return False
    data = np.asarray(data)
    if data.dtype.kind not in "biuf":
        found.add("are not numeric", "store intensities as numbers", file, f"dtype {data.dtype}")
        return True
    if data.size == 0:
        found.add(*_UNREADABLE, file, f"has no voxels (shape {data.shape})")
        return True
    values = data.astype(np.float64, copy=False)
    finite = np.isfinite(values)
    if not finite.all():
        found.add(
            "hold NaN or infinite values",
            "fix or remove these images (a NaN voxel makes the whole image unusable)",
            file,
            f"{int((~finite).sum())} of {data.size} voxels",
        )
    elif values.min() == values.max():
        found.add(
            "are constant",
            "a blank or failed export carries no information: re-export the image or remove "
            "its row",
            file,
            f"every voxel is {values.flat[0]:g}",
        )
    return True


def _check_images(
    source: ImagingSource, problems: Problems, sample: int | None, seed: int
) -> tuple[int, int]:
    found = _Findings(source, "image")
    dims = source.spatial_dims
    readable = []
    for file, fmt in zip(_files(source), source.table["format"]):
        try:
            info = image_info(file.path, fmt)
        except FileProblem as exc:
            found.add(*_UNREADABLE, file, str(exc))
            continue
        readable.append((file, fmt))
        if info.shape is not None and len(spatial_axes(info.shape, dims)) != dims:
            found.add(
                f"do not have the modality's {dims} spatial dimensions (spatial_dims)",
                f"give one single-channel {dims}-D image per file (channels or time points in "
                f"separate files), or change modalities.{source.name}.spatial_dims in the manifest",
                file,
                f"shape {info.shape}",
            )
    decoded = sum(_check_pixels(found, *readable[i]) for i in _sample(len(readable), sample, seed))
    found.report(problems)
    return decoded, len(readable)


def _check_bags(
    source: FeatureBagSource, problems: Problems, sample: int | None, seed: int
) -> tuple[int, int]:
    found = _Findings(source, "bag")
    present = []
    for file in _files(source):
        if not os.path.isfile(file.path):
            found.add(*_UNREADABLE, file, "file not found")
        elif os.path.getsize(file.path) == 0:
            found.add(*_UNREADABLE, file, "file is empty")
        else:
            present.append(file)
    shapes: dict[_File, tuple[int, ...]] = {}
    for i in _sample(len(present), sample, seed):
        file = present[i]
        try:
            shapes[file] = tuple(bag_tensor(file.path).shape)
        except FileProblem as exc:
            reason = str(exc)
            if reason.startswith("has shape"):
                found.add("are not (N, D) arrays of numbers", "", file, reason[4:])
            elif reason.startswith("holds NaN"):
                found.add("hold NaN or infinite values", "", file, reason[6:])
            else:
                found.add(*_UNREADABLE, file, reason)
        except DataError as exc:  # an .h5 bag without h5py installed
            found.add(*_UNREADABLE, file, str(exc))
    for file, shape in shapes.items():
        if shape[0] == 0:
            found.add("hold no feature vectors", "", file, f"shape {shape}", warning=True)
    dims = Counter(shape[1] for shape in shapes.values())
    if len(dims) > 1:
        common = dims.most_common(1)[0][0]
        for file, shape in shapes.items():
            if shape[1] != common:
                found.add(
                    f"have another feature dimension than the modality's other bags ({common})",
                    f"every bag of a modality needs the same feature extractor (D = {common})",
                    file,
                    f"feature dimension {shape[1]} (shape {shape})",
                )
    found.report(problems)
    return len(shapes), len(present)


def _check_files(
    cohort: Cohort, problems: Problems, sample: int | None, seed: int
) -> dict[str, tuple[int, int]]:
    decoded = {}
    for name, source in cohort.sources.items():
        if isinstance(source, ImagingSource):
            decoded[name] = _check_images(source, problems, sample, seed)
        elif isinstance(source, FeatureBagSource):
            decoded[name] = _check_bags(source, problems, sample, seed)
    return decoded


# --------------------------------------------------------------------------- events, folds
def _check_events(cohort: Cohort, problems: Problems) -> None:
    """One event cannot be cross-validated: a training fold is left without any."""
    pt = cohort.patients
    if "event" not in pt or pt["event"].isna().all():  # patients to predict: no outcomes
        return
    counts = {c: int(event_flags(pt[c]).sum()) for c in EVENT_COLUMNS if c in pt}
    if counts["event"] != 1 or max(counts.values()) > 1:
        return
    pid = pt.index[event_flags(pt["event"])][0]
    problems.error(
        DataError,
        f"{cohort.patients_label} column 'event': only 1 patient has an event (patient {pid}); "
        "cross-validation needs an event in every training fold, so at least 2 events spread "
        "over the folds: add patients with observed events",
    )


def _split_ids(split_dir: Path) -> set[str]:
    """Patients named by a split's fold files (unreadable files are reported by the checker)."""
    ids: set[str] = set()
    for path in sorted(split_dir.glob("fold_*.csv")):
        try:
            frame = read_table(path, path.name)
        except MultimodalError:
            continue
        if "patient_id" in frame.columns:
            ids |= set(frame["patient_id"].dropna().astype(str).str.strip())
    return ids


def _check_split(cohort: Cohort, split_dir: Path, members: pd.Index, problems: Problems) -> None:
    n_before = len(problems.errors)
    folds = check_fold_files(split_dir, members, cohort.known_ids, problems)
    if len(problems.errors) > n_before:
        return
    try:
        check_training_events(folds, cohort.patients.loc[members], cohort.patients_label)
    except MultimodalError as exc:
        problems.error(type(exc), f"{split_dir.name}: {exc}")


def _check_folds(cohort: Cohort, problems: Problems) -> None:
    if cohort.folds_dir is not None:
        _check_split(cohort, cohort.folds_dir, cohort.patients.index, problems)
        return
    splits = cohort.root / "splits" if cohort.manifest is None and cohort.root else None
    if splits is None or not splits.is_dir():
        return
    for split_dir in sorted(d for d in splits.iterdir() if d.is_dir()):
        # a TCGA split restricts the cohort to its patients (Cohort.from_tcga(splits_name=...))
        members = cohort.patients.index.intersection(sorted(_split_ids(split_dir)))
        _check_split(cohort, split_dir, members, problems)


# --------------------------------------------------------------------------- entry point
def _load(path: Path, problems: Problems, require_outcomes: bool = True) -> Cohort | None:
    kind, target = locate_cohort(path)
    if kind == "tcga":
        return load_tcga(target, problems=problems)
    if kind == "pbc2":
        return Cohort.from_pbc2(target)
    return _load_from_manifest(target, problems, require_outcomes)


def validate(
    path: str | Path,
    check_files: bool = True,
    *,
    check_all_files: bool = False,
    sample: int = DEFAULT_SAMPLE,
    seed: int = 0,
    require_outcomes: bool = True,
) -> ValidationReport:
    """Check a cohort manifest or TCGA folder and collect every problem.

    Parameters
    ----------
    path : manifest file (YAML/JSON), folder holding ``cohort.yaml``, or TCGA cancer folder.
    check_files : check the image and feature-bag files (False: the tables only).
    check_all_files : decode every image and bag; by default a seeded sample of ``sample`` files
        per modality is decoded and every other file gets the cheap header check (exists, whole,
        axes match ``spatial_dims``).
    sample : files decoded per modality when not ``check_all_files``.
    seed : seed of the sample (the same seed checks the same files).
    require_outcomes : False for patients to predict (a manifest's patient table may lack
        ``time`` / ``event``, as ``multimodal predict`` allows; their covariate values are
        checked against the model by ``predict``, not here).

    Returns
    -------
    ValidationReport -- ``.ok`` is False when there is any error; never raises on bad data.
    """
    path = Path(path)
    problems = Problems(log_warnings=False)  # the report carries them: shown once, by the caller
    cohort = None
    try:
        cohort = _load(path, problems, require_outcomes)
    except MultimodalError as exc:
        known = set(problems.messages())
        for line in str(exc).splitlines():
            if line not in known:
                problems.error(type(exc), line)
    decoded: dict[str, tuple[int, int]] = {}
    if cohort is not None:
        if require_outcomes:
            check_training_covariates(cohort, problems)
        _check_events(cohort, problems)
        if check_files:
            decoded = _check_files(cohort, problems, None if check_all_files else sample, seed)
        _check_folds(cohort, problems)
    report = ValidationReport(
        path=path, errors=problems.messages(), warnings=list(problems.warnings), decoded=decoded
    )
    if cohort is not None:
        report.coverage = cohort.coverage()
        report.n_patients = len(cohort)
    log.info("validated %s: %d errors, %d warnings", path, len(report.errors), len(report.warnings))
    return report
