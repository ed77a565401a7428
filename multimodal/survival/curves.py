"""Survival curves: Kaplan-Meier, Breslow baseline hazard, step/linear curve evaluation.

Kaplan-Meier and Breslow are a few vectorised lines over sorted unique times; we write them here
(instead of calling lifelines/sksurv) because the heads need them in torch-free numpy at fit time and
the tests compare both against ``lifelines.KaplanMeierFitter`` / ``CoxPHFitter`` and sksurv.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "breslow_baseline",
    "interpolate_survival",
    "kaplan_meier",
    "km_counts",
    "step_function_at",
    "step_values",
]


def _as_numpy(x: np.ndarray | torch.Tensor, dtype: type = float) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy() if dtype is float else x.detach().cpu().numpy()
    return np.asarray(x).astype(dtype).reshape(-1)


def _check_time_event(time, event) -> tuple[np.ndarray, np.ndarray]:
    t = _as_numpy(time)
    e = _as_numpy(event, dtype=bool)
    if t.shape != e.shape:
        raise ValueError(f"time and event must have the same length; got {t.size} and {e.size}")
    if t.size == 0:
        raise ValueError("time is empty")
    if not np.isfinite(t).all() or (t < 0).any():
        bad = int(np.flatnonzero(~np.isfinite(t) | (t < 0))[0])
        raise ValueError(f"time[{bad}] is {t[bad]}; survival times must be finite and >= 0")
    return t, e


def kaplan_meier(
    time: np.ndarray | torch.Tensor, event: np.ndarray | torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """Kaplan-Meier estimate of S(t).

    Parameters
    ----------
    time : array (n,)
    event : array (n,), True = event observed

    Returns
    -------
    times : ndarray (m,)
        Sorted unique observed times (events and censorings), as sksurv's ``kaplan_meier_estimator``.
    survival : ndarray (m,)
        S(t) just after each time (right-continuous step function).
    """
    times, deaths, at_risk = km_counts(*_check_time_event(time, event))
    return times, np.cumprod(1.0 - deaths / at_risk)


def km_counts(t: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Kaplan-Meier table of numpy ``t`` (float) and ``e`` (bool), unchecked: sorted unique
    times, events at each and patients at risk (time >= it). :func:`kaplan_meier` checks its
    inputs and calls this; the dashboard's curve with confidence bands uses it too."""
    times, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=e.astype(float), minlength=times.size)
    counts = np.bincount(inv, minlength=times.size)
    return times, deaths, np.cumsum(counts[::-1])[::-1]


def breslow_baseline(
    risk: np.ndarray | torch.Tensor,
    time: np.ndarray | torch.Tensor,
    event: np.ndarray | torch.Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow estimate of the baseline cumulative hazard of a Cox model.

    ``H0(t) = sum_{t_i <= t, event} 1 / sum_{j: t_j >= t_i} exp(risk_j)``, so that
    ``H(t | x) = H0(t) exp(risk(x))`` and ``S(t | x) = exp(-H(t | x))``.

    Parameters
    ----------
    risk : array (n,), log-hazard ratio of the training patients (the same scale as predictions)
    time, event : array (n,)

    Returns
    -------
    times : ndarray (m,)
        Sorted unique event times.
    cumhaz : ndarray (m,)
        H0 at (just after) each event time; a right-continuous step function, 0 before ``times[0]``.
    """
    t, e = _check_time_event(time, event)
    r = _as_numpy(risk)
    if r.shape != t.shape:
        raise ValueError(f"risk has {r.size} values but time has {t.size}")
    if not e.any():
        raise ValueError("no events: the Breslow baseline hazard needs at least one observed event")
    shift = r.max()
    w = np.exp(r - shift)
    times, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=e.astype(float), minlength=times.size)
    risk_set = np.cumsum(np.bincount(inv, weights=w, minlength=times.size)[::-1])[::-1]
    hazard = deaths / risk_set * np.exp(-shift)
    keep = deaths > 0
    return times[keep], np.cumsum(hazard)[keep]


def step_function_at(
    knots: torch.Tensor, values: torch.Tensor, times: torch.Tensor, before: float = 0.0
) -> torch.Tensor:
    """Evaluate a right-continuous step function.

    Parameters
    ----------
    knots : Tensor (m,), increasing
    values : Tensor (..., m), value from each knot on
    times : Tensor (T,)
    before : value for ``times < knots[0]``

    Returns
    -------
    Tensor (..., T)
    """
    pos = torch.searchsorted(knots.contiguous(), times.contiguous().to(knots.dtype), right=True) - 1
    padded = torch.cat([values.new_full((*values.shape[:-1], 1), before), values], dim=-1)
    return padded[..., pos + 1]


def step_values(
    knots: np.ndarray,
    values: np.ndarray,
    at: np.ndarray,
    before: float = 0.0,
    left_limit: bool = False,
) -> np.ndarray:
    """NumPy twin of :func:`step_function_at`: a right-continuous step function at ``at``.

    Parameters
    ----------
    knots : array (m,), increasing
    values : array (..., m), value from each knot on
    at : array (T,)
    before : value for ``at < knots[0]``
    left_limit : evaluate the left limit ``f(at-)`` (e.g. a censoring survival ``G(T_i-)``)

    Returns
    -------
    ndarray (..., T), float64
    """
    values = np.asarray(values, dtype=float)
    pos = np.searchsorted(knots, at, side="left" if left_limit else "right") - 1
    padded = np.concatenate([np.full((*values.shape[:-1], 1), float(before)), values], axis=-1)
    return padded[..., pos + 1]


def interpolate_survival(
    grid: torch.Tensor,
    survival: torch.Tensor,
    times: torch.Tensor,
    method: str = "linear",
) -> torch.Tensor:
    """Evaluate survival known at grid points at arbitrary times.

    Parameters
    ----------
    grid : Tensor (G,), increasing, ``grid[0] = 0``
    survival : Tensor (..., G), S at the grid points (non-increasing, ``S(0) = 1``)
    times : Tensor (T,)
    method : {"linear", "step"}
        "linear" interpolates S between grid points (constant density within an interval, pycox's
        "CDI"); "step" holds S(grid[j]) until the next grid point. Beyond the grid S stays at its
        last value; both keep S non-increasing and in [0, 1].

    Returns
    -------
    Tensor (..., T)
    """
    times = times.to(grid.dtype).clamp(min=0)
    if method == "step":
        return step_function_at(grid, survival, times, before=1.0)
    if method != "linear":
        raise ValueError(f"method must be 'linear' or 'step'; got {method!r}")
    g = grid.shape[0]
    right = torch.searchsorted(grid.contiguous(), times.contiguous(), right=True).clamp(1, g - 1)
    left = right - 1
    width = grid[right] - grid[left]
    w = ((times - grid[left]) / width).clamp(0.0, 1.0)
    s_left = survival[..., left]
    s_right = survival[..., right]
    return s_left + (s_right - s_left) * w
