"""Competing risks: causes of the first event, cumulative incidence, concordance and Brier score.

Conventions
-----------
- ``event_type``: int, 0 = censored, ``k >= 1`` = cause ``k`` observed first. In this package the
  progression endpoints use cause 1 = progression, cause 2 = death without progression
  (:data:`CAUSES`); :func:`first_event` derives them from OS and PFS columns.
- ``time`` is the time of the first event (or of censoring).
- ``cif``: cumulative incidence ``F_k(t) = P(T <= t, cause = k)``, shape (n, K, n_times) or (n, n_times)
  for one cause; ``1 - sum_k F_k(t)`` is the event-free survival.

From cause-specific hazards to CIFs (:func:`cumulative_incidence`): on a grid of jump times
``u_1 < ... < u_m`` with hazard increments ``dA_k(u_j)``,
``S(u_j) = prod_{l <= j} (1 - sum_k dA_k(u_l))`` and ``F_k(u_j) = sum_{l <= j} S(u_{l-1}) dA_k(u_l)``:
the product-limit form, so ``S + sum_k F_k = 1`` at every grid point and, with Nelson-Aalen
increments (no covariates), the result *is* the Aalen-Johansen estimator (checked against
``lifelines.AalenJohansenFitter`` in the tests). With Cox models the increments are
``dH0_k(u_j) exp(risk_k)`` (cause-specific Breslow baselines).

The concordance and Brier functions are written here because scikit-survival and lifelines have no
competing-risks versions; the single-cause special cases are checked against sksurv in the tests.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from multimodal.survival.curves import kaplan_meier, step_values
from multimodal.survival.metrics import _check, check_eval_times, harrell_c

__all__ = [
    "CAUSES",
    "aalen_johansen",
    "cause_specific_c_index",
    "cif_brier_score",
    "cif_integrated_brier_score",
    "competing_c_index",
    "cumulative_incidence",
    "first_event",
]

log = logging.getLogger(__name__)

#: Names of the causes of the progression endpoints: event_type 1 and 2.
CAUSES: tuple[str, ...] = ("progression", "death")


def first_event(
    time: np.ndarray, event: np.ndarray, pfs_time: np.ndarray, pfs_event: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Time and cause of the first event (progression or death) from OS and PFS columns.

    Definition (applied in this order):

    - **death without progression** (cause 2) when death is observed (``event``) and no
      progression is recorded before it (``pfs_time >= time``); the first-event time is ``time``.
      This covers patients whose PFS is censored at death (TCGA-CDR: death without tumour) *and*
      patients whose PFS event *is* the death (TCGA-CDR counts death with tumour as a PFI event,
      without a progression date);
    - **progression** (cause 1) when ``pfs_event`` is observed otherwise, at ``pfs_time``;
    - **censored** (0) otherwise, at ``pfs_time`` (the end of progression follow-up).

    Parameters
    ----------
    time, event : array (n,)
        Overall survival (``event`` True = death observed).
    pfs_time, pfs_event : array (n,)
        Progression-free survival / interval (``pfs_event`` True = progression or death).

    Returns
    -------
    first_time : ndarray (n,) float
    event_type : ndarray (n,) int, 0 = censored, 1 = progression, 2 = death without progression
    """
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).astype(bool).reshape(-1)
    pt = np.asarray(pfs_time, dtype=float).reshape(-1)
    pe = np.asarray(pfs_event).astype(bool).reshape(-1)
    if not t.shape == e.shape == pt.shape == pe.shape:
        raise ValueError(
            f"time, event, pfs_time and pfs_event need equal lengths; got "
            f"{t.size}, {e.size}, {pt.size}, {pe.size}"
        )
    if not (np.isfinite(t).all() and np.isfinite(pt).all()):
        raise ValueError("time and pfs_time must be finite (drop patients without the endpoints)")
    death_first = e & (pt >= t)
    etype = np.where(death_first, 2, np.where(pe, 1, 0)).astype(np.int64)
    first_time = np.where(death_first, t, pt)
    n_after = int((pe & ~death_first & (pt > t)).sum())
    if n_after:
        log.warning(
            "%d patients have a progression after their overall-survival follow-up ends "
            "(pfs_time > time); kept as progression at pfs_time",
            n_after,
        )
    return first_time, etype


def cumulative_incidence(increments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Event-free survival and CIFs from cause-specific hazard increments (product-limit form).

    Parameters
    ----------
    increments : Tensor (..., K, m)
        ``dA_k(u_j)`` >= 0 on a common grid of jump times. Where the total increment of a step
        exceeds 1 (possible with large Cox risks) it is scaled down to 1: everybody still event-free
        has an event there.

    Returns
    -------
    survival : Tensor (..., m), S(u_j) just after each grid time
    cif : Tensor (..., K, m), F_k(u_j); ``survival + cif.sum(-2) == 1`` up to rounding
    """
    d = torch.as_tensor(increments).double()
    if d.dim() < 2:
        raise ValueError(f"increments must have shape (..., K, m); got {tuple(d.shape)}")
    if bool((d < 0).any()) or not bool(torch.isfinite(d).all()):
        raise ValueError("hazard increments must be finite and >= 0")
    total = d.sum(-2)
    scale = torch.where(total > 1.0, 1.0 / total.clamp(min=1e-300), torch.ones_like(total))
    d = d * scale.unsqueeze(-2)
    total = total.clamp(max=1.0)
    survival = torch.cumprod(1.0 - total, dim=-1)
    before = torch.cat([torch.ones_like(survival[..., :1]), survival[..., :-1]], dim=-1)
    cif = torch.cumsum(before.unsqueeze(-2) * d, dim=-1)
    return survival, cif


def aalen_johansen(
    time: np.ndarray, event_type: np.ndarray, n_causes: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Aalen-Johansen estimate of the CIFs (no covariates).

    Returns
    -------
    times : ndarray (m,), sorted unique observed times
    cif : ndarray (K, m), F_k just after each time
    survival : ndarray (m,), event-free Kaplan-Meier
    """
    t = np.asarray(time, dtype=float).reshape(-1)
    k = np.asarray(event_type).astype(np.int64).reshape(-1)
    if t.shape != k.shape or t.size == 0:
        raise ValueError("time and event_type must be non-empty with equal lengths")
    if (k < 0).any():
        raise ValueError("event_type must be 0 (censored) or a cause >= 1")
    n_causes = int(n_causes or max(1, k.max()))
    times, inv = np.unique(t, return_inverse=True)
    at_risk = np.cumsum(np.bincount(inv, minlength=times.size)[::-1])[::-1].astype(float)
    d = np.stack(
        [
            np.bincount(inv, weights=(k == c).astype(float), minlength=times.size)
            for c in range(1, n_causes + 1)
        ]
    )
    surv, cif = cumulative_incidence(torch.from_numpy(d / at_risk))
    return times, cif.numpy(), surv.numpy()


def cause_specific_c_index(time, event_type, risk, cause: int) -> float:
    """Harrell's C for one cause, the other causes counted as censoring (cause-specific C).

    ``risk``: (n,), higher = earlier event of ``cause`` (e.g. the cause-specific log-hazard ratio).
    """
    k = np.asarray(event_type).astype(np.int64).reshape(-1)
    return harrell_c(time, k == int(cause), risk)


def competing_c_index(time, event_type, risk, cause: int) -> float:
    """Concordance for one cause in the presence of competing events (Wolbers et al. 2009).

    A pair (i, j) is comparable when i has ``cause`` at ``t_i`` and j is still free of it: either
    ``t_j > t_i`` or j had a *competing* event (at any time: it never gets ``cause``). Computed as
    Harrell's C with the competing-event patients moved beyond the last time.
    """
    t = np.asarray(time, dtype=float).reshape(-1)
    k = np.asarray(event_type).astype(np.int64).reshape(-1)
    other = (k > 0) & (k != int(cause))
    t_mod = np.where(other, (t.max() if t.size else 0.0) + 1.0, t)
    return harrell_c(t_mod, k == int(cause), risk)


def _censoring_km(train_time, train_event_type):
    """Kaplan-Meier of the censoring distribution: (times, G just after each time)."""
    t = np.asarray(train_time, dtype=float).reshape(-1)
    k = np.asarray(train_event_type).astype(np.int64).reshape(-1)
    return kaplan_meier(t, k == 0)


def cif_brier_score(
    train_time,
    train_event_type,
    time,
    event_type,
    cif,
    times,
    cause: int,
    outside: str = "raise",
) -> tuple[np.ndarray, np.ndarray]:
    """IPCW Brier score of a predicted CIF for one cause (Graf et al. 1999; Gerds & Schumacher 2006).

    ``BS_k(t) = 1/n sum_i w_i(t) (1{T_i <= t, cause_i = k} - F_k(t | x_i))^2`` with
    ``w_i(t) = 1{T_i <= t, event_i != 0} / G(T_i-) + 1{T_i > t} / G(t)``: patients censored
    before ``t`` get weight 0, those with *any* observed event before ``t`` are known. ``G`` is the
    Kaplan-Meier of the censoring times of the *training* data (as sksurv's ``brier_score``).
    With one cause and ``cif = 1 - S`` this is the ordinary Brier score of S.

    Parameters
    ----------
    train_time, train_event_type : (n_train,) training data for the censoring distribution.
    time, event_type : (n,) test data; ``event_type`` 0 = censored, k = cause k.
    cif : array (n, T), predicted ``F_cause(times[j] | x_i)``.
    times : (T,) evaluation times, inside the test follow-up (see ``outside``).
    cause : int >= 1.
    outside : {"raise", "drop"} as in :func:`multimodal.survival.metrics.brier_score`.

    Returns
    -------
    times : ndarray (T',) the kept times; scores : ndarray (T',)
    """
    tr_t, _ = _check(train_time, np.zeros(np.size(train_time), bool))
    t, _ = _check(time, np.zeros(np.size(time), bool))
    k = np.asarray(event_type).astype(np.int64).reshape(-1)
    tr_k = np.asarray(train_event_type).astype(np.int64).reshape(-1)
    if k.shape != t.shape or tr_k.shape != tr_t.shape:
        raise ValueError("event_type needs one value per patient, like time")
    tt = np.asarray(times, dtype=float).reshape(-1)
    f = np.asarray(cif, dtype=float)
    if f.shape != (t.size, tt.size):
        raise ValueError(
            f"cif must have shape (n_patients, n_times) = ({t.size}, {tt.size}); got {f.shape}"
        )
    if not np.isfinite(f).all() or (f < -1e-9).any() or (f > 1 + 1e-9).any():
        raise ValueError("cif must hold probabilities in [0, 1]")
    keep = check_eval_times(tt, t, tr_t, outside, "cif_brier_score")
    tt, f = tt[keep], np.clip(f[:, keep], 0.0, 1.0)
    g_times, g = _censoring_km(tr_t, tr_k)
    g_at_event = step_values(g_times, g, t, before=1.0, left_limit=True)  # G(T_i-)
    g_at_t = step_values(g_times, g, tt, before=1.0)  # G(t)
    if (g_at_t <= 0).any():
        raise ValueError("the censoring survival is 0 at an evaluation time; use earlier times")
    scores = np.empty(tt.size)
    for j, s in enumerate(tt):
        known_event = (t <= s) & (k != 0)
        w = np.where(known_event, 1.0 / np.where(g_at_event > 0, g_at_event, np.inf), 0.0)
        w = w + (t > s) / g_at_t[j]
        y = (known_event & (k == int(cause))).astype(float)
        scores[j] = np.mean(w * (y - f[:, j]) ** 2)
    return tt, scores


def cif_integrated_brier_score(
    train_time, train_event_type, time, event_type, cif, times, cause: int, outside: str = "raise"
) -> float:
    """Integrated :func:`cif_brier_score`: trapezoid over ``times`` divided by their range."""
    tt, scores = cif_brier_score(
        train_time, train_event_type, time, event_type, cif, times, cause, outside
    )
    if tt.size < 2:
        raise ValueError("cif_integrated_brier_score needs at least 2 evaluation times")
    return float(np.trapezoid(scores, tt) / (tt[-1] - tt[0]))
