"""A patient who is not in the cohort: the inputs a run needs, and a one-patient cohort built
from a form (clinical values, report text, a genomics CSV row, an image file).

The tables go through the same schema checks as a cohort manifest's (``build_source``), so bad
input gives the usual one-line messages. Uploaded files are written to a temporary folder that
the caller owns (``workdir``); nothing is logged.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError

__all__ = [
    "NEW_PATIENT_ID",
    "ModelInputs",
    "NewPatient",
    "build_cohort",
    "model_inputs",
    "read_genomics_row",
]

NEW_PATIENT_ID = "new-patient"
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".dcm")


@dataclass
class ModelInputs:
    """What a run's model takes: modality name -> kind, and the clinical covariates.

    Attributes
    ----------
    kinds : modality -> kind (clinical, genomics, text, imaging, feature_bag).
    numeric : clinical numeric column -> training mean (a default for the form).
    categorical : clinical categorical column -> levels seen in training.
    spatial_dims : imaging modality -> 2 or 3.
    genes : genes the model uses.
    """

    kinds: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, float] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    spatial_dims: dict[str, int] = field(default_factory=dict)
    genes: list[str] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[str]:
        return [m for m, k in self.kinds.items() if k == kind]


def model_inputs(model: Any) -> ModelInputs:
    """The inputs of a :class:`~multimodal.models.run.TrainedModel` (from fold 0's preprocessing)."""
    out = ModelInputs()
    fm = model.folds[0]
    for m, pipe in fm.pipelines.items():
        kind = getattr(pipe, "kind", "")
        out.kinds[m] = kind
        prep = getattr(pipe, "prep", None)
        if kind == "clinical" and prep is not None:
            out.numeric = {c: float(v) for c, v in zip(prep.numeric, prep.mean_)}
            out.categorical = {c: list(map(str, lv)) for c, lv in prep.levels_.items()}
        elif kind == "genomics" and prep is not None:
            # every fold model's selected genes: a form row names them all (empty = not given)
            names = [g for f in model.folds for g in f.pipelines[m].prep.feature_names_]
            out.genes = list(dict.fromkeys(names))
        elif kind == "imaging":
            spec = fm.model.specs.get(m)
            out.spatial_dims[m] = int(getattr(spec, "spatial_dims", None) or 3)
    return out


def read_genomics_row(data: bytes) -> pd.Series:
    """The first row of an uploaded genomics CSV (columns = genes; a ``patient_id`` column is
    ignored) as a float Series."""
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"the genomics file is not a readable CSV ({exc})") from None
    frame = frame.drop(columns=[c for c in frame.columns if str(c).lower() == "patient_id"])
    if frame.empty:
        raise DataError("the genomics file has no data row; give one row with a column per gene")
    row = pd.to_numeric(frame.iloc[0], errors="coerce")
    if row.notna().sum() == 0:
        raise DataError("the genomics file's first row has no numeric values")
    return row.astype(float)


@dataclass
class NewPatient:
    """Form values: ``clinical`` column -> value; ``report`` text; ``genomics`` gene -> value;
    ``image`` (file name, bytes) for ``image_modality``."""

    clinical: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    genomics: pd.Series | None = None
    image: tuple[str, bytes] | None = None

    def present(self, inputs: ModelInputs) -> set[str]:
        out = set()
        for m, kind in inputs.kinds.items():
            if kind == "clinical" and any(not _missing(v) for v in self.clinical.values()):
                out.add(m)
            if kind == "text" and self.report and self.report.strip():
                out.add(m)
            if kind == "genomics" and self.genomics is not None:
                out.add(m)
            if kind == "imaging" and self.image is not None:
                out.add(m)
        return out


def _missing(v: Any) -> bool:
    return (
        v is None
        or (isinstance(v, float) and np.isnan(v))
        or (isinstance(v, str) and not v.strip())
    )


def build_cohort(inputs: ModelInputs, patient: NewPatient, workdir: str | Path):
    """A one-patient :class:`~multimodal.data.cohort.Cohort` (id ``new-patient``).

    Raises
    ------
    SchemaError, DataError
        The values do not pass the cohort checks (e.g. a negative age, an unknown image type).
    """
    from multimodal.data.cohort import Cohort
    from multimodal.data.manifest import Problems
    from multimodal.data.sources import build_source

    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    pid = NEW_PATIENT_ID
    known = pd.Index([pid], name="patient_id")
    problems = Problems()
    sources = {}
    present = patient.present(inputs)
    for m, kind in inputs.kinds.items():
        if m not in present:
            continue
        spec: dict[str, Any] = {"kind": kind}
        if kind == "clinical":
            spec.update(numeric=list(inputs.numeric), categorical=list(inputs.categorical))
            row = {"patient_id": pid}
            for c in [*inputs.numeric, *inputs.categorical]:
                v = patient.clinical.get(c)
                row[c] = None if _missing(v) else v
            frame = pd.DataFrame([row])
        elif kind == "text":
            frame = pd.DataFrame([{"patient_id": pid, "text": patient.report}])
        elif kind == "genomics":
            # the model's genes the user did not give are empty cells (imputed), not absent
            # columns, which prediction would refuse as a renamed table
            g = patient.genomics.reindex(
                list(dict.fromkeys([*inputs.genes, *patient.genomics.index]))
            )
            frame = pd.DataFrame([g.to_numpy(float)], columns=[str(c) for c in g.index])
            frame.insert(0, "patient_id", pid)
        elif kind == "imaging":
            name, data = patient.image
            suffix = next((s for s in _IMAGE_SUFFIXES if name.lower().endswith(s)), None)
            if suffix is None:
                raise DataError(
                    f"image {name!r}: unsupported file type; upload NIfTI (.nii, .nii.gz), PNG or DICOM (.dcm)"
                )
            target = workdir / f"image{suffix}"
            target.write_bytes(data)
            spec["spatial_dims"] = inputs.spatial_dims.get(m, 3)
            frame = pd.DataFrame([{"patient_id": pid, "path": target.name}])
        else:
            continue
        source = build_source(m, frame, spec, f"{m} (form)", problems, known, workdir)
        if source is not None:
            sources[m] = source
    problems.raise_if_any()
    patients = pd.DataFrame({"time": [0.0], "event": [False]}, index=known)
    return Cohort(patients, sources, name="new-patient", root=workdir)
