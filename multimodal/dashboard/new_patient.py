"""A patient who is not in the cohort: the inputs a run needs, the limits a value must respect,
and a one-patient cohort built from a form (clinical values, report text, a genomics CSV row, an
image file).

Limits (:func:`input_limits`, :func:`refusals`): a clinical number must lie in the training range
widened by :data:`TRAINING_MARGIN` of its width on each side, and inside the clinically plausible
bounds of :data:`CLINICAL_BOUNDS` where the column is known there (age 0-120 years). A value
outside is refused with a message and the form predicts nothing. An empty field is *unknown*: it
reaches the model as a missing value, handled as in training (:func:`missing_handling`), never as
a silently filled default. A modality left out (no report text, no genomics file) is not used,
and the page says so (:func:`modality_status`).

The tables go through the same schema checks as a cohort manifest's (``build_source``), so bad
input gives the usual one-line messages. Uploaded files are written to a temporary folder that
the caller owns (``workdir``); nothing is logged.

A landmark run's model also takes a few visits (:mod:`multimodal.dashboard.visits`): a table of
visit times and the values measured then; the prediction is made at the last visit (landmark =
its time) for a patient alive then.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.dashboard import visits as visit_table
from multimodal.exceptions import DataError

__all__ = [
    "CLINICAL_BOUNDS",
    "NEW_PATIENT_ID",
    "TRAINING_MARGIN",
    "Limit",
    "ModelInputs",
    "NewPatient",
    "build_cohort",
    "genomics_template",
    "input_limits",
    "missing_handling",
    "modality_status",
    "model_inputs",
    "read_genomics_row",
    "refusals",
]

NEW_PATIENT_ID = "new-patient"
_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".png", ".dcm")

#: A form value is accepted up to this share of the training range's width beyond either end.
TRAINING_MARGIN = 0.25
#: Clinically plausible bounds of common covariates (column name -> (low, high, unit)); a value
#: outside is refused whatever the training range.
CLINICAL_BOUNDS: dict[str, tuple[float, float, str]] = {
    "age": (0.0, 120.0, "years"),
    "age_years": (0.0, 120.0, "years"),
    "age_at_diagnosis": (0.0, 120.0, "years"),
    "age_at_index": (0.0, 120.0, "years"),
    "bmi": (10.0, 100.0, "kg/m²"),
}
#: Without a recorded training range: training mean +- this many training SDs.
_FALLBACK_SDS = 4.0


@dataclass
class ModelInputs:
    """What a run's model takes: modality name -> kind, and the clinical covariates.

    Attributes
    ----------
    kinds : modality -> kind (clinical, genomics, text, imaging, feature_bag).
    numeric : clinical numeric column -> training mean (what the model's missing-value handling
        puts in the value's place; never a default of the form).
    categorical : clinical categorical column -> levels seen in training.
    spatial_dims : imaging modality -> 2 or 3.
    genes : genes the model uses.
    ranges : clinical numeric column -> (min, max) over the fold models' training patients
        (None where the run did not record it).
    sds : clinical numeric column -> training SD.
    variables : longitudinal modality -> the variables the model reads (every fold model's).
    variable_ranges : longitudinal variable -> (min, max) of its training measurements.
    horizon : a landmark run's horizon (None for other runs): predictions then reach
        ``horizon`` after the landmark.
    landmarks : a landmark run's training landmarks.
    """

    kinds: dict[str, str] = field(default_factory=dict)
    numeric: dict[str, float] = field(default_factory=dict)
    categorical: dict[str, list[str]] = field(default_factory=dict)
    spatial_dims: dict[str, int] = field(default_factory=dict)
    genes: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[float, float] | None] = field(default_factory=dict)
    sds: dict[str, float] = field(default_factory=dict)
    variables: dict[str, list[str]] = field(default_factory=dict)
    variable_ranges: dict[str, tuple[float, float]] = field(default_factory=dict)
    horizon: float | None = None
    landmarks: list[float] = field(default_factory=list)

    @property
    def visit_variables(self) -> list[str]:
        """Every longitudinal variable of the model (the form's visit columns)."""
        return list(dict.fromkeys(v for vs in self.variables.values() for v in vs))

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
            out.sds = {c: float(v) for c, v in zip(prep.numeric, prep.std_)}
            out.categorical = {c: list(map(str, lv)) for c, lv in prep.levels_.items()}
            out.ranges = _training_ranges([f.pipelines[m].prep for f in model.folds], prep.numeric)
        elif kind == "genomics" and prep is not None:
            # every fold model's selected genes: a form row names them all (empty = not given)
            names = [g for f in model.folds for g in f.pipelines[m].prep.feature_names_]
            out.genes = list(dict.fromkeys(names))
        elif kind == "imaging":
            spec = fm.model.specs.get(m)
            out.spatial_dims[m] = int(getattr(spec, "spatial_dims", None) or 3)
        elif kind == "longitudinal":
            pipes = [f.pipelines[m] for f in model.folds if m in f.pipelines]
            names = [v for p in pipes for v in getattr(p, "variables", [])]
            out.variables[m] = list(dict.fromkeys(names))
            for p in pipes:
                for v, lo, hi in zip(p.variables, getattr(p, "low", []), getattr(p, "high", [])):
                    old = out.variable_ranges.get(v, (lo, hi))
                    out.variable_ranges[v] = (min(old[0], lo), max(old[1], hi))
    landmark = getattr(getattr(model, "config", None), "data", None)
    landmark = getattr(landmark, "landmark", None)
    if landmark is not None:
        out.horizon = float(landmark.horizon)
        out.landmarks = [float(t) for t in landmark.times]
    return out


def _training_ranges(preps: list[Any], columns: list[str]) -> dict[str, tuple[float, float] | None]:
    """Column -> (min, max) over every fold model's training patients (None when unrecorded)."""
    out: dict[str, tuple[float, float] | None] = {}
    for c in columns:
        lows, highs = [], []
        for p in preps:
            lo, hi = getattr(p, "min_", None), getattr(p, "max_", None)
            if lo is None or hi is None or c not in p.numeric:
                continue
            k = p.numeric.index(c)
            if lo[k] is not None and hi[k] is not None:
                lows.append(float(lo[k]))
                highs.append(float(hi[k]))
        out[c] = (min(lows), max(highs)) if lows else None
    return out


@dataclass(frozen=True)
class Limit:
    """The values a clinical number may take in the form.

    Attributes
    ----------
    column : the covariate.
    low, high : accepted values (inclusive).
    training : (min, max) of the training patients, or None when the run did not record it.
    clinical : (low, high, unit) plausible bounds of :data:`CLINICAL_BOUNDS`, or None.
    """

    column: str
    low: float
    high: float
    training: tuple[float, float] | None
    clinical: tuple[float, float, str] | None

    @property
    def unit(self) -> str:
        return self.clinical[2] if self.clinical else ""

    def describe(self) -> str:
        """``"accepted 8.75 to 106.2 years: the training range 25 to 90 widened by 25% of its
        width, within the plausible 0 to 120 years"``."""
        u = f" {self.unit}" if self.unit else ""
        parts = [f"accepted {self.low:.4g} to {self.high:.4g}{u}"]
        if self.training is not None:
            lo, hi = self.training
            parts.append(
                f"the training range {lo:.4g} to {hi:.4g} widened by "
                f"{100 * TRAINING_MARGIN:.0f}% of its width"
            )
        else:
            parts.append(f"training mean ± {_FALLBACK_SDS:g} SD (no training range recorded)")
        if self.clinical is not None:
            parts.append(f"within the plausible {self.clinical[0]:g} to {self.clinical[1]:g}{u}")
        return parts[0] + ": " + ", ".join(parts[1:])


def input_limits(inputs: ModelInputs) -> dict[str, Limit]:
    """The accepted values of every clinical number (see the module docstring)."""
    out = {}
    for c, mean in inputs.numeric.items():
        rng = inputs.ranges.get(c)
        if rng is not None:
            lo, hi = rng
            width = (hi - lo) or inputs.sds.get(c, 1.0) or 1.0
            low, high = lo - TRAINING_MARGIN * width, hi + TRAINING_MARGIN * width
        else:
            sd = inputs.sds.get(c, 1.0) or 1.0
            low, high = mean - _FALLBACK_SDS * sd, mean + _FALLBACK_SDS * sd
        bounds = CLINICAL_BOUNDS.get(str(c).lower())
        if (
            bounds is not None
            and rng is not None
            and not bounds[0] <= rng[0] <= rng[1] <= bounds[1]
        ):
            bounds = None  # the training values are in another unit (age in days): not these bounds
        if bounds is not None:
            low, high = max(low, bounds[0]), min(high, bounds[1])
        out[c] = Limit(c, float(low), float(high), rng, bounds)
    return out


def refusals(inputs: ModelInputs, patient: NewPatient, time_unit: str = "") -> list[str]:
    """Why the form's values cannot be predicted from (empty when they can): clinical numbers
    that are not finite or lie outside :func:`input_limits`; visits without a time, at a
    negative time or twice at one time (:func:`~multimodal.dashboard.visits.visit_refusals`).
    Unknown (empty) values are fine; visit values far outside the training range are refused by
    the model's input checks when it predicts. ``time_unit``: of the visit times, for the
    messages."""
    limits = input_limits(inputs)
    out = []
    if inputs.variables:
        out = visit_table.visit_refusals(patient.visits, patient.visits_raw, time_unit)
    for c, v in patient.clinical.items():
        if c not in limits or _missing(v):
            continue
        lim = limits[c]
        try:
            x = float(v)
        except (TypeError, ValueError):
            out.append(f"{c} = {v!r} is not a number; type a number or leave it empty (unknown).")
            continue
        if not np.isfinite(x):
            out.append(f"{c} = {v!r} is not a finite number; leave it empty when unknown.")
        elif not lim.low <= x <= lim.high:
            u = f" {lim.unit}" if lim.unit else ""
            out.append(
                f"{c} = {x:g}{u} is refused: {lim.describe()}. Correct it, or leave it empty "
                "(unknown) to predict without it."
            )
    return out


def missing_handling(inputs: ModelInputs, patient: NewPatient) -> list[str]:
    """How the model handles what the form leaves unknown, one sentence per item."""
    out = []
    clinical = next((m for m, k in inputs.kinds.items() if k == "clinical"), None)
    if clinical is not None and clinical in patient.present(inputs):
        for c, mean in inputs.numeric.items():
            if _missing(patient.clinical.get(c)):
                out.append(
                    f"{c} unknown: passed to the model as missing, handled as in training: the "
                    f"clinical preprocessing puts the training mean ({mean:.4g}) in its place and "
                    "flags it as missing (the deep clinical encoder reads the flag)."
                )
        for c in inputs.categorical:
            if _missing(patient.clinical.get(c)):
                out.append(f"{c} unknown: the model's 'unknown' level, as in training.")
    for m, names in inputs.variables.items():
        if m not in patient.present(inputs):
            continue
        never = [v for v in names if v not in visit_table.measured(patient.visits)["variables"]]
        if never:
            out.append(
                f"{m}: {', '.join(never)} never measured: the model's 'never measured' "
                "indicator, as for a training patient without such a measurement."
            )
    for m in inputs.of_kind("genomics"):
        if m in patient.present(inputs):
            given = patient.genomics.reindex(inputs.genes).notna().sum()
            if given < len(inputs.genes):
                out.append(
                    f"{m}: {len(inputs.genes) - given} of the model's {len(inputs.genes)} genes "
                    "not given; each is imputed with its training median, as in training."
                )
    return out


def modality_status(inputs: ModelInputs, patient: NewPatient) -> pd.DataFrame:
    """Per modality of the model: ``modality``, ``kind``, ``status`` (``used`` | ``not used``)
    and ``detail`` (what was given, or why it is not used)."""
    present = patient.present(inputs)
    rows = []
    for m, kind in inputs.kinds.items():
        used = m in present
        if kind == "clinical":
            known = [c for c, v in patient.clinical.items() if not _missing(v)]
            total = len(inputs.numeric) + len(inputs.categorical)
            detail = (
                f"{len(known)} of {total} covariates given"
                if used
                else "no covariate given: every clinical value is unknown"
            )
        elif kind == "text":
            detail = f"{len(patient.report.split())} words" if used else "no report text given"
        elif kind == "genomics":
            detail = (
                f"{int(patient.genomics.reindex(inputs.genes).notna().sum())} of "
                f"{len(inputs.genes)} genes given"
                if used
                else "no genomics file given"
            )
        elif kind == "imaging":
            detail = f"file {patient.image[0]}" if used else "no image given"
        elif kind == "longitudinal":
            got = visit_table.measured(patient.visits)
            detail = (
                f"{got['visits']} visit(s), {got['values']} value(s) of "
                f"{len(got['variables'])} of {len(inputs.variables.get(m, []))} variables"
                if used
                else "no visit values given"
            )
        else:
            detail = "not available in the form"
        rows.append((m, kind, "used" if used else "not used", detail))
    return pd.DataFrame(rows, columns=["modality", "kind", "status", "detail"])


def genomics_template(inputs: ModelInputs) -> str:
    """CSV text of the genomics file the form expects: ``patient_id`` and one column per gene
    the model uses (every fold model's genes), one row to fill in (empty = unknown)."""
    frame = pd.DataFrame([[NEW_PATIENT_ID] + [""] * len(inputs.genes)])
    frame.columns = ["patient_id", *inputs.genes]
    return frame.to_csv(index=False)


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
    ``image`` (file name, bytes) for ``image_modality``; ``visits`` (a landmark run): one row
    per visit, ``time`` and a column per variable (:mod:`~multimodal.dashboard.visits`), as
    numbers, ``visits_raw`` as typed (to name cells that are not numbers)."""

    clinical: dict[str, Any] = field(default_factory=dict)
    report: str | None = None
    genomics: pd.Series | None = None
    image: tuple[str, bytes] | None = None
    visits: pd.DataFrame | None = None
    visits_raw: pd.DataFrame | None = None

    def landmark(self) -> float:
        """The landmark a landmark run predicts at: the last visit's time (0 without visits)."""
        last = visit_table.last_visit(self.visits)
        return 0.0 if last is None else last

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
            if kind == "longitudinal" and visit_table.measured(self.visits)["values"]:
                out.add(m)
        return out


def _missing(v: Any) -> bool:
    return (
        v is None
        or (isinstance(v, float) and np.isnan(v))
        or (isinstance(v, str) and not v.strip())
    )


def build_cohort(
    inputs: ModelInputs, patient: NewPatient, workdir: str | Path, time_unit: str | None = None
):
    """A one-patient :class:`~multimodal.data.cohort.Cohort` (id ``new-patient``).

    ``time_unit``: the unit of the visit times (the cohort's). The patient's outcome is unknown
    (a landmark run: no follow-up time, so any landmark is a time the patient is alive at).

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
        elif kind == "longitudinal":
            from multimodal.data.longitudinal import TIME_UNITS

            frame = visit_table.long_table(patient.visits, pid)
            frame = frame[frame["variable"].isin(inputs.variables.get(m, []))]
            if time_unit in TIME_UNITS:
                spec["time_unit"] = time_unit
        else:
            continue
        source = build_source(m, frame, spec, f"{m} (form)", problems, known, workdir)
        if source is not None:
            sources[m] = source
    problems.raise_if_any()
    if inputs.horizon is not None:  # a landmark run: the follow-up is unknown, not over at 0
        # (a float NaN event: landmarking reads a nullable boolean <NA> as a value)
        patients = pd.DataFrame({"time": [np.nan], "event": [np.nan]}, index=known)
    else:
        patients = pd.DataFrame({"time": [0.0], "event": [False]}, index=known)
    return Cohort(patients, sources, name="new-patient", root=workdir)
