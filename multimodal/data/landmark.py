"""Landmarking: the cohort as seen at landmark times, for dynamic prediction.

A landmark ``s`` asks "given what was measured up to ``s``, and that the patient is alive at
``s``, what is the risk over the next ``horizon``?". :func:`landmark_cohort` turns a cohort into
that question for one or more landmarks:

- one row per (patient, landmark) for the patients still followed at ``s`` (outcome time > s);
  the row's id is ``"<patient_id>@<s>"`` when several landmarks are stacked;
- its outcome is the residual time ``min(time - s, horizon)`` and the event if it happened by
  ``s + horizon`` (later events are censored at the horizon; competing causes likewise);
- longitudinal sources keep only the measurements taken at or before ``s`` and remember each row's
  landmark (``LongitudinalSource.landmarks``); the other modalities (measured at baseline) are
  copied;
- the patient table gains ``landmark`` (s) and ``landmark_patient`` (the original id): folds,
  the early-stopping hold-out and the penalty's inner folds keep all rows of a patient together.

Training on the stacked rows of several landmarks gives one "super-model" whose longitudinal
member sees the landmark time as an input (van Houwelingen's landmark super-model).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from multimodal.data.longitudinal import LongitudinalSource
from multimodal.data.splits import Fold
from multimodal.exceptions import ConfigError, DataError, LeakageError

__all__ = [
    "LANDMARK_COLUMN",
    "PATIENT_COLUMN",
    "check_landmarked",
    "expand_folds",
    "landmark_cohort",
    "landmark_id",
]

LANDMARK_COLUMN = "landmark"
PATIENT_COLUMN = "landmark_patient"

#: Outcome (time, event) column pairs a patient table may hold.
_PAIRS = (("time", "event"), ("pfs_time", "pfs_event"), ("os_time", "os_event"))


def landmark_id(patient_id: str, landmark: float) -> str:
    """The id of a patient's row at ``landmark`` in a stacked landmark cohort."""
    return f"{patient_id}@{landmark:g}"


def _rekey(source: Any, rows: pd.DataFrame) -> Any:
    """``source`` with one copy of each patient's data per row of ``rows`` (new_id, patient)."""
    table = source.table
    base = rows.set_index("new_id")[PATIENT_COLUMN]
    if "patient_id" in table.columns:
        merged = rows[["new_id", PATIENT_COLUMN]].merge(
            table, left_on=PATIENT_COLUMN, right_on="patient_id", how="inner", sort=False
        )
        merged["patient_id"] = merged.pop("new_id")
        out = merged.drop(columns=[PATIENT_COLUMN])
    else:
        have = base[base.isin(table.index)]
        out = table.loc[have.to_numpy()].copy()
        out.index = pd.Index(have.index, name=table.index.name)
    return source._copy_with(out)


def landmark_cohort(
    cohort: Any,
    landmarks: Sequence[float] | float | pd.Series | str,
    horizon: float | None = None,
    stack: bool | None = None,
    outcome_columns: Sequence[str] = ("time", "event"),
) -> Any:
    """The cohort at landmark time(s) ``landmarks``.

    Parameters
    ----------
    cohort : a :class:`~multimodal.data.cohort.Cohort` (outcomes optional for prediction).
    landmarks : landmark times in the cohort's time unit; one float for everyone; a Series
        patient_id -> landmark; or ``"last"``: each patient's last longitudinal measurement (the
        latest visit: "the risk from today").
    horizon : events later than ``s + horizon`` are censored there (None: no truncation).
    stack : ids become ``"<patient>@<s>"`` (default: when several landmarks are given).
    outcome_columns : the endpoint's outcome columns (``Endpoint.required_columns``): each
        (time, event) pair among them moves to the landmark's clock and a row is at risk when
        every one of its times is after ``s``; the table's other outcome pairs and
        ``event_type`` (derived again by the endpoint) are dropped.

    Returns
    -------
    Cohort -- the rows at risk at their landmark. A patient whose outcome time is known and not
    after ``s`` is left out (not alive at ``s``); patients without outcomes (new patients) stay.
    """
    from multimodal.data.cohort import Cohort

    pt = cohort.patients
    longitudinal = [m for m, s in cohort.sources.items() if isinstance(s, LongitudinalSource)]
    if isinstance(landmarks, str):
        if landmarks != "last":
            raise ConfigError(f"landmark {landmarks!r}: give a time, a Series or 'last'")
        if not longitudinal:
            raise ConfigError("landmark='last' needs a longitudinal modality in the cohort")
        last = pd.concat([cohort.sources[m].last_time() for m in longitudinal]).groupby(level=0)
        per_patient = last.max().reindex(pt.index).fillna(0.0)
        return landmark_cohort(cohort, per_patient, horizon, False, outcome_columns)
    if isinstance(landmarks, pd.Series):
        s_of = landmarks.reindex(pt.index).astype(float)
        if s_of.isna().any():
            raise DataError(
                f"landmarks: no landmark for {int(s_of.isna().sum())} patient(s) "
                f"(e.g. {', '.join(map(str, s_of.index[s_of.isna()][:5]))})"
            )
        pairs = [(s_of.to_numpy(dtype=float), False)]
        stack = bool(stack)
    else:
        values = [float(landmarks)] if np.isscalar(landmarks) else [float(v) for v in landmarks]
        if not values:
            raise ConfigError("landmarks: give at least one landmark time")
        if any(v < 0 or not np.isfinite(v) for v in values):
            raise ConfigError(f"landmarks {values}: landmark times are finite and >= 0")
        stack = len(values) > 1 if stack is None else stack
        pairs = [(np.full(len(pt), v), True) for v in values]
    if horizon is not None and not horizon > 0:
        raise ConfigError(f"landmark horizon {horizon}: give a positive time")

    pairs_used = [p for p in _PAIRS if p[0] in outcome_columns]
    frames = []
    for s, _ in pairs:
        frame = pt.copy()
        frame.insert(0, PATIENT_COLUMN, pt.index.astype(str))
        frame[LANDMARK_COLUMN] = s
        for tcol, _ in pairs_used:
            if tcol in frame:
                t = pd.to_numeric(frame[tcol], errors="coerce").to_numpy(dtype=float)
                keep = ~np.isfinite(t) | (t > frame[LANDMARK_COLUMN].to_numpy() + 1e-9)
                frame = frame[keep]
        frames.append(frame)
    rows = pd.concat(frames)
    if stack:
        rows.index = pd.Index(
            [landmark_id(p, s) for p, s in zip(rows[PATIENT_COLUMN], rows[LANDMARK_COLUMN])],
            name=pt.index.name,
        )
    if rows.index.duplicated().any():  # pragma: no cover - ids are (patient, landmark)
        raise DataError("landmark cohort: duplicate (patient, landmark) rows")
    rows = _residual_outcomes(rows, horizon, pairs_used)

    mapping = pd.DataFrame(
        {"new_id": rows.index.astype(str), PATIENT_COLUMN: rows[PATIENT_COLUMN].to_numpy()}
    )
    s_by_row = pd.Series(rows[LANDMARK_COLUMN].to_numpy(dtype=float), index=rows.index)
    sources = {}
    for name, source in cohort.sources.items():
        if isinstance(source, LongitudinalSource):
            new = _rekey(source, mapping)
            new = new.up_to(s_by_row)
            new.landmarks = s_by_row
            sources[name] = new
        else:
            sources[name] = _rekey(source, mapping) if stack else source.subset(rows.index)
    out = Cohort(
        rows,
        sources,
        name=cohort.name,
        root=cohort.root,
        folds_dir=None,
        known_ids=rows.index,
        manifest=cohort.manifest,
        time_unit=getattr(cohort, "time_unit", None),
        clinical_options=getattr(cohort, "clinical_options", None),
    )
    out.landmark_horizon = horizon
    return out


def _residual_outcomes(
    rows: pd.DataFrame, horizon: float | None, pairs: Sequence[tuple[str, str]]
) -> pd.DataFrame:
    """Outcomes on the landmark's clock: residual times, events after the horizon censored."""
    rows = rows.copy()
    drop = [c for p in _PAIRS if p not in pairs for c in p] + ["event_type"]
    rows = rows.drop(columns=[c for c in drop if c in rows])
    s = rows[LANDMARK_COLUMN].to_numpy(dtype=float)
    for tcol, ecol in pairs:
        if tcol not in rows:
            continue
        t = pd.to_numeric(rows[tcol], errors="coerce").to_numpy(dtype=float) - s
        beyond = np.zeros(len(rows), dtype=bool)
        if horizon is not None:
            with np.errstate(invalid="ignore"):
                beyond = t > horizon
            t = np.where(beyond, horizon, t)
        rows[tcol] = t
        if ecol in rows:  # unknown events (new patients) stay unknown
            ev = rows[ecol].astype("boolean")
            rows[ecol] = (
                (ev & ~beyond) if not ev.isna().any() else ev.where(ev.isna(), ev & ~beyond)
            )
    return rows


def expand_folds(folds: Iterable[Fold], landmarked: Any) -> list[Fold]:
    """Folds over patients as folds over the landmark rows of ``landmarked`` (all rows of a
    patient on the patient's side)."""
    owner = landmarked.patients[PATIENT_COLUMN].astype(str)
    out = []
    for f in folds:
        train = set(map(str, f.train_ids))
        val = set(map(str, f.val_ids))
        out.append(
            Fold(
                f.index,
                list(owner.index[owner.isin(train)]),
                list(owner.index[owner.isin(val)]),
            )
        )
    return out


def check_landmarked(source: Any, ids: Sequence[str]) -> pd.Series:
    """The landmark of each row ``ids`` of a longitudinal ``source``; raises
    :class:`LeakageError` when a measurement after its row's landmark would reach a model, and
    ConfigError when the source was not landmarked at all."""
    landmarks = getattr(source, "landmarks", None)
    if landmarks is None:
        raise ConfigError(
            f"longitudinal modality {source.name!r} was given without a landmark: a prediction "
            "from repeat measurements is made at a landmark time (what was measured up to it). "
            "Set data.landmark in the config to train, and pass landmark= to predict"
        )
    table = source.table
    limit = table["patient_id"].map(landmarks).to_numpy(dtype=float)
    late = table["time"].to_numpy(dtype=float) > limit + 1e-9
    if late.any():
        first = table[late].iloc[0]
        raise LeakageError(
            f"longitudinal modality {source.name!r}: {int(late.sum())} measurement(s) after "
            f"their landmark would reach the model (e.g. patient {first['patient_id']}, "
            f"{first['variable']} at {first['time']:g}, landmark {landmarks[first['patient_id']]:g})"
        )
    return landmarks.reindex(list(ids))
