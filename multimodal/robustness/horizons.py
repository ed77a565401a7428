"""Time units and round horizons of a cohort, and where a run's cohort is."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from multimodal.exceptions import DataError
from multimodal.runfolder import RunFolder

__all__ = ["YEAR_IN", "find_run_cohort", "horizon_label", "round_horizon", "time_unit_of"]

#: Length of a year in each time unit a cohort manifest may state.
YEAR_IN: dict[str, float] = {"days": 365.25, "weeks": 365.25 / 7, "months": 12.0, "years": 1.0}


def time_unit_of(cohort: Any) -> str:
    """The cohort's time unit (``Cohort.time_unit``: its manifest's ``patients.time_unit``, or
    what its loader knew); ``months`` otherwise (TCGA folders and manifests that do not say)."""
    unit = getattr(cohort, "time_unit", None) or getattr(
        getattr(cohort, "manifest", None), "time_unit", None
    )
    return str(unit).lower() if unit else "months"


def round_horizon(
    time: Sequence[float] | np.ndarray, unit: str, years: float = 3.0, min_followed: float = 0.1
) -> float:
    """``years`` years in ``unit`` (rounded to a whole unit), or the nearest round horizon (0.5,
    1, 2, 4, 5 or 10 years, nearest on a log scale) that at least ``min_followed`` of the patients
    are still followed at (observed time >= horizon)."""
    per_year = YEAR_IN.get(str(unit).lower(), 12.0)
    t = np.asarray(time, float)
    t = t[np.isfinite(t)]
    if not len(t):
        raise DataError("round_horizon: no observed times")
    candidates = sorted(
        {years, 0.5, 1.0, 2.0, 4.0, 5.0, 10.0}, key=lambda y: abs(math.log(y / years))
    )
    for y in candidates:
        h = float(max(round(y * per_year), 1)) if per_year > 1 else float(y)
        if np.mean(t >= h) >= min_followed:
            return h
    return float(np.quantile(t, 0.5))


def horizon_label(horizon: float, unit: str) -> str:
    """``"3 years (36 months)"``, or ``"20 months"`` when not a whole number of half years."""
    per_year = YEAR_IN.get(str(unit).lower(), 12.0)
    years = horizon / per_year
    text = f"{horizon:g} {unit}"
    if abs(years * 2 - round(years * 2)) < 0.02 and years > 0 and unit != "years":
        y = round(years * 2) / 2
        return f"{y:g} year{'s' if y != 1 else ''} ({text})"
    return text


def find_run_cohort(run_dir: str | Path, explicit: str | Path | None = None) -> Path | None:
    """Where a run's cohort is: ``explicit`` (a :class:`~multimodal.exceptions.DataError` when it
    is not a cohort), else ``data.cohort`` of its config, else the folder ``train`` recorded
    (``_meta.cohort_path``), else ``cohort/`` beside or inside the run; None when none is."""
    from multimodal.data.cohort import locate_cohort, locate_run_cohort

    if explicit:
        return locate_cohort(explicit)[1]
    raw = RunFolder(run_dir).read_config_raw()
    return locate_run_cohort(run_dir, raw, (raw.get("_meta") or {}).get("cohort_path"))
