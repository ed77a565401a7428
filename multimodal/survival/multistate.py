"""Illness-death multi-state model: diagnosis (0) -> progression (1) -> death (2), and 0 -> 2.

Transitions: ``0 -> 1`` progression, ``0 -> 2`` death without progression, ``1 -> 2`` death after
progression. The time scale is **clock-forward** (time since diagnosis for every transition, a Markov
model): a patient enters the ``1 -> 2`` risk set at the progression time (delayed entry, left
truncation) and leaves it at death or censoring. We chose it over clock-reset (time since
progression) because the state-occupation probabilities are then the product-limit
(Aalen-Johansen) recursion on one time grid, with no convolution, and they sum to 1 at every time
by construction:

``P0(u_j) = P0(u_{j-1}) (1 - dA01 - dA02)``,
``P1(u_j) = P1(u_{j-1}) (1 - dA12) + P0(u_{j-1}) dA01``,
``P2(u_j) = P2(u_{j-1}) + P0(u_{j-1}) dA02 + P1(u_{j-1}) dA12``.

Patient-level models put one Cox model on each transition (``dA_ab(u | x) = dH0_ab(u) exp(r_ab(x))``,
Breslow baselines; the ``1 -> 2`` partial likelihood and baseline use delayed entry:
:func:`cox_nll_delayed_entry`, :func:`breslow_baseline_delayed_entry`).
"""

from __future__ import annotations

import numpy as np
import torch

from multimodal.survival.curves import _check_time_event
from multimodal.survival.losses import no_event_zero, resolve_option

__all__ = [
    "STATES",
    "breslow_baseline_delayed_entry",
    "cox_nll_delayed_entry",
    "illness_death_aalen_johansen",
    "illness_death_transitions",
    "state_occupation",
]

#: State names, index = state number.
STATES: tuple[str, ...] = ("progression_free", "progressed", "dead")


def illness_death_transitions(
    time: np.ndarray, event: np.ndarray, first_time: np.ndarray, event_type: np.ndarray
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Transition data ``(entry, exit, event)`` per transition from first-event and OS data.

    Parameters
    ----------
    time, event : (n,) overall survival.
    first_time, event_type : (n,) first event (see :func:`multimodal.survival.competing.first_event`:
        1 = progression, 2 = death without progression, 0 = censored).

    Returns
    -------
    dict with keys ``"01"``, ``"02"`` (all patients, entry 0, exit at ``first_time``) and ``"12"``
    (the progressed patients, ``event_type == 1``, in their original order: entry at
    ``first_time``, exit at ``time``).
    """
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).astype(bool).reshape(-1)
    ft = np.asarray(first_time, dtype=float).reshape(-1)
    k = np.asarray(event_type).astype(np.int64).reshape(-1)
    zeros = np.zeros_like(ft)
    prog = np.flatnonzero(k == 1)
    return {
        "01": (zeros, ft, k == 1),
        "02": (zeros, ft, k == 2),
        "12": (ft[prog], t[prog], e[prog]),
    }


def cox_nll_delayed_entry(
    risk: torch.Tensor,
    entry: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: str = "efron",
    reduction: str = "mean",
) -> torch.Tensor:
    """Negative Cox partial log-likelihood with delayed entry (left truncation), float32.

    Patient i is at risk at time u when ``entry_i < u <= time_i``. Rows with ``time <= entry`` are
    never at risk and are ignored. With all entries 0 this equals :func:`cox_nll` (tested), and it
    matches ``lifelines.CoxPHFitter(entry_col=...)``.

    Parameters
    ----------
    risk, entry, time, event : (n,)
    ties : {"efron", "breslow"}
    reduction : {"mean", "sum"}; "mean" divides by the number of usable events.

    Notes
    -----
    The risk sets are a (unique event times x patients) mask: O(n * d) memory, fine for the batch
    and fold sizes used here (a cumulative-sum form would need a difference of sums, which loses
    precision in float32).
    """
    resolve_option("ties", ties, ("efron", "breslow"))
    resolve_option("reduction", reduction, ("mean", "sum"))
    with torch.autocast(device_type=risk.device.type, enabled=False):
        r = risk.float().reshape(-1)
        n = r.shape[0]
        a = torch.as_tensor(entry, device=r.device).float().reshape(-1)
        t = torch.as_tensor(time, device=r.device).float().reshape(-1)
        e = torch.as_tensor(event, device=r.device).bool().reshape(-1)
        if not a.shape[0] == t.shape[0] == e.shape[0] == n:
            raise ValueError(
                f"risk, entry, time and event need equal lengths; got {n}, {a.shape[0]}, "
                f"{t.shape[0]}, {e.shape[0]}"
            )
        e = e & (t > a)
        if not bool(e.any()):
            return no_event_zero(risk, "cox_nll_delayed_entry")
        u, inv = torch.unique(t[e], sorted=True, return_inverse=True)
        at_risk = (a[None, :] < u[:, None]) & (t[None, :] >= u[:, None])  # (G, n)
        masked = torch.where(
            at_risk, r[None, :], torch.full_like(at_risk, -torch.inf, dtype=r.dtype)
        )
        log_den = torch.logsumexp(masked, dim=1)[inv]  # per event
        ev_r = r[e]
        if ties == "efron":
            d = torch.bincount(inv, minlength=u.shape[0])
            order = torch.argsort(inv, stable=True)
            first = torch.cumsum(d, 0) - d
            rank = torch.empty_like(inv)
            rank[order] = torch.arange(inv.shape[0], device=r.device) - first[inv[order]]
            frac = rank.to(r.dtype) / d[inv].to(r.dtype)
            tied = torch.full((u.shape[0],), -torch.inf, dtype=r.dtype, device=r.device)
            tied = tied.scatter_reduce(0, inv, ev_r.detach(), reduce="amax", include_self=True)
            tied_sum = torch.zeros_like(tied).index_add(0, inv, torch.exp(ev_r - tied[inv]))
            log_tied = (torch.log(tied_sum) + tied)[inv]
            ratio = torch.exp(log_tied - log_den).clamp(max=1.0)
            log_den = log_den + torch.log1p(-frac * ratio)
        nll = -(ev_r - log_den).sum()
        return nll / e.sum() if reduction == "mean" else nll


def breslow_baseline_delayed_entry(
    risk: np.ndarray | torch.Tensor,
    entry: np.ndarray | torch.Tensor,
    time: np.ndarray | torch.Tensor,
    event: np.ndarray | torch.Tensor,
) -> tuple[np.ndarray, np.ndarray]:
    """Breslow baseline cumulative hazard with delayed entry (risk set ``entry < u <= time``).

    Returns ``(times, cumhaz)`` at the unique event times, as
    :func:`multimodal.survival.curves.breslow_baseline` (which it equals when every entry is 0).
    Empty arrays when there is no usable event.
    """
    t, e = _check_time_event(time, event)
    a = np.asarray(entry.detach().cpu() if isinstance(entry, torch.Tensor) else entry, float)
    r = np.asarray(risk.detach().cpu().double() if isinstance(risk, torch.Tensor) else risk, float)
    a, r = a.reshape(-1), r.reshape(-1)
    if not a.shape == r.shape == t.shape:
        raise ValueError("risk, entry, time and event need equal lengths")
    e = e & (t > a)
    if not e.any():
        return np.zeros(0), np.zeros(0)
    w = np.exp(r - r.max())
    u, deaths = np.unique(t[e], return_counts=True)
    # at risk at u: entered before u (entry < u) and not yet left (time >= u)
    order_t, order_a = np.argsort(t), np.argsort(a)
    cum_t = np.concatenate([[0.0], np.cumsum(w[order_t])])
    cum_a = np.concatenate([[0.0], np.cumsum(w[order_a])])
    left_before = cum_t[np.searchsorted(t[order_t], u, side="left")]  # time < u
    entered = cum_a[np.searchsorted(a[order_a], u, side="left")]  # entry < u
    risk_set = np.maximum(entered - left_before, 1e-300)
    hazard = deaths / risk_set * np.exp(-r.max())
    return u, np.cumsum(hazard)


def state_occupation(d01: torch.Tensor, d02: torch.Tensor, d12: torch.Tensor) -> torch.Tensor:
    """State-occupation probabilities of the Markov illness-death model on a grid.

    Parameters
    ----------
    d01, d02, d12 : Tensor (..., m)
        Transition hazard increments at the grid times (>= 0). Steps where ``d01 + d02 > 1``
        are scaled to 1, ``d12`` is capped at 1.

    Returns
    -------
    Tensor (..., 3, m), float64: P0 (progression-free), P1 (progressed, alive), P2 (dead) just
    after each grid time, starting from state 0 at time 0. Sums to 1 at every time (up to rounding;
    P2 is accumulated, not taken as 1 - P0 - P1, so the identity is a real check).
    """
    a01, a02, a12 = (torch.as_tensor(x).double() for x in (d01, d02, d12))
    if not a01.shape == a02.shape == a12.shape:
        raise ValueError("d01, d02 and d12 need the same shape (..., m)")
    for name, x in (("d01", a01), ("d02", a02), ("d12", a12)):
        if bool((x < 0).any()) or not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name} must be finite and >= 0")
    out0 = a01 + a02
    scale = torch.where(out0 > 1.0, 1.0 / out0.clamp(min=1e-300), torch.ones_like(out0))
    a01, a02, a12 = a01 * scale, a02 * scale, a12.clamp(max=1.0)
    p0 = torch.cumprod(1.0 - (a01 + a02).clamp(max=1.0), dim=-1)
    p0_before = torch.cat([torch.ones_like(p0[..., :1]), p0[..., :-1]], dim=-1)
    inflow1, inflow2_0 = p0_before * a01, p0_before * a02
    p1 = torch.empty_like(p0)
    p2 = torch.empty_like(p0)
    prev1 = torch.zeros_like(p0[..., 0])
    prev2 = torch.zeros_like(p0[..., 0])
    for j in range(p0.shape[-1]):  # a linear recursion over the (few hundred) grid times
        out12 = prev1 * a12[..., j]
        p1[..., j] = prev1 - out12 + inflow1[..., j]
        p2[..., j] = prev2 + inflow2_0[..., j] + out12
        prev1, prev2 = p1[..., j], p2[..., j]
    return torch.stack([p0, p1, p2], dim=-2)


def illness_death_aalen_johansen(
    time, event, first_time, event_type
) -> tuple[np.ndarray, np.ndarray]:
    """Non-parametric (Aalen-Johansen) state occupation of the illness-death model.

    Nelson-Aalen increments per transition (``1 -> 2`` with delayed entry at progression) fed to
    :func:`state_occupation`.

    Returns
    -------
    times : ndarray (m,) union of the transition times
    probs : ndarray (3, m) P0, P1, P2 just after each time
    """
    tr = illness_death_transitions(time, event, first_time, event_type)
    grids, incs = [], []
    for key in ("01", "02", "12"):
        a, t, e = tr[key]
        u, h = breslow_baseline_delayed_entry(np.zeros_like(t), a, t, e)
        grids.append(u)
        incs.append((u, np.diff(np.concatenate([[0.0], h]))))
    grid = np.unique(np.concatenate([*grids, np.zeros(1)]))
    d = []
    for u, inc in incs:
        full = np.zeros(grid.size)
        full[np.searchsorted(grid, u)] = inc
        d.append(torch.from_numpy(full))
    return grid, state_occupation(*d).numpy()
