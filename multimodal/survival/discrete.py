"""Discrete-time survival: the time grid, discretisation and the discrete-time losses.

Conventions (shared by the losses and the heads)
------------------------------------------------
- ``cuts``: strictly increasing, ``cuts[0] = 0``, ``cuts[-1]`` = the largest training time;
  ``T = len(cuts) - 1`` intervals, interval ``j`` = ``(cuts[j], cuts[j + 1]]`` (interval 0 also
  holds ``t = 0``). Networks output ``T`` values per patient (per cause for competing risks).
- :func:`discretize` gives ``idx`` = the interval that contains ``t`` (times beyond the grid go to
  the last interval). An event at ``idx`` happened in that interval; a patient censored at ``idx``
  is known to be event-free at the *start* of the interval, ``S(cuts[idx])`` (the conservative
  choice, as pycox's default ``censor_side="left"``).
- Every loss is computed in float32 with autocast off and averaged over patients.

Written here rather than imported from pycox (not a dependency; its competing-risk DeepHit and the
float32/no-NaN guarantees differ); formulas follow Kvamme & Borgan (2019) and Lee et al. (2018).
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from multimodal.survival.losses import no_event_zero, resolve_option

__all__ = [
    "deephit_loss",
    "discretize",
    "logistic_hazard_nll",
    "make_time_grid",
    "pmf_nll",
]

logger = logging.getLogger(__name__)


def make_time_grid(
    time: np.ndarray | torch.Tensor,
    event: np.ndarray | torch.Tensor,
    n_bins: int = 20,
    scheme: Literal["quantiles", "equidistant"] = "quantiles",
) -> np.ndarray:
    """Cut points of the discrete-time grid, fitted on training data only.

    Parameters
    ----------
    time, event : array, shape (n,)
        Training times and event indicators (True = event).
    n_bins : int
        Number of intervals wanted. With ``scheme="quantiles"`` tied quantiles are merged, so the
        grid can have fewer intervals (logged).
    scheme : {"quantiles", "equidistant"}
        "quantiles": interior cuts at quantiles of the *event* times; "equidistant": evenly spaced.

    Returns
    -------
    ndarray, shape (T + 1,)
        Strictly increasing cuts from 0 to ``max(time)``.
    """
    resolve_option("scheme", scheme, ("quantiles", "equidistant"))
    t = np.asarray(time, dtype=float).reshape(-1)
    e = np.asarray(event).reshape(-1).astype(bool)
    if t.shape != e.shape or t.size == 0:
        raise ValueError(
            f"time and event must be non-empty with equal length; got {t.size}, {e.size}"
        )
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1; got {n_bins}")
    if (t < 0).any() or not np.isfinite(t).all():
        raise ValueError("time must be finite and >= 0 to build a time grid")
    t_max = float(t.max())
    if t_max <= 0:
        raise ValueError("all times are 0; cannot build a time grid")
    if scheme == "equidistant":
        return np.linspace(0.0, t_max, n_bins + 1)
    if not e.any():
        raise ValueError(
            "no events in the training data; quantile cuts need event times. "
            "Use scheme='equidistant' or check the event column."
        )
    inner = np.quantile(t[e], np.linspace(0, 1, n_bins + 1)[1:-1])
    cuts = np.unique(np.concatenate([[0.0], inner[(inner > 0) & (inner < t_max)], [t_max]]))
    if len(cuts) - 1 < n_bins:
        logger.info(
            "time grid: %d intervals instead of %d (tied quantiles merged)", len(cuts) - 1, n_bins
        )
    return cuts


def discretize(
    time: np.ndarray | torch.Tensor,
    event: np.ndarray | torch.Tensor,
    cuts: np.ndarray | torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Map continuous times to grid intervals.

    Returns
    -------
    idx : LongTensor (n,)
        Interval containing each time: ``cuts[idx] < t <= cuts[idx + 1]`` (clipped to ``[0, T-1]``).
    event : BoolTensor (n,)
        Unchanged event indicator.
    """
    t = torch.as_tensor(time).reshape(-1).double()
    c = torch.as_tensor(np.asarray(cuts, dtype=float), device=t.device)
    if c.dim() != 1 or c.shape[0] < 2 or bool((c[1:] <= c[:-1]).any()):
        raise ValueError(
            "cuts must be strictly increasing with at least 2 values (see make_time_grid)"
        )
    idx = torch.searchsorted(c, t, side="left") - 1
    idx = idx.clamp(0, c.shape[0] - 2)
    return idx.long(), torch.as_tensor(event, device=t.device).reshape(-1).bool()


def _prepare(logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, n_intervals: int):
    idx = torch.as_tensor(idx, device=logits.device).reshape(-1).long()
    event = torch.as_tensor(event, device=logits.device).reshape(-1)
    if idx.shape[0] != logits.shape[0] or event.shape[0] != logits.shape[0]:
        raise ValueError(
            f"idx and event need one value per row of logits ({logits.shape[0]}); "
            f"got {idx.shape[0]} and {event.shape[0]}"
        )
    if bool((idx < 0).any()) or bool((idx >= n_intervals).any()):
        raise ValueError(
            f"idx must lie in [0, {n_intervals - 1}]; use discretize(time, event, cuts)"
        )
    return idx, event


def logistic_hazard_nll(
    logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor
) -> torch.Tensor:
    """Negative log-likelihood of the logistic-hazard model (Kvamme & Borgan 2019; Tutz & Schmid).

    Parameters
    ----------
    logits : Tensor (B, T)
        Logit of the hazard ``h_j = P(event in interval j | event-free at its start)``.
    idx : LongTensor (B,)
        Interval index from :func:`discretize`.
    event : BoolTensor (B,)

    Returns
    -------
    Tensor ()
        float32 mean over patients of
        ``-[e log h_idx + sum_{k < idx} log(1 - h_k)]``.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float()
        if x.dim() != 2:
            raise ValueError(f"logits must have shape (B, T); got {tuple(logits.shape)}")
        idx, event = _prepare(x, idx, event, x.shape[1])
        e = event.float()
        steps = torch.arange(x.shape[1], device=x.device)
        before = (steps[None, :] < idx[:, None]).float()
        # log(1 - sigmoid(x)) = -softplus(x); log(sigmoid(x)) = -softplus(-x)
        survived = -(F.softplus(x) * before).sum(1)
        at = x.gather(1, idx[:, None]).squeeze(1)
        ll = survived + e * (-F.softplus(-at))
        return -ll.mean()


def pmf_nll(
    logits: torch.Tensor, idx: torch.Tensor, event: torch.Tensor, pad: bool = True
) -> torch.Tensor:
    """Negative log-likelihood of the PMF model (softmax over intervals; Kvamme & Borgan 2019).

    Parameters
    ----------
    logits : Tensor (B, T) or (B, T + 1)
        Unnormalised log-probability of the event falling in each interval.
    idx, event : (B,)
        From :func:`discretize`.
    pad : bool
        True (default): append a zero logit for "no event within the grid", so (B, T) logits
        give T + 1 categories (as pycox). False: ``logits`` already hold that last column.

    Returns
    -------
    Tensor ()
        float32 mean of ``-[e log p_idx + (1 - e) log sum_{k >= idx} p_k]``.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float()
        if x.dim() != 2:
            raise ValueError(f"logits must have shape (B, T); got {tuple(logits.shape)}")
        if pad:
            x = torch.cat([x, x.new_zeros(x.shape[0], 1)], dim=1)
        idx, event = _prepare(x, idx, event, x.shape[1] - 1)
        log_p = torch.log_softmax(x, dim=1)
        at = log_p.gather(1, idx[:, None]).squeeze(1)
        # log S(cuts[idx]) = log sum_{k >= idx} p_k (reverse logcumsumexp)
        tail = torch.logcumsumexp(log_p.flip(1), dim=1).flip(1).gather(1, idx[:, None]).squeeze(1)
        ll = torch.where(event.bool(), at, tail)
        return -ll.mean()


def deephit_loss(
    logits: torch.Tensor,
    idx: torch.Tensor,
    event_type: torch.Tensor,
    alpha: float = 0.2,
    sigma: float = 0.1,
    ranking: bool = True,
) -> torch.Tensor:
    """DeepHit loss (Lee et al. 2018) for single (K = 1) and competing (K > 1) risks.

    ``loss = alpha * nll + (1 - alpha) * rank`` (pycox's weighting; ``ranking=False`` gives the
    likelihood alone).

    Parameters
    ----------
    logits : Tensor (B, K, T)
        Joint logits over (cause, interval); a zero logit for "no event within the grid" is appended.
    idx : LongTensor (B,)
        Interval index from :func:`discretize`.
    event_type : LongTensor (B,)
        0 = censored, k in 1..K = cause k observed (a bool event for single risk).
    alpha : float
        Weight of the likelihood in [0, 1].
    sigma : float
        Scale of the exponential ranking penalty.
    ranking : bool
        Include the ranking term.

    Returns
    -------
    Tensor ()
        float32. The likelihood is averaged over patients; the ranking term over all B * B ordered
        pairs per cause, summed over causes (pycox's ``rank_loss_deephit``). A batch without any
        event and ``ranking=True`` keeps the likelihood part (the rank part is zero).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1]; got {alpha}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0; got {sigma}")
    with torch.autocast(device_type=logits.device.type, enabled=False):
        x = logits.float()
        if x.dim() != 3:
            raise ValueError(f"logits must have shape (B, K, T); got {tuple(logits.shape)}")
        b, k, t = x.shape
        idx, etype = _prepare(x, idx, event_type, t)
        etype = etype.long()
        if bool((etype < 0).any()) or bool((etype > k).any()):
            raise ValueError(f"event_type must be 0 (censored) or 1..{k}; got values outside")
        flat = torch.cat([x.reshape(b, k * t), x.new_zeros(b, 1)], dim=1)
        log_p = torch.log_softmax(flat, dim=1)
        p = log_p[:, :-1].exp().reshape(b, k, t)
        observed = etype > 0
        cause = (etype - 1).clamp(min=0)
        at = log_p.gather(1, (cause * t + idx)[:, None]).squeeze(1)
        # censored: log P(no event of any cause before the start of interval idx)
        cif_before = (p.sum(1).cumsum(1) - p.sum(1)).gather(1, idx[:, None]).squeeze(1)
        tail = torch.log1p(-cif_before.clamp(max=1.0 - 1e-7))
        nll = -torch.where(observed, at, tail).mean()
        if not ranking or alpha == 1.0:
            return nll
        if not bool(observed.any()):
            return alpha * nll + (1.0 - alpha) * no_event_zero(x, "deephit_loss ranking")
        cif = p.cumsum(2)  # (B, K, T): F_k(end of interval j | x)
        rank = x.new_zeros(())
        for c in range(k):  # loop over causes (few), pairs vectorised
            mine = etype == c + 1
            # pair (i, j) acceptable: i has cause c at idx_i and j is still event-free after i's time
            later = (idx[None, :] > idx[:, None]) | (
                (idx[None, :] == idx[:, None]) & (etype[None, :] == 0)
            )
            pairs = (mine[:, None] & later).float()
            f_i = cif[:, c, :].gather(1, idx[:, None])  # (B, 1): F_c(t_i | x_i)
            f_j = cif[:, c, :][:, idx].T  # (B, B): [i, j] = F_c(t_i | x_j)
            rank = rank + (pairs * torch.exp(-(f_i - f_j) / sigma)).sum() / (b * b)
        return alpha * nll + (1.0 - alpha) * rank
