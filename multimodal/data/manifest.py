"""Cohort manifests, JSON Schemas of the tables, and the table-reading helpers they share.

Row numbers in every message follow the spreadsheet convention: the header is row 1, so the
first data row is row 2 (``patients.csv row 5`` is the 4th patient). Parquet tables use the same
numbering as their CSV export would.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from multimodal.exceptions import DataError, LeakageError, MultimodalError, SchemaError
from multimodal.registry import did_you_mean
from multimodal.shipped import shipped_dir
from multimodal.types import MODALITY_KINDS

__all__ = [
    "ABSURD",
    "SCHEMA_DIR",
    "Manifest",
    "Problems",
    "coerce_column",
    "load_manifest",
    "load_schema",
    "read_table",
    "resolve_path",
    "rows_text",
]

log = logging.getLogger(__name__)

#: Folder of the JSON Schemas: ``data_schemas/`` of the source tree, ``multimodal/_schemas`` in a wheel.
SCHEMA_DIR = shipped_dir("data_schemas")

#: How many offending rows a message lists before "... and N more".
MAX_ROWS_SHOWN = 5

#: Numbers beyond +-ABSURD are refused like infinities: no measurement is that large, and
#: standardising such a column overflows (it is then dropped or zeroed without a word).
ABSURD = 1e100

_TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq")


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load ``data_schemas/<name>.schema.json`` (cached; do not mutate the result)."""
    path = SCHEMA_DIR / f"{name}.schema.json"
    if not path.is_file():
        raise SchemaError(
            f"JSON Schema {path} is missing; reinstall the package from its source tree"
        )
    return json.loads(path.read_text(encoding="utf-8"))


class Problems:
    """Collects errors and warnings so that a check can report all problems at once.

    Each error keeps its exception class (:class:`SchemaError`, :class:`DataError`,
    :class:`LeakageError`); :meth:`raise_if_any` raises the first class with every message.

    Parameters
    ----------
    log_warnings : also log each warning (``logging.WARNING``) when it is added. Loaders that
        raise on errors keep this so that warnings reach the user; a caller that reports the
        collected warnings itself (:func:`multimodal.data.validate`) turns it off, or every
        warning would be shown twice.
    """

    def __init__(self, log_warnings: bool = True) -> None:
        self.errors: list[tuple[type[MultimodalError], str]] = []
        self.warnings: list[str] = []
        self.log_warnings = log_warnings

    def error(self, cls: type[MultimodalError], message: str) -> None:
        self.errors.append((cls, message))

    def warn(self, message: str) -> None:
        """Add a warning; one already collected is not added (or logged) again."""
        if message in self.warnings:
            return
        if self.log_warnings:
            log.warning(message)
        self.warnings.append(message)

    def __bool__(self) -> bool:
        return bool(self.errors)

    def messages(self) -> list[str]:
        return [m for _, m in self.errors]

    def raise_if_any(self) -> None:
        """Raise with all error messages, one per line.

        The class is :class:`LeakageError` when any error is one (the most important to see),
        else the class of the first error.
        """
        if self.errors:
            classes = [c for c, _ in self.errors]
            cls = LeakageError if LeakageError in classes else classes[0]
            raise cls("\n".join(self.messages()))


def rows_text(
    positions: np.ndarray,
    ids: pd.Series | None = None,
    values: pd.Series | None = None,
    show_values: bool = True,
) -> str:
    """Describe offending rows: ``row 5 (patient P004): -3.0; ... and 12 more``.

    Parameters
    ----------
    positions : (n,) int -- 0-based positions of the offending rows in ``ids`` / ``values``.
    ids : the table's patient_id column, or None.
    values : the offending column, or None.
    show_values : False to leave the values out (empty cells: ``row 5 (patient P004)``).

    Row numbers count the header as row 1. They come from the Series' integer index (the row's
    position in the file, kept through filtering) when it has one, else from ``positions``.
    """
    positions = np.asarray(positions, dtype=int)
    ref = ids if ids is not None else values
    labels = ref.index if ref is not None and pd.api.types.is_integer_dtype(ref.index) else None
    parts = []
    for pos in positions[:MAX_ROWS_SHOWN]:
        row = int(labels[pos]) if labels is not None else int(pos)
        text = f"row {row + 2}"
        if ids is not None:
            text += f" (patient {ids.iloc[pos]})"
        if values is not None and show_values:
            value = values.iloc[pos]
            text += f": {value.item() if isinstance(value, np.generic) else value!r}"
        parts.append(text)
    more = len(positions) - MAX_ROWS_SHOWN
    return "; ".join(parts) + (f"; ... and {more} more" if more > 0 else "")


def _types(prop: dict[str, Any]) -> set[str]:
    t = prop.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def parse_bool(series: pd.Series) -> pd.Series:
    """Map 0/1, 0.0/1.0, True/False (any case) to booleans; anything else becomes NaN."""
    if pd.api.types.is_bool_dtype(series):
        return series.astype(object)
    mapping = {"0": False, "1": True, "0.0": False, "1.0": True, "true": True, "false": False}
    return series.astype("string").str.strip().str.lower().map(mapping).astype(object)


def coerce_column(
    frame: pd.DataFrame,
    column: str,
    prop: dict[str, Any],
    label: str,
    problems: Problems,
    id_column: str = "patient_id",
    name: str | None = None,
) -> pd.Series:
    """Convert one column to the type its JSON Schema property names, reporting bad rows.

    Handles ``type`` (number, integer, boolean, string; ``null`` allowed only when listed;
    numbers must be finite and within +-:data:`ABSURD`), ``minimum`` and string ``enum``. Vectorised: one pass per rule, however long the table.
    ``name`` is the column as the user's file names it, for messages, when the loader renamed
    it (default: ``column``).

    Returns
    -------
    Series -- float for number/integer, object bool for boolean, object str for string;
    invalid cells become NaN.
    """
    raw = frame[column]
    ids = frame[id_column] if id_column in frame and column != id_column else None
    types = _types(prop)
    empty = raw.isna() | (raw.astype("string").str.strip() == "").fillna(False).to_numpy(bool)
    where = f"{label} column {(name or column)!r}"

    def bad(mask: Any, what: str, fix: str, show_values: bool = True) -> None:
        pos = np.flatnonzero(np.asarray(mask, dtype=bool))
        if len(pos):
            rows = rows_text(pos, ids, raw, show_values)
            problems.error(DataError, f"{where}: {len(pos)} row(s) {what}: {rows}; {fix}")

    if "boolean" in types:
        out = parse_bool(raw)
        bad(~empty & out.isna(), "are not 0/1 or True/False", "write 1 (event) or 0 (censored)")
    elif types & {"number", "integer"}:
        out = pd.to_numeric(raw, errors="coerce").astype(float)
        bad(~empty & out.isna(), "are not numbers", "use plain numbers (empty = missing)")
        absurd = np.isinf(out) | (out.abs() > ABSURD)
        bad(absurd, f"are infinite or beyond +-{ABSURD:g}", "use finite numbers (empty = missing)")
        out = out.where(~absurd, np.nan)
        if "number" not in types:
            frac = out.notna() & (out != np.round(out))
            bad(frac, "are not whole numbers", "use integers")
        if "minimum" in prop:
            bad(
                out < prop["minimum"],
                f"are below {prop['minimum']}",
                f"values must be >= {prop['minimum']}",
            )
    else:
        out = raw.where(~empty, np.nan)
        out = out.where(out.isna(), out.astype(str).str.strip()).astype(object)
        allowed = [e for e in prop.get("enum", []) if e is not None]
        if allowed:
            outside = out.notna() & ~out.isin(allowed)
            bad(outside, f"are not one of {allowed}", "fix or leave empty")
            out = out.where(~outside, np.nan)
    if "null" not in types:
        bad(empty, "are empty", "every row needs a value", show_values=False)
    return out


def read_table(
    path: Path, label: str, columns_as_str: tuple[str, ...] = ("patient_id",)
) -> pd.DataFrame:
    """Read a CSV / CSV.GZ / TSV / Parquet table with a clear error instead of a pandas traceback.

    Parameters
    ----------
    path : file to read.
    label : name used in messages (usually the path relative to the manifest).
    columns_as_str : columns read as strings (identifiers keep leading zeros).
    """
    if not path.is_file():
        hint = " (it is a folder)" if path.is_dir() else ""
        raise DataError(f"{label}: file not found{hint} at {path}; check the path in the manifest")
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
            for c in columns_as_str:
                if c in frame:
                    frame[c] = frame[c].where(frame[c].isna(), frame[c].astype(str))
            return frame
        sep = "\t" if name.endswith((".tsv", ".tsv.gz")) else ","
        dtype = dict.fromkeys(columns_as_str, str)
        return pd.read_csv(path, sep=sep, dtype=dtype, low_memory=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{label}: the file is empty; it needs a header row") from None
    except (ValueError, OSError, EOFError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{label}: cannot be read as a table ({reason}); "
            f"write UTF-8 CSV (optionally .csv.gz) or Parquet ({', '.join(_TABLE_SUFFIXES)})"
        ) from None


def resolve_path(root: Path, value: str, where: str) -> Path:
    """Resolve a manifest path relative to ``root``; paths escaping ``root`` raise SchemaError."""
    root = root.resolve()
    p = (root / value).resolve()
    if not p.is_relative_to(root):
        raise SchemaError(
            f"{where}: path {value!r} resolves to {p}, outside the manifest folder {root}; "
            "manifest paths must stay inside it (move the file there; symbolic links are "
            "followed, so a link to a file elsewhere is refused too)"
        )
    return p


@dataclass
class Manifest:
    """A parsed, schema-checked cohort manifest.

    Attributes
    ----------
    path : the manifest file.
    root : its folder; every relative path resolves against it.
    name : cohort name.
    patients : the ``patients`` block with ``path`` resolved to an absolute Path.
    modalities : name -> block (``kind``, ``path`` resolved, kind-specific options).
    folds_dir : absolute fold folder from ``splits.folds_dir``, or None.
    allow_external_paths : True when the manifest lets image / feature-bag tables name files
        outside its folder (``allow_external_paths: true``); by default they must stay inside.
    time_unit : ``patients.time_unit`` (days, weeks, months, years), or None when not given.
    """

    path: Path
    root: Path
    name: str
    patients: dict[str, Any]
    modalities: dict[str, dict[str, Any]] = field(default_factory=dict)
    folds_dir: Path | None = None
    allow_external_paths: bool = False

    @property
    def time_unit(self) -> str | None:
        unit = self.patients.get("time_unit")
        return unit if isinstance(unit, str) else None

    def relative(self, path: Path) -> str:
        """``path`` as written relative to the manifest folder (for messages)."""
        try:
            return str(Path(path).resolve().relative_to(self.root))
        except ValueError:
            return str(path)


def _unknown_keys(obj: Any, schema: dict[str, Any], where: str, problems: Problems) -> None:
    if not isinstance(obj, dict):
        return
    allowed = list(schema.get("properties", {}))
    for key in obj:
        if key not in allowed:
            problems.error(
                SchemaError,
                f"{where}: unknown key {key!r}.{did_you_mean(key, allowed)} Allowed keys: {', '.join(allowed)}",
            )


def _check_keys(doc: dict[str, Any], label: str, problems: Problems) -> None:
    schema = load_schema("cohort_manifest")
    defs = schema["$defs"]
    _unknown_keys(doc, schema, label, problems)
    _unknown_keys(doc.get("patients"), defs["patients"], f"{label} patients", problems)
    _unknown_keys(doc.get("splits"), schema["properties"]["splits"], f"{label} splits", problems)
    modalities = doc.get("modalities") or {}
    for name, block in modalities.items() if isinstance(modalities, dict) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("kind")
        if kind is None:
            problems.error(
                SchemaError,
                f"{label} modalities.{name}: missing 'kind'; one of {list(MODALITY_KINDS)}",
            )
        elif kind not in MODALITY_KINDS:
            problems.error(
                SchemaError,
                f"{label} modalities.{name}: unknown kind {kind!r}.{did_you_mean(kind, MODALITY_KINDS)} "
                f"Choose one of {list(MODALITY_KINDS)}",
            )
        else:
            _unknown_keys(block, defs[kind], f"{label} modalities.{name} (kind {kind})", problems)


def _schema_errors(doc: dict[str, Any], label: str, problems: Problems) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema("cohort_manifest"))
    seen = set()
    for err in validator.iter_errors(doc):
        leaves = err.context or [err]
        for e in leaves if err.validator in ("anyOf", "oneOf") else [err]:
            # unknown keys and kinds were reported with "did you mean" by _check_keys
            if e.validator == "additionalProperties" or list(e.absolute_path)[-1:] == ["kind"]:
                continue
            where = ".".join(str(p) for p in e.absolute_path) or "(top level)"
            msg = e.message
            if e.validator == "not":  # the only `not` in the schema: groups vs groups_path
                msg = "give either 'groups' or 'groups_path', not both"
            text = f"{label} {where}: {msg}"
            if text not in seen:
                seen.add(text)
                problems.error(SchemaError, text)


def _read_document(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text)
        return yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = str(exc).strip().splitlines()
        raise SchemaError(f"{path.name}: not valid YAML/JSON ({' '.join(first[:3])})") from None


def load_manifest(path: str | Path, problems: Problems | None = None) -> Manifest:
    """Read and check a cohort manifest (YAML or JSON).

    Checks the document against ``data_schemas/cohort_manifest.schema.json``; unknown keys and
    kinds get a "did you mean" hint; every path must stay inside the manifest's folder.

    Parameters
    ----------
    path : manifest file.
    problems : collector; when given, errors are added to it and :class:`SchemaError` is raised
        only if the manifest cannot be used at all. When None, any error raises.

    Raises
    ------
    SchemaError
        Listing every problem found, one per line.
    """
    own = problems is None
    problems = Problems() if problems is None else problems
    path = Path(path)
    if not path.is_file():
        raise DataError(f"manifest {path}: file not found")
    label = path.name
    doc = _read_document(path)
    if not isinstance(doc, dict):
        raise SchemaError(
            f"{label}: expected a mapping with keys 'patients', 'modalities', got {type(doc).__name__}"
        )
    n_before = len(problems.errors)
    _check_keys(doc, label, problems)
    _schema_errors(doc, label, problems)
    root = path.resolve().parent

    def resolve(value: Any, where: str) -> Path | None:
        if not isinstance(value, str):
            return None
        try:
            return resolve_path(root, value, f"{label} {where}")
        except SchemaError as exc:
            problems.error(SchemaError, str(exc))
            return None

    # a malformed entry is already a schema error above; read on to collect the others
    raw_patients = doc.get("patients")
    patients = dict(raw_patients) if isinstance(raw_patients, dict) else {}
    patients["path"] = resolve(patients.get("path"), "patients.path")
    modalities: dict[str, dict[str, Any]] = {}
    raw_mods = doc.get("modalities") or {}
    for name, block in raw_mods.items() if isinstance(raw_mods, dict) else []:
        if not isinstance(block, dict):
            continue
        block = dict(block)
        block["path"] = resolve(block.get("path"), f"modalities.{name}.path")
        if "groups_path" in block:
            block["groups_path"] = resolve(block["groups_path"], f"modalities.{name}.groups_path")
        modalities[str(name)] = block
    splits = doc.get("splits") or {}
    folds_dir = (
        resolve(splits.get("folds_dir"), "splits.folds_dir") if isinstance(splits, dict) else None
    )
    if own:
        problems.raise_if_any()
    elif len(problems.errors) > n_before:
        raise SchemaError("\n".join(problems.messages()[n_before:]))
    return Manifest(
        path=path.resolve(),
        root=root,
        name=str(doc.get("name") or path.stem),
        patients=patients,
        modalities=modalities,
        folds_dir=folds_dir,
        allow_external_paths=doc.get("allow_external_paths") is True,
    )


def outcome_leak(column: str, label: str, role: str) -> LeakageError:
    """The error for an outcome column used as a model input."""
    return LeakageError(
        f"{label}: column {column!r} is an outcome column and cannot be {role} "
        "(it would leak the label into the model); remove it from the file or the covariate list "
        "(outcomes belong in the patient table)"
    )
