"""One vocabulary for every page of the dashboard: horizons, probabilities, hazard ratios, units.

The pages speak of two probabilities only -- the *event probability by time t* (1 - S(t)) and the
*survival probability* S(t) -- at round horizons (1, 3 and 5 years in the cohort's time unit), of
a *hazard ratio against the cohort's median patient* instead of a centred log-hazard, and give
explanations in *percentage points of the event probability by a horizon*. Every number carries
its unit. The formatting lives here so that the cohort, patient, compare and new-patient pages
cannot drift apart.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "EXPLANATION_YEARS",
    "YEAR_IN",
    "at_risk_ticks",
    "effect_sentence",
    "event_probability_label",
    "explanation_horizon",
    "fmt_horizon",
    "fmt_hr",
    "fmt_pct",
    "fmt_points",
    "fmt_time",
    "hazard_ratio",
    "horizon_label",
    "points_from_risk",
    "round_horizons",
    "survival_label",
    "time_axis",
    "time_since_axis",
]

#: Length of one year in each time unit the cohorts use (months are the default).
YEAR_IN = {
    "days": 365.25,
    "day": 365.25,
    "weeks": 52.18,
    "week": 52.18,
    "months": 12.0,
    "month": 12.0,
    "years": 1.0,
    "year": 1.0,
}
#: The horizon that explanations are expressed at, in years (3; 1 when 3 is beyond the curve).
EXPLANATION_YEARS = (3, 1)


def _per_year(unit: str) -> float:
    return YEAR_IN.get(str(unit).lower(), 12.0)


def round_horizons(unit: str, years: tuple[int, ...] = (1, 3, 5)) -> dict[str, float]:
    """``{"1 year": 12.0, "3 years": 36.0, "5 years": 60.0}`` in the cohort's time unit.

    Round numbers only: in months these are 12, 36 and 60, in days 365.25, 1095.75, 1826.25.
    """
    f = _per_year(unit)
    return {f"{y} year{'s' if y != 1 else ''}": round(y * f, 4) for y in years}


def horizon_label(t: float, unit: str) -> str:
    """A horizon in words: ``"3 years"`` for a whole number of years, else ``"18 months"``."""
    years = float(t) / _per_year(unit)
    if abs(years - round(years)) < 1e-6 and round(years) >= 1:
        y = round(years)
        return f"{y} year{'s' if y != 1 else ''}"
    return fmt_time(t, unit, digits=0 if float(t).is_integer() else 1)


def fmt_horizon(t: float, unit: str) -> str:
    """A horizon in words with its unit: ``"2 years (24 months)"``, ``"5 years"``,
    ``"18 months"``."""
    label = horizon_label(t, unit)
    plain = fmt_time(t, unit, digits=0 if float(t).is_integer() else 1)
    return label if label == plain or unit.lower().startswith("year") else f"{label} ({plain})"


def event_probability_label(label: str, within: bool = False) -> str:
    """``"event probability by 3 years"`` (1 - S(t)); ``within``: ``"event probability within
    3 years"``, for a landmark run's times that count from the landmark (1 - S(s + t | alive at
    s))."""
    return f"event probability {'within' if within else 'by'} {label}"


def survival_label(label: str) -> str:
    """``"survival probability at 3 years"`` (S(t))."""
    return f"survival probability at {label}"


def time_axis(unit: str) -> str:
    """The x-axis title of every survival plot."""
    return f"time ({unit})"


def time_since_axis(unit: str, since: str = "the landmark") -> str:
    """The x-axis title of a landmark run's curves, whose times count from the landmark."""
    return f"time since {since} ({unit})"


def fmt_time(t: float, unit: str, digits: int = 1) -> str:
    """``"23.4 months"``; ``"not reached"`` for NaN (a median the curve never crosses)."""
    if t is None or not np.isfinite(t):
        return "not reached"
    return f"{t:.{digits}f} {unit}"


def fmt_pct(p: float, digits: int = 0) -> str:
    """A probability (0-1) as ``"24%"``; ``"n/a"`` for NaN."""
    if p is None or not np.isfinite(p):
        return "n/a"
    return f"{100 * p:.{digits}f}%"


def fmt_points(points: float) -> str:
    """Percentage points with a sign: ``"+4.1 points"``."""
    if points is None or not np.isfinite(points):
        return "n/a"
    return f"{points:+.1f} points"


def fmt_hr(hr: float) -> str:
    """A hazard ratio: ``"1.85×"``."""
    if hr is None or not np.isfinite(hr):
        return "n/a"
    return f"{hr:.2f}×" if hr < 10 else f"{hr:.1f}×"


def hazard_ratio(risk: np.ndarray | float, reference: float) -> np.ndarray | float:
    """Hazard ratio against a reference patient: ``exp(risk - reference)``.

    ``risk`` is a Cox log-hazard (higher = worse) of one fold model, or the fold-ensemble's
    centred risk; ``reference`` is the median risk of the same model's training patients (the
    cohort's median patient), so a hazard ratio of 2 means twice the median patient's hazard at
    every time (proportional hazards).
    """
    out = np.exp(np.clip(np.asarray(risk, float) - float(reference), -50, 50))
    return float(out) if np.ndim(out) == 0 else out


def points_from_risk(delta_risk: np.ndarray | float, survival: float) -> np.ndarray | float:
    """Percentage points of event probability by t that a change of the log-hazard carries.

    Under proportional hazards S(t | x) = S0(t) ** exp(r): removing a contribution ``delta_risk``
    from a patient whose survival probability at t is ``survival`` gives
    ``survival ** exp(-delta_risk)``; the contribution therefore *raises* the event probability
    by ``100 * (survival ** exp(-delta_risk) - survival)`` points (negative = lowers it).

    Parameters
    ----------
    delta_risk : contribution(s) to the log-hazard (attributions in risk units).
    survival : the patient's predicted S(t) at the horizon, in (0, 1].
    """
    s = float(np.clip(survival, 1e-12, 1.0))
    d = np.clip(np.asarray(delta_risk, float), -50, 50)
    out = 100.0 * (np.power(s, np.exp(-d)) - s)
    return float(out) if np.ndim(out) == 0 else out


def explanation_horizon(unit: str, last_time: float) -> tuple[str, float]:
    """The horizon explanations are given at: 3 years, or 1 year when 3 years lie beyond
    ``last_time`` (the end of the curve); ``(label, time)``."""
    horizons = round_horizons(unit, EXPLANATION_YEARS)
    for label, t in horizons.items():
        if t <= last_time:
            return label, t
    label, t = next(iter(horizons.items()))
    return label, t


def effect_sentence(name: str, points: float, label: str) -> str:
    """``"genomics raises the 3-year event probability by 4.1 points"``."""
    if points is None or not np.isfinite(points):
        return f"{name}: effect unknown"
    years = label.replace(" years", "-year").replace(" year", "-year")
    if abs(points) < 0.05:
        return f"{name} hardly changes the {years} event probability (less than 0.1 points)"
    verb = "raises" if points > 0 else "lowers"
    return f"{name} {verb} the {years} event probability by {abs(points):.1f} points"


def at_risk_ticks(max_time: float, unit: str, n_max: int = 10) -> list[float]:
    """Round times for a numbers-at-risk table: whole years (or half years, or several years)
    in the cohort's unit, from 0 to ``max_time``, at most ``n_max + 1`` of them."""
    year = _per_year(unit)
    max_time = float(max_time) if np.isfinite(max_time) and max_time > 0 else year
    if max_time >= 2 * year:  # whole years, or several
        steps = [year, 2 * year, 5 * year, 10 * year, 20 * year, 50 * year]
    else:  # a short follow-up: quarter or half years
        steps = [year / 4, year / 2, year]
    step = next((s for s in steps if max_time / s <= n_max), steps[-1])
    n = math.floor(max_time / step + 1e-9)
    return [round(i * step, 4) for i in range(n + 1)]
