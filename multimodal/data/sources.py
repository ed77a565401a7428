"""Modality sources: one class per modality kind, each holding its table keyed by ``patient_id``.

A source is built from an already-read table by :meth:`ModalitySource.build`, which checks the
table against its JSON Schema (``data_schemas/<kind>_*.schema.json``), reports problems to a
:class:`~multimodal.data.manifest.Problems` collector, drops rows of patients absent from the
patient table (a warning: a patient may have a modality without being in the cohort, not the
reverse) and converts types once. A patient missing from a source simply lacks that modality.

Row numbers in messages: header = row 1, first data row = row 2.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from multimodal.data.manifest import (
    ABSURD,
    MAX_ROWS_SHOWN,
    Problems,
    coerce_column,
    load_schema,
    outcome_leak,
    rows_text,
)
from multimodal.exceptions import DataError, SchemaError
from multimodal.registry import Registry, did_you_mean
from multimodal.types import is_outcome_column

__all__ = [
    "SOURCES",
    "ClinicalSource",
    "FeatureBagSource",
    "GenomicsSource",
    "ImagingSource",
    "ModalitySource",
    "TextSource",
    "build_source",
    "check_covariate_values",
    "check_finite",
    "check_patient_ids",
    "check_required_columns",
]

SOURCES: Registry[type[ModalitySource]] = Registry("modality kind")

_NUMERIC = {"type": ["number", "null"]}
_ID = {"type": "string"}


def check_required_columns(
    frame: pd.DataFrame, schema_name: str, label: str, problems: Problems
) -> bool:
    """Report required columns (from the table's JSON Schema) that ``frame`` lacks."""
    ok = True
    for col in load_schema(schema_name).get("required", []):
        if col not in frame.columns:
            ok = False
            problems.error(
                SchemaError,
                f"{label}: required column {col!r} is missing.{did_you_mean(col, map(str, frame.columns))} "
                f"Columns found: {', '.join(map(str, frame.columns[:12]))}"
                + (" ..." if len(frame.columns) > 12 else ""),
            )
    return ok


def check_patient_ids(
    frame: pd.DataFrame,
    label: str,
    known_ids: pd.Index | None,
    problems: Problems,
    unique: bool,
) -> pd.DataFrame:
    """Clean ``patient_id``; report empty/duplicate ids; drop (with a warning) unknown patients."""
    frame = frame.copy()
    frame["patient_id"] = coerce_column(frame, "patient_id", _ID, label, problems)
    frame = frame[frame["patient_id"].notna()]
    if unique:
        dup = frame["patient_id"].duplicated(keep=False).to_numpy()
        if dup.any():
            pos = np.flatnonzero(dup)
            ids = frame["patient_id"]
            problems.error(
                DataError,
                f"{label}: patient_id is duplicated in {len(pos)} rows "
                f"({rows_text(pos, ids)}); keep one row per patient",
            )
    if known_ids is not None:
        unknown = ~frame["patient_id"].isin(known_ids).to_numpy()
        if unknown.any():
            ids = frame["patient_id"][unknown].unique()
            problems.warn(
                f"{label}: {len(ids)} patient(s) are not in the patient table and are ignored "
                f"(e.g. {', '.join(map(str, ids[:5]))})"
            )
            frame = frame[~unknown]
    return frame


def _inside_root(
    frame: pd.DataFrame,
    column: str,
    label: str,
    problems: Problems,
    base_dir: Path | None,
    root: Path,
) -> pd.DataFrame:
    """``frame`` without the rows whose path resolves outside ``root`` (each reported)."""
    base = str(base_dir) if base_dir is not None else os.getcwd()
    top = os.path.realpath(root)
    raw = frame[column]
    written = raw.where(raw.notna(), "").astype(str).str.strip()
    resolved = [os.path.realpath(os.path.join(base, p)) if p else "" for p in written]
    outside = np.array(
        [bool(r) and r != top and not r.startswith(top + os.sep) for r in resolved], dtype=bool
    )
    if not outside.any():
        return frame
    pos = np.flatnonzero(outside)
    ids = frame["patient_id"]
    shown = [
        f"{rows_text(pos[i : i + 1], ids)}: {written.iloc[p]!r} (resolves to {resolved[p]})"
        for i, p in enumerate(pos[:MAX_ROWS_SHOWN])
    ]
    more = f"; ... and {len(pos) - MAX_ROWS_SHOWN} more" if len(pos) > MAX_ROWS_SHOWN else ""
    problems.error(
        DataError,
        f"{label} column {column!r}: {len(pos)} row(s) point outside the cohort folder {top} "
        f"(symbolic links followed): {'; '.join(shown)}{more}; move the files into the cohort "
        "folder, or set allow_external_paths: true in the manifest to use files elsewhere",
    )
    return frame[~outside]


def check_finite(
    values: pd.DataFrame, ids: pd.Series, label: str, problems: Problems, max_columns: int = 20
) -> bool:
    """Report cells that are infinite or beyond +-:data:`ABSURD` (NaN = missing is fine), per
    column (the first ``max_columns``); False when there are any. ``values`` keeps the file's
    row index (for row numbers)."""
    x = values.to_numpy(dtype=np.float64, copy=False)
    with np.errstate(invalid="ignore"):
        bad = np.isinf(x) | (np.abs(x) > ABSURD)
    cols = np.flatnonzero(bad.any(axis=0))
    for j in cols[:max_columns]:
        pos = np.flatnonzero(bad[:, j])
        column = values.iloc[:, j]
        problems.error(
            DataError,
            f"{label} column {str(values.columns[j])!r}: {len(pos)} row(s) are infinite or "
            f"beyond +-{ABSURD:g}: {rows_text(pos, ids, column)}; use finite values of a "
            "plausible scale (empty = not measured)",
        )
    if len(cols) > max_columns:
        problems.error(
            DataError,
            f"{label}: {len(cols) - max_columns} more column(s) hold infinite or absurd values",
        )
    return not len(cols)


#: Clinical columns read as an age in years, and the ages a patient can have.
AGE_COLUMNS, AGE_YEARS = ("age", "age_years", "age_at_diagnosis", "age_at_index"), (0.0, 120.0)
#: A numeric covariate's value more than this many interquartile ranges beyond its quartiles
#: warns (a unit or typing mistake; heavy-tailed labs reach a few).
OUTLIER_IQRS = 20.0


def check_covariate_values(
    source: ClinicalSource, label: str, problems: Problems, patients: Iterable[str] | None = None
) -> None:
    """Values a training cohort's numeric covariates should not hold, for ``patients`` (default:
    every row). Ages (columns of :data:`AGE_COLUMNS`): a negative age, or one above 120 years in a
    column whose median is a plausible age (a unit slip in some rows), is an error; a column
    whose median is above 120 (ages in days or months throughout) warns, since the model
    standardises it but reports and the dashboard read ages as years. Any other numeric value
    more than :data:`OUTLIER_IQRS` interquartile ranges beyond its column's quartiles warns.
    Patients to predict are not checked here: their inputs are checked against the model's
    training range (:mod:`multimodal.models.input_checks`)."""
    table = source.table if patients is None else source.table.loc[lambda t: t.index.isin(patients)]
    ids = pd.Series(table.index.astype(str), index=np.arange(len(table)))
    for col in source.numeric:
        values = pd.Series(pd.to_numeric(table[col], errors="coerce").to_numpy(), index=ids.index)
        x = values.to_numpy(dtype=np.float64)
        finite = x[np.isfinite(x)]
        if not len(finite):
            continue
        median = float(np.median(finite))
        if str(col).lower() in AGE_COLUMNS:
            low, high = AGE_YEARS
            with np.errstate(invalid="ignore"):
                bad = (x < low) | ((x > high) if median <= high else np.zeros_like(x, bool))
            if bad.any():
                pos = np.flatnonzero(bad)
                problems.error(
                    DataError,
                    f"{label} column {col!r}: {len(pos)} patient(s) are not an age in years "
                    f"({low:g} to {high:g}; the column's median is {median:g}): "
                    f"{_patients_text(pos, ids, values)}; correct the values (ages in days "
                    "divided by 365.25 give years), or leave the cells empty (missing)",
                )
            elif median > high:
                problems.warn(
                    f"{label} column {col!r}: the median age is {median:g}, not an age in "
                    "years; are the ages in days or months? The model standardises the column, "
                    "but reports and the dashboard read it as years: convert it to years"
                )
            continue
        if len(finite) < 20:
            continue
        q1, q3 = np.percentile(finite, [25, 75])
        width = q3 - q1
        if width <= 0:
            continue
        with np.errstate(invalid="ignore"):
            far = (x < q1 - OUTLIER_IQRS * width) | (x > q3 + OUTLIER_IQRS * width)
        if far.any():
            pos = np.flatnonzero(far)
            problems.warn(
                f"{label} column {col!r}: {len(pos)} patient(s) lie more than {OUTLIER_IQRS:g} "
                f"interquartile ranges beyond the quartiles ({q1:g} and {q3:g}): "
                f"{_patients_text(pos, ids, values)}; check the unit and the values (the model "
                "trains on them as they are)"
            )


def _patients_text(pos: np.ndarray, ids: pd.Series, values: pd.Series) -> str:
    """``patient P004: -3; ... and 12 more`` for the positions ``pos``."""
    shown = "; ".join(f"patient {ids.iloc[p]}: {values.iloc[p]:g}" for p in pos[:MAX_ROWS_SHOWN])
    more = f"; ... and {len(pos) - MAX_ROWS_SHOWN} more" if len(pos) > MAX_ROWS_SHOWN else ""
    return shown + more


def _absolute_paths(paths: pd.Series, base_dir: Path | None) -> pd.Series:
    base = str(base_dir) if base_dir is not None else os.getcwd()
    return pd.Series(
        [os.path.normpath(os.path.join(base, p)) for p in paths.astype(str)],
        index=paths.index,
        dtype=object,
    )


class ModalitySource:
    """Base class: a named table of one modality kind.

    Attributes
    ----------
    kind : ModalityKind
    name : the modality's name in the cohort (manifest key).
    table : DataFrame (layout per kind, see docs/architecture.md).
    path : the file the table came from, or None.
    """

    kind: ClassVar[str] = ""
    schema: ClassVar[str] = ""
    one_row_per_patient: ClassVar[bool] = True
    #: the table's column of file paths (kept inside the cohort folder), or "" for none
    path_column: ClassVar[str] = ""

    def __init__(self, name: str, table: pd.DataFrame, path: Path | None = None) -> None:
        self.name = name
        self.table = table
        self.path = path

    @property
    def patient_ids(self) -> pd.Index:
        """Unique ids of the patients that have this modality (table order)."""
        if "patient_id" in self.table.columns:
            return pd.Index(self.table["patient_id"].unique(), name="patient_id")
        return pd.Index(self.table.index.unique(), name="patient_id")

    def _copy_with(self, table: pd.DataFrame) -> ModalitySource:
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.table = table
        new.__dict__.pop("_texts", None)
        return new

    def subset(self, ids: Iterable[str]) -> ModalitySource:
        """A copy holding only the rows of ``ids`` (patients not here are simply absent)."""
        ids = pd.Index(list(ids))
        if "patient_id" in self.table.columns:
            return self._copy_with(self.table[self.table["patient_id"].isin(ids)])
        return self._copy_with(self.table[self.table.index.isin(ids)])

    @classmethod
    def build(
        cls,
        name: str,
        frame: pd.DataFrame,
        spec: dict[str, Any],
        label: str,
        problems: Problems,
        known_ids: pd.Index | None = None,
        base_dir: Path | None = None,
        root: Path | None = None,
    ) -> ModalitySource | None:
        """Check ``frame`` and build the source; returns None when it cannot be used.

        Parameters
        ----------
        name : modality name. frame : the table as read. spec : the manifest block.
        label : file name for messages. problems : error/warning collector.
        known_ids : patient ids of the cohort (other rows are dropped with a warning).
        base_dir : folder that relative paths inside the table resolve against.
        root : the cohort folder: file paths in the table must resolve (symbolic links followed)
            inside it, rows pointing elsewhere are errors and dropped. None: no restriction
            (the manifest's ``allow_external_paths: true``).
        """
        if not check_required_columns(frame, cls.schema, label, problems):
            return None
        frame = check_patient_ids(frame, label, known_ids, problems, cls.one_row_per_patient)
        if cls.path_column and root is not None:
            frame = _inside_root(frame, cls.path_column, label, problems, base_dir, root)
        return cls._from_checked(name, frame, spec, label, problems, base_dir)

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, patients={len(self.patient_ids)})"


@SOURCES.register("clinical")
class ClinicalSource(ModalitySource):
    """Clinical covariates. ``table``: index patient_id; ``numeric`` columns float (NaN = missing),
    ``categorical`` columns str (NaN = missing)."""

    kind = "clinical"
    schema = "clinical_table"

    def __init__(self, name, table, numeric: list[str], categorical: list[str], path=None) -> None:
        super().__init__(name, table, path)
        self.numeric = list(numeric)
        self.categorical = list(categorical)

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        numeric, categorical = spec.get("numeric"), spec.get("categorical")
        columns = [c for c in frame.columns if c != "patient_id"]
        if numeric is None and categorical is None:
            usable = [c for c in columns if not is_outcome_column(c)]
            skipped = sorted(set(columns) - set(usable))
            if skipped:
                problems.warn(f"{label}: outcome column(s) {skipped} are not used as covariates")
            num = frame[usable].select_dtypes("number").columns
            numeric = list(num)
            categorical = [c for c in usable if c not in num]
        numeric, categorical = list(numeric or []), list(categorical or [])
        ok = True
        for col in numeric + categorical:
            role = "a numeric covariate" if col in numeric else "a categorical covariate"
            if is_outcome_column(col):
                err = outcome_leak(col, label, role)
                problems.error(type(err), str(err))
                ok = False
            elif col not in frame.columns:
                # "grade" -> histological_grade: a name inside a column's says more than spelling
                covariates = [str(c) for c in columns if not is_outcome_column(c)]
                holding = [c for c in covariates if str(col) and str(col).lower() in c.lower()]
                hint = (
                    f" Did you mean {' or '.join(map(repr, holding[:3]))}?"
                    if holding
                    else did_you_mean(col, covariates)
                )
                shown = ", ".join(map(str, columns[:30])) + (" ..." if len(columns) > 30 else "")
                problems.error(
                    SchemaError,
                    f"{label}: declared covariate {col!r} is not a column.{hint} Columns: {shown}",
                )
                ok = False
        both = set(numeric) & set(categorical)
        if both:
            problems.error(
                SchemaError, f"{label}: {sorted(both)} declared both numeric and categorical"
            )
            ok = False
        if not ok:
            return None
        table = pd.DataFrame(index=pd.Index(frame["patient_id"], name="patient_id"))
        for col in numeric:
            table[col] = coerce_column(frame, col, _NUMERIC, label, problems).to_numpy()
        for col in categorical:
            raw = frame[col]
            table[col] = raw.where(raw.isna(), raw.astype(str).str.strip()).to_numpy(dtype=object)
        return cls(name, table, numeric, categorical)


@SOURCES.register("genomics")
class GenomicsSource(ModalitySource):
    """Molecular features. ``table``: index patient_id, float64 columns (NaN = not measured);
    ``groups``: dict group -> list of columns (None when ungrouped)."""

    kind = "genomics"
    schema = "genomics_table"

    def __init__(self, name, table, groups: dict[str, list[str]] | None = None, path=None) -> None:
        super().__init__(name, table, path)
        self.groups = groups

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        features = [c for c in frame.columns if c != "patient_id"]
        leaks = [c for c in features if is_outcome_column(c)]
        if leaks:
            err = outcome_leak(", ".join(map(str, leaks[:10])), label, "a genomics feature")
            problems.error(type(err), str(err))
            return None
        if not features:
            problems.error(SchemaError, f"{label}: no feature columns besides patient_id")
            return None
        values = frame[features]
        bad_cols = [c for c in features if not pd.api.types.is_numeric_dtype(values[c])]
        n_before = len(problems.errors)
        for col in bad_cols[:20]:  # report the first 20 offending columns, not thousands
            coerce_column(frame, col, _NUMERIC, label, problems)
        if len(bad_cols) > 20:
            problems.error(DataError, f"{label}: {len(bad_cols) - 20} more non-numeric columns")
        if len(problems.errors) > n_before:
            return None
        table = values.astype(np.float64)
        if not check_finite(table, frame["patient_id"], label, problems):
            return None
        table.index = pd.Index(frame["patient_id"], name="patient_id")
        table.columns = [str(c) for c in table.columns]
        groups = cls._groups(spec, list(table.columns), label, problems)
        return cls(name, table, groups)

    @staticmethod
    def _groups(spec, columns, label, problems) -> dict[str, list[str]] | None:
        groups = spec.get("groups")
        where = label
        if spec.get("groups_path") is not None:
            gpath = Path(spec["groups_path"])
            where = gpath.name
            from multimodal.data.manifest import read_table

            try:
                gframe = read_table(gpath, where, columns_as_str=("group", "feature"))
            except DataError as exc:
                problems.error(DataError, str(exc))
                return None
            schema = load_schema("genomics_table")["$defs"]["groups_row"]
            missing = [c for c in schema["required"] if c not in gframe.columns]
            if missing:
                problems.error(
                    SchemaError, f"{where}: needs columns 'group' and 'feature' (missing {missing})"
                )
                return None
            gframe = gframe.dropna(subset=["group", "feature"])
            groups = {
                str(g): list(map(str, f)) for g, f in gframe.groupby("group", sort=False)["feature"]
            }
        if not groups:
            return None
        known = set(columns)
        out = {}
        for group, feats in groups.items():
            missing = [f for f in feats if f not in known]
            if missing:
                hint = did_you_mean(missing[0], columns)
                problems.error(
                    SchemaError,
                    f"{where}: group {group!r} names {len(missing)} feature(s) that are not columns of "
                    f"{label}: {', '.join(missing[:5])}.{hint}",
                )
            out[str(group)] = [f for f in feats if f in known]
        return out


@SOURCES.register("text")
class TextSource(ModalitySource):
    """Report text. ``table``: columns patient_id, text, [date (datetime64), report_type];
    several rows per patient allowed."""

    kind = "text"
    schema = "text_table"
    one_row_per_patient = False

    @classmethod
    def build(cls, name, frame, spec, label, problems, known_ids=None, base_dir=None, root=None):
        col = spec.get("text_column") or "text"
        if col != "text" and col in frame.columns:
            frame = frame.drop(columns=["text"], errors="ignore").rename(columns={col: "text"})
        elif col != "text":
            problems.error(
                SchemaError,
                f"{label}: text_column {col!r} is not a column.{did_you_mean(col, map(str, frame.columns))}",
            )
            return None
        return super().build(name, frame, spec, label, problems, known_ids, base_dir, root)

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        keep = [c for c in ("patient_id", "text", "date", "report_type") if c in frame.columns]
        frame = frame[keep].copy()
        text = frame["text"].astype("string").str.strip()
        empty = (text.isna() | (text == "")).to_numpy(bool)
        if empty.any():
            problems.warn(
                f"{label}: {int(empty.sum())} row(s) with empty text are ignored "
                f"({rows_text(np.flatnonzero(empty), frame['patient_id'])})"
            )
        frame["text"] = text.astype(object)
        if "date" in frame.columns:
            raw = frame["date"]
            parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
            bad = (raw.notna() & parsed.isna()).to_numpy(bool)
            if bad.any():
                pos = np.flatnonzero(bad)
                problems.error(
                    DataError,
                    f"{label} column 'date': {len(pos)} row(s) are not dates: "
                    f"{rows_text(pos, frame['patient_id'], raw)}; use ISO dates like 2021-03-14",
                )
            frame["date"] = parsed
        return cls(name, frame[~empty].reset_index(drop=True))

    def texts(self, separator: str = "\n\n") -> pd.Series:
        """One text per patient: reports joined in date order (undated last, then file order).

        Returns
        -------
        Series indexed by patient_id (str), values str.
        """
        cached = self.__dict__.get("_texts")
        if cached is not None and cached[0] == separator:
            return cached[1]
        t = self.table
        if "date" in t.columns:
            t = t.sort_values("date", kind="stable", na_position="last")
        out = t.groupby("patient_id", sort=False)["text"].agg(separator.join)
        out = out.reindex(self.patient_ids)
        out.name = "text"
        self.__dict__["_texts"] = (separator, out)
        return out


_IMAGE_SUFFIXES = {".nii.gz": "nifti", ".nii": "nifti", ".png": "png", ".dcm": "dicom"}


@SOURCES.register("imaging")
class ImagingSource(ModalitySource):
    """Images. ``table``: index patient_id, columns path (absolute str) and format
    (nifti | dicom | png; a DICOM series is a folder); ``spatial_dims`` 2 or 3."""

    kind = "imaging"
    schema = "imaging_index"
    one_row_per_patient = False
    path_column = "path"

    def __init__(self, name, table, spatial_dims: int = 3, path=None) -> None:
        super().__init__(name, table, path)
        self.spatial_dims = int(spatial_dims)

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        path = coerce_column(frame, "path", {"type": "string"}, label, problems)
        lower = path.astype("string").str.lower()
        inferred = pd.Series(np.nan, index=frame.index, dtype=object)
        for suffix, fmt in _IMAGE_SUFFIXES.items():
            inferred = inferred.where(
                inferred.notna() | ~lower.str.endswith(suffix).fillna(False), fmt
            )
        no_suffix = ~lower.str.contains(r"\.[a-z0-9]+$", regex=True).fillna(True)
        inferred = inferred.where(inferred.notna() | ~no_suffix, "dicom")  # a folder = DICOM series
        if "format" in frame.columns:
            given = frame["format"].astype("string").str.strip().str.lower()
            tmp = frame.assign(format=given.astype(object))
            prop = load_schema("imaging_index")["properties"]["format"]
            given = coerce_column(tmp, "format", prop, label, problems)
            fmt = given.where(given.notna(), inferred)
        else:
            fmt = inferred
        bad = (fmt.isna() & path.notna()).to_numpy(bool)
        if bad.any():
            pos = np.flatnonzero(bad)
            problems.error(
                DataError,
                f"{label} column 'path': cannot tell the image format of {len(pos)} row(s): "
                f"{rows_text(pos, frame['patient_id'], frame['path'])}; use .nii/.nii.gz, .png, "
                "a .dcm file or a DICOM folder, or add a 'format' column (nifti|dicom|png)",
            )
        ok = path.notna().to_numpy(bool) & ~bad
        table = pd.DataFrame(
            {"path": _absolute_paths(path[ok], base_dir).to_numpy(), "format": fmt[ok].to_numpy()},
            index=pd.Index(frame["patient_id"][ok], name="patient_id"),
        )
        dims = spec.get("spatial_dims")
        if dims is None:
            dims = 2 if len(table) and (table["format"] == "png").all() else 3
        return cls(name, table, int(dims))


_BAG_SUFFIXES = tuple(load_schema("feature_bag_index").get("x-suffixes", [".pt", ".npy", ".h5"]))


@SOURCES.register("feature_bag")
class FeatureBagSource(ModalitySource):
    """Bags of precomputed features. ``table``: columns patient_id, path (absolute str),
    [slide_id]; several rows per patient (slides) allowed."""

    kind = "feature_bag"
    schema = "feature_bag_index"
    one_row_per_patient = False
    path_column = "path"

    @classmethod
    def _from_checked(cls, name, frame, spec, label, problems, base_dir):
        path = coerce_column(frame, "path", {"type": "string"}, label, problems)
        bad = (
            path.notna() & ~path.astype("string").str.lower().str.endswith(_BAG_SUFFIXES)
        ).to_numpy(bool)
        if bad.any():
            pos = np.flatnonzero(bad)
            problems.error(
                DataError,
                f"{label} column 'path': {len(pos)} row(s) are not feature files "
                f"({', '.join(_BAG_SUFFIXES)}): {rows_text(pos, frame['patient_id'], frame['path'])}",
            )
        ok = path.notna().to_numpy(bool) & ~bad
        table = pd.DataFrame(
            {
                "patient_id": frame["patient_id"][ok].to_numpy(),
                "path": _absolute_paths(path[ok], base_dir).to_numpy(),
            }
        )
        if "slide_id" in frame.columns:
            sid = frame["slide_id"][ok]
            table["slide_id"] = sid.where(sid.isna(), sid.astype(str)).to_numpy(dtype=object)
        return cls(name, table)


def build_source(
    name: str,
    frame: pd.DataFrame,
    spec: dict[str, Any],
    label: str,
    problems: Problems,
    known_ids: pd.Index | None = None,
    base_dir: Path | None = None,
    root: Path | None = None,
) -> ModalitySource | None:
    """Build the source of ``spec["kind"]`` (see :meth:`ModalitySource.build`)."""
    cls = SOURCES.get(spec["kind"])
    source = cls.build(name, frame, spec, label, problems, known_ids, base_dir, root)
    if source is not None and spec.get("path") is not None:
        source.path = Path(spec["path"])
    return source
