"""Longitudinal biomarkers for synthetic cohorts: known trajectories that drive the hazard.

:func:`multimodal.data.synth.generate_cohort` with ``longitudinal=True`` adds the modality
``labs`` (kind ``longitudinal``): a long table ``longitudinal.csv`` (``patient_id, time, variable,
value``, time in months since diagnosis) of repeat measurements of ``n_markers`` biomarkers from
:data:`MARKERS`, and makes the hazard of death depend on their current true values.

The generative model
--------------------
Each marker ``k`` of patient ``i`` follows a straight line on a latent scale (standard normal at
diagnosis): ``m_ik(t) = a_ik + b_ik * t``, with a random intercept ``a_ik`` and a random slope
``b_ik`` (per month). The tumour marker ``cea`` starts higher and rises faster in patients with a
larger latent tumour burden (the burden that also drives stage, nodes, lesion size and the
cell-cycle pathway, see :mod:`multimodal.data.synth`). The hazard of death is

    h_i(t) = h0(t) * exp(eta_i + sum_k gamma_k * m_ik(t))

with ``h0`` the Weibull baseline of the cohort, ``eta_i`` the cross-sectional log-hazard
(``true_risk`` of ``ground_truth.csv``, scaled by :data:`BASELINE_SHARE` so that the markers carry
a large share of the signal) and ``gamma_k`` the marker's association (:attr:`Marker.gamma`):
``cea`` raises the hazard and ``albumin`` lowers it; ``ldh`` (correlated with the burden) and
``haemoglobin`` have ``gamma = 0`` (decoys). Death times invert the cumulative hazard numerically
(:func:`death_times`); censoring is unchanged.

Visits are at diagnosis (time 0) and then every 3-6 months (uniform gaps) while the patient is
followed; each marker is measured at a visit with probability 0.85 and never at or after the
patient's event or censoring time. An observed value is ``loc + scale * (m_ik(t) + noise)``
(``exp`` of it for log-normal markers), with independent Gaussian measurement noise.

Ground truth
------------
``ground_truth.csv`` gains ``true_marker_intercept_<marker>``, ``true_marker_slope_<marker>`` (per
month) and ``true_marker_gamma_<marker>`` on the latent scale; :func:`true_dynamic_risk` gives the
true log-hazard at a landmark time (up to the common ``log h0``), the best score any dynamic model
can reach there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError

__all__ = [
    "BASELINE_SHARE",
    "MARKERS",
    "Marker",
    "MarkerTrajectories",
    "check_n_markers",
    "death_times",
    "longitudinal_table",
    "marker_ground_truth",
    "marker_trajectories",
    "true_dynamic_risk",
]

#: Factor applied to the cross-sectional log-hazard (``true_risk``) when the markers drive the
#: hazard: the markers then carry a large share of the signal.
BASELINE_SHARE = 0.6


@dataclass(frozen=True)
class Marker:
    """One synthetic biomarker (latent scale: standard normal at diagnosis, time in months).

    Attributes
    ----------
    name, unit : variable name in ``longitudinal.csv`` and the unit of its values.
    loc, scale : observed value = ``loc + scale * latent`` (``exp`` of it when ``log``).
    log : log-normal marker (tumour markers, enzymes).
    intercept_burden : correlation of the intercept with the latent tumour burden.
    slope_mean, slope_sd : mean and SD of the slope, latent SD per month.
    slope_burden : correlation of the slope with the burden.
    noise_sd : SD of the measurement noise, latent SD.
    gamma : log-hazard of death per latent SD of the current true value (0 = no effect).
    decimals : decimals of the written values.
    """

    name: str
    unit: str
    loc: float
    scale: float
    log: bool
    intercept_burden: float
    slope_mean: float
    slope_sd: float
    slope_burden: float
    noise_sd: float
    gamma: float
    decimals: int


#: The markers, in the order ``n_markers`` takes them (the first two drive the hazard, so the
#: outcomes do not depend on ``n_markers``).
MARKERS: tuple[Marker, ...] = (
    Marker("cea", "ng/mL", np.log(3.0), 0.6, True, 0.5, 0.3 / 12, 0.6 / 12, 0.7, 0.3, 0.7, 2),
    Marker("albumin", "g/dL", 4.0, 0.4, False, -0.3, -0.2 / 12, 0.4 / 12, 0.0, 0.3, -0.6, 2),
    Marker("ldh", "U/L", np.log(200.0), 0.3, True, 0.4, 0.05 / 12, 0.2 / 12, 0.3, 0.4, 0.0, 0),
    Marker("haemoglobin", "g/dL", 13.0, 1.3, False, -0.2, -0.05 / 12, 0.15 / 12, 0.0, 0.25, 0.0, 1),
)
_VISIT_GAP = (3.0, 6.0)  # months between visits (uniform)
_P_MEASURED = 0.85  # probability that a marker is measured at a visit
_GT_PREFIXES = ("true_marker_intercept_", "true_marker_slope_", "true_marker_gamma_")


@dataclass
class MarkerTrajectories:
    """True (noise-free) marker trajectories ``m(t) = intercept + slope * t`` on the latent scale.

    Attributes
    ----------
    markers : the markers, in column order.
    intercept : (n, K) float, latent value at diagnosis.
    slope : (n, K) float, latent SD per month.
    """

    markers: tuple[Marker, ...]
    intercept: np.ndarray
    slope: np.ndarray

    @property
    def gamma(self) -> np.ndarray:
        """(K,) float, log-hazard per latent SD of each marker."""
        return np.array([m.gamma for m in self.markers])

    def log_hazard_line(self) -> tuple[np.ndarray, np.ndarray]:
        """The markers' part of the log-hazard, ``alpha + beta * t``: (alpha, beta), each (n,)."""
        return self.intercept @ self.gamma, self.slope @ self.gamma


def check_n_markers(n_markers: int) -> None:
    """Raise ValueError unless ``2 <= n_markers <= len(MARKERS)``."""
    if not 2 <= n_markers <= len(MARKERS):
        raise ValueError(
            f"n_markers is {n_markers}; choose 2 to {len(MARKERS)} "
            f"({', '.join(m.name for m in MARKERS)}, in that order)"
        )


def _mix(burden: np.ndarray, noise: np.ndarray, loading: float) -> np.ndarray:
    return loading * burden + np.sqrt(1.0 - loading**2) * noise


def marker_trajectories(
    rng: np.random.Generator, burden: np.ndarray, n_markers: int, burden_scale: float = 1.0
) -> MarkerTrajectories:
    """Random intercepts and slopes of the first ``n_markers`` of :data:`MARKERS`.

    Parameters
    ----------
    rng : generator of this purpose only; draws for every marker of :data:`MARKERS`, so a
        marker's trajectories do not depend on ``n_markers``.
    burden : (n,) float, the latent tumour burden (standard normal).
    n_markers : 2 to ``len(MARKERS)``.
    burden_scale : factor on every marker's correlation with the burden (0: independent of it).
    """
    check_n_markers(n_markers)
    n = len(burden)
    z = rng.standard_normal((n, len(MARKERS), 2))
    intercept = np.column_stack(
        [_mix(burden, z[:, k, 0], burden_scale * m.intercept_burden) for k, m in enumerate(MARKERS)]
    )
    slope = np.column_stack(
        [
            m.slope_mean + m.slope_sd * _mix(burden, z[:, k, 1], burden_scale * m.slope_burden)
            for k, m in enumerate(MARKERS)
        ]
    )
    return MarkerTrajectories(MARKERS[:n_markers], intercept[:, :n_markers], slope[:, :n_markers])


def death_times(
    unit_exponential: np.ndarray,
    log_hazard_intercept: np.ndarray,
    log_hazard_slope: np.ndarray,
    weibull: tuple[float, float],
    horizon: float,
    step: float = 0.05,
    chunk: int = 1024,
) -> np.ndarray:
    """Event times of the hazards ``h_i(t) = h0(t) * exp(c_i + d_i * t)``, ``h0`` Weibull.

    Solves ``H_i(T_i) = E_i`` for the cumulative hazard ``H_i`` on a grid of ``step`` up to
    ``horizon``: within a grid cell the factor ``exp(c_i + d_i * t)`` is taken at the cell's
    midpoint and ``H0(t) = (t / scale) ** shape`` is exact, so a constant ``d_i = 0`` gives the
    closed form ``scale * (E_i * exp(-c_i)) ** (1 / shape)`` up to rounding.

    Parameters
    ----------
    unit_exponential : (n,) float, ``E_i ~ Exp(1)``.
    log_hazard_intercept, log_hazard_slope : (n,) float, ``c_i`` and ``d_i`` (per time unit).
    weibull : (shape, scale) of the baseline.
    horizon : last time solved for; ``H_i(horizon) < E_i`` gives ``inf`` (no event by then).
    step : grid step, in the time unit.
    chunk : patients per vectorised block (memory ~ ``chunk * horizon / step`` floats).

    Returns
    -------
    (n,) float event times in (0, horizon] or ``inf``.
    """
    shape, scale = weibull
    e = np.asarray(unit_exponential, dtype=float)
    c = np.asarray(log_hazard_intercept, dtype=float)
    d = np.asarray(log_hazard_slope, dtype=float)
    grid = np.linspace(0.0, horizon, int(np.ceil(horizon / step)) + 1)
    h0 = (grid / scale) ** shape
    mid, dh0 = 0.5 * (grid[1:] + grid[:-1]), np.diff(h0)
    out = np.full(e.shape, np.inf)
    for lo in range(0, len(e), chunk):
        block = slice(lo, lo + chunk)
        factor = np.exp(c[block, None] + d[block, None] * mid[None, :])  # (b, cells)
        cum = np.cumsum(factor * dh0[None, :], axis=1)
        cell = (cum < e[block, None]).sum(axis=1)  # the cell where H crosses E
        inside = cell < len(mid)
        rows, cells = np.flatnonzero(inside), cell[inside]
        before = np.where(cells > 0, cum[rows, np.maximum(cells - 1, 0)], 0.0)
        h0_at = h0[cells] + (e[block][rows] - before) / factor[rows, cells]
        out[lo + rows] = scale * h0_at ** (1.0 / shape)
    return out


def longitudinal_table(
    rng: np.random.Generator,
    ids: list[str],
    trajectories: MarkerTrajectories,
    time: np.ndarray,
    present: np.ndarray,
    horizon: float,
) -> pd.DataFrame:
    """Visits and noisy measurements up to each patient's follow-up time (long table).

    Parameters
    ----------
    rng : generator of this purpose only; its draws for patient ``i`` do not depend on
        ``n_markers`` (drawn for every marker of :data:`MARKERS`).
    ids : (n,) patient ids.
    trajectories : the true trajectories.
    time : (n,) float, event or censoring time (months); measurements are strictly before it.
    present : (n,) bool, patients with labs (False = the modality is missing: no rows).
    horizon : longest possible follow-up (months); visits are drawn up to it.

    Returns
    -------
    DataFrame with columns patient_id, time (months, 2 decimals), variable, value, ordered by
    patient, time and marker.
    """
    n, n_all = len(ids), len(MARKERS)
    n_visits = int(np.floor(horizon / _VISIT_GAP[0])) + 2
    gaps = rng.uniform(*_VISIT_GAP, size=(n, n_visits - 1))
    visit = np.concatenate([np.zeros((n, 1)), np.cumsum(gaps, axis=1)], axis=1).round(2)
    measured = rng.random((n, n_visits, n_all)) < _P_MEASURED
    noise = rng.standard_normal((n, n_visits, n_all))
    k = len(trajectories.markers)
    keep = measured[:, :, :k] & (visit < np.asarray(time)[:, None])[:, :, None]
    keep &= np.asarray(present, dtype=bool)[:, None, None]
    i, v, j = np.nonzero(keep)  # row-major: ordered by patient, visit, marker
    latent = trajectories.intercept[i, j] + trajectories.slope[i, j] * visit[i, v]
    latent = latent + np.array([m.noise_sd for m in trajectories.markers])[j] * noise[i, v, j]
    loc, scale = (np.array([getattr(m, a) for m in trajectories.markers]) for a in ("loc", "scale"))
    value = loc[j] + scale[j] * latent
    log = np.array([m.log for m in trajectories.markers])[j]
    value = np.where(log, np.exp(np.where(log, value, 0.0)), value)
    decimals = np.array([m.decimals for m in trajectories.markers])
    for d in np.unique(decimals):
        value[decimals[j] == d] = value[decimals[j] == d].round(int(d))
    return pd.DataFrame(
        {
            "patient_id": np.asarray(ids, dtype=object)[i],
            "time": visit[i, v],
            "variable": np.array([m.name for m in trajectories.markers], dtype=object)[j],
            "value": value,
        }
    )


def marker_ground_truth(trajectories: MarkerTrajectories) -> pd.DataFrame:
    """Ground-truth columns: ``true_marker_intercept_<name>``, ``true_marker_slope_<name>`` (latent
    SD per month) and ``true_marker_gamma_<name>`` (log-hazard per latent SD), one row per
    patient."""
    columns = {}
    for k, m in enumerate(trajectories.markers):
        columns[f"true_marker_intercept_{m.name}"] = trajectories.intercept[:, k]
        columns[f"true_marker_slope_{m.name}"] = trajectories.slope[:, k]
        columns[f"true_marker_gamma_{m.name}"] = np.full(len(trajectories.intercept), m.gamma)
    return pd.DataFrame(columns)


def true_dynamic_risk(ground_truth: pd.DataFrame, landmark: float) -> pd.Series:
    """True log-hazard of death at time ``landmark`` (up to the common ``log h0(landmark)``):
    ``true_risk + sum_k gamma_k * (intercept_k + slope_k * landmark)``.

    Among patients alive at ``landmark`` it orders the hazard at every later time the same way
    for patients with equal slopes, and is the score a dynamic model should approach.

    Parameters
    ----------
    ground_truth : ``ground_truth.csv`` of a cohort generated with ``longitudinal=True``
        (``true_risk`` and the ``true_marker_*`` columns).
    landmark : time since diagnosis, in the cohort's time unit (months), >= 0.

    Returns
    -------
    Series (n,) float, indexed like ``ground_truth``, higher = worse.
    """
    if not np.isfinite(landmark) or landmark < 0:
        raise ValueError(f"landmark is {landmark}; choose a time >= 0 (months since diagnosis)")
    names = [
        c[len(_GT_PREFIXES[2]) :] for c in ground_truth.columns if c.startswith(_GT_PREFIXES[2])
    ]
    needed = ["true_risk"] + [p + name for name in names for p in _GT_PREFIXES]
    missing = [c for c in needed if c not in ground_truth.columns]
    if not names or missing:
        raise DataError(
            "ground truth has no marker trajectories (columns "
            f"{', '.join(missing) or 'true_marker_gamma_<marker>'} are missing); generate the "
            "cohort with generate_cohort(..., longitudinal=True) or `multimodal synth "
            "--longitudinal` and read its ground_truth.csv"
        )
    risk = ground_truth["true_risk"].to_numpy(dtype=float).copy()
    for name in names:
        current = (
            ground_truth[_GT_PREFIXES[0] + name].to_numpy(dtype=float)
            + ground_truth[_GT_PREFIXES[1] + name].to_numpy(dtype=float) * landmark
        )
        risk += ground_truth[_GT_PREFIXES[2] + name].to_numpy(dtype=float) * current
    return pd.Series(risk, index=ground_truth.index, name="true_dynamic_risk")
