"""Cross-validation folds: stratified by event (optionally grouped by site) or read from fold files.

Fold files (``fold_<k>.csv``, the PORPOISE/MCAT layout) have columns ``patient_id`` and ``split``
in {train, val}. Row numbers in messages count the header as row 1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from multimodal.data.manifest import Problems, read_table, rows_text
from multimodal.exceptions import DataError, LeakageError, MultimodalError, SchemaError
from multimodal.registry import did_you_mean

__all__ = [
    "EVENT_COLUMNS",
    "Fold",
    "check_fold_files",
    "check_training_events",
    "event_flags",
    "read_fold_files",
    "stratified_folds",
]

log = logging.getLogger(__name__)

_FOLD_FILE = re.compile(r"^fold_(\d+)\.csv$")


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold.

    Attributes
    ----------
    index : int -- fold number (0-based).
    train_ids, val_ids : list[str] -- disjoint patient ids.

    Raises
    ------
    LeakageError
        When a patient is in both ``train_ids`` and ``val_ids``.
    """

    index: int
    train_ids: list[str]
    val_ids: list[str]

    def __post_init__(self) -> None:
        overlap = set(self.train_ids) & set(self.val_ids)
        if overlap:
            ids = sorted(overlap)
            raise LeakageError(
                f"fold {self.index}: {len(ids)} patient(s) are in both train and val "
                f"({', '.join(ids[:5])}); each patient must be in exactly one split per fold"
            )


def stratified_folds(
    patients: pd.DataFrame, k: int = 5, seed: int = 0, group_by: str | None = None
) -> list[Fold]:
    """Split patients into ``k`` folds stratified by ``event``.

    Parameters
    ----------
    patients : DataFrame indexed by patient_id with a bool ``event`` column.
    k : number of folds (>= 2).
    seed : shuffling seed (the same seed gives the same folds).
    group_by : optional column (e.g. ``"site"``); all patients of a group land in the same
        validation fold (sklearn ``StratifiedGroupKFold``). Empty values form one group.

    Returns
    -------
    list[Fold] -- the ``k`` validation folds partition the patients.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2:
        raise ValueError(f"k is {k!r}; cross-validation needs an integer k >= 2")
    n = len(patients)
    if n < k:
        raise DataError(f"cannot make {k} folds from {n} patients; lower k")
    ids = patients.index.astype(str).to_numpy()
    y = patients["event"].astype(bool).to_numpy().astype(int)
    n_events = int(y.sum())
    if min(n_events, n - n_events) < k:
        log.warning("only %d events / %d censored patients for %d folds", n_events, n - n_events, k)
    if group_by is None:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), y)
    else:
        if group_by not in patients.columns:
            raise SchemaError(
                f"group_by={group_by!r} is not a patient-table column."
                f"{did_you_mean(group_by, map(str, patients.columns))} Columns: {list(patients.columns)}"
            )
        groups = patients[group_by].astype(object).where(patients[group_by].notna(), "<missing>")
        groups = groups.astype(str).to_numpy()
        n_groups = len(np.unique(groups))
        if n_groups < k:
            raise DataError(
                f"group_by={group_by!r} has {n_groups} distinct values, fewer than k={k}; "
                "lower k or group by a finer column"
            )
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        splits = splitter.split(np.zeros(n), y, groups)
    return [Fold(i, list(ids[tr]), list(ids[va])) for i, (tr, va) in enumerate(splits)]


def _fold_files(split_dir: Path) -> list[tuple[int, Path]]:
    if not split_dir.is_dir():
        raise DataError(f"split folder {split_dir} not found")
    files = sorted(
        (int(m.group(1)), p) for p in split_dir.iterdir() if (m := _FOLD_FILE.match(p.name))
    )
    if not files:
        raise DataError(
            f"split folder {split_dir} holds no fold_<k>.csv files "
            f"(found: {', '.join(sorted(p.name for p in split_dir.iterdir())[:8]) or 'nothing'})"
        )
    return files


def _read_fold_file(k: int, path: Path, cohort: pd.Index, known: pd.Index) -> Fold:
    """One ``fold_<k>.csv``; raises at its first problem (see :func:`read_fold_files`)."""
    label = f"{path.parent.name}/{path.name}"
    frame = read_table(path, label, columns_as_str=("patient_id", "split"))
    for col in ("patient_id", "split"):
        if col not in frame.columns:
            raise SchemaError(
                f"{label}: required column {col!r} is missing.{did_you_mean(col, map(str, frame.columns))}"
            )
    pid = frame["patient_id"].astype(str).str.strip()
    split = frame["split"].astype(str).str.strip().str.lower()
    bad = ~split.isin(["train", "val"])
    if bad.any():
        pos = np.flatnonzero(bad.to_numpy())
        raise DataError(
            f"{label}: {len(pos)} row(s) have split not in {{train, val}}: "
            f"{rows_text(pos, pid, frame['split'])}"
        )
    both = pid.isin(pid[split == "train"]) & pid.isin(pid[split == "val"])
    if both.any():
        pos = np.flatnonzero(both.to_numpy())
        raise LeakageError(
            f"{label}: {pid[both].nunique()} patient(s) are in both train and val (the rows list a "
            f"patient twice: {rows_text(pos, pid, split)}); each patient must be in exactly one "
            "split per fold"
        )
    dup = pid.duplicated(keep=False).to_numpy()
    if dup.any():
        pos = np.flatnonzero(dup)
        raise LeakageError(
            f"{label}: {len(pos)} rows list a patient twice ({rows_text(pos, pid, split)}); "
            "each patient belongs to exactly one split"
        )
    unknown = ~pid.isin(known).to_numpy()
    if unknown.any():
        pos = np.flatnonzero(unknown)
        raise DataError(
            f"{label}: {len(pos)} patient(s) are not in the cohort ({rows_text(pos, pid)}); "
            "the fold files belong to another cohort or the patient table is incomplete"
        )
    missing = cohort[~cohort.isin(pid)]
    if len(missing):
        raise DataError(
            f"{label}: {len(missing)} cohort patient(s) are in no split "
            f"(e.g. {', '.join(missing[:5])}); add them to the fold files, or restrict the cohort "
            "to the fold patients first (cohort.subset(ids) or Cohort.from_tcga(..., splits_name=...))"
        )
    keep = pid.isin(cohort).to_numpy()
    train = pid[keep & (split == "train").to_numpy()].tolist()
    val = pid[keep & (split == "val").to_numpy()].tolist()
    for name, ids in (("train", train), ("val", val)):
        if not ids:
            raise DataError(
                f"{label}: fold {k} has no {name} patients ({len(train)} train, {len(val)} val); "
                "every fold needs both train and val patients"
            )
    return Fold(k, train, val)


def read_fold_files(
    split_dir: str | Path,
    patient_ids: Iterable[str],
    known_ids: Iterable[str] | None = None,
) -> list[Fold]:
    """Read ``fold_<k>.csv`` files (patient_id, split in {train, val}) from ``split_dir``.

    Parameters
    ----------
    split_dir : folder of the fold files.
    patient_ids : the cohort's patients; every one must appear in every file.
    known_ids : every patient the cohort was loaded with (a superset of ``patient_ids`` after
        :meth:`Cohort.subset`); fold rows of known but excluded patients are dropped quietly,
        rows of patients never seen are an error. Defaults to ``patient_ids``.

    Raises
    ------
    DataError
        Unknown patients, cohort patients missing from a file, split values other than train/val,
        a fold without train or without val patients.
    LeakageError
        A patient in both train and val of one file (or listed twice).
    """
    split_dir = Path(split_dir)
    cohort = pd.Index(list(patient_ids)).astype(str)
    known = pd.Index(list(known_ids)).astype(str) if known_ids is not None else cohort
    return [_read_fold_file(k, path, cohort, known) for k, path in _fold_files(split_dir)]


def check_fold_files(
    split_dir: str | Path,
    patient_ids: Iterable[str],
    known_ids: Iterable[str] | None,
    problems: Problems,
) -> list[Fold]:
    """:func:`read_fold_files` reporting each file's problem to ``problems`` instead of raising
    at the first; returns the folds that could be read."""
    split_dir = Path(split_dir)
    cohort = pd.Index(list(patient_ids)).astype(str)
    known = pd.Index(list(known_ids)).astype(str) if known_ids is not None else cohort
    try:
        files = _fold_files(split_dir)
    except MultimodalError as exc:
        problems.error(type(exc), str(exc))
        return []
    folds = []
    for k, path in files:
        try:
            folds.append(_read_fold_file(k, path, cohort, known))
        except MultimodalError as exc:
            problems.error(type(exc), str(exc))
    return folds


#: Event columns of the patient table; a training fold needs an event in one of them.
EVENT_COLUMNS = ("event", "pfs_event", "dss_event")


def event_flags(values: pd.Series) -> np.ndarray:
    """(n,) bool: True where an event column says an event was observed (missing = False)."""
    return np.array([bool(v) if pd.notna(v) else False for v in values], dtype=bool)


def check_training_events(
    folds: Iterable[Fold],
    patients: pd.DataFrame,
    label: str = "the patient table",
    columns: Iterable[str] = EVENT_COLUMNS,
) -> None:
    """Refuse folds whose training patients have no event, before any training starts.

    A survival model cannot be fitted without events (the Cox baseline hazard needs one): a
    cohort with one event always leaves a training fold without. By default only a fold with no
    event in any of :data:`EVENT_COLUMNS` is refused (:meth:`Cohort.folds` does not know the
    endpoint, and a progression endpoint with few deaths still trains); a caller that knows the
    endpoint passes its event column as ``columns``.

    Raises
    ------
    DataError
        Naming ``label``, the (first) event column, the fold and the cohort's event patients.
    """
    cols = [c for c in columns if c in patients.columns]
    if not cols:
        return
    flags = pd.DataFrame({c: event_flags(patients[c]) for c in cols}, index=patients.index)
    has_event = flags.any(axis=1)
    for fold in folds:
        if has_event.reindex(fold.train_ids, fill_value=False).any():
            continue
        event = flags[cols[0]]
        ids = list(event.index[event.to_numpy()])
        who = f": patient {', '.join(map(str, ids[:5]))}" if ids else ""
        raise DataError(
            f"{label} column {cols[0]!r}: the training patients of fold {fold.index} have no "
            f"event ({len(ids)} event(s) among the {len(patients)} patients{who}); a survival "
            "model cannot be fitted without events, so every training fold needs one: add "
            "patients with observed events (2 at least), or move events into the training split"
        )
