"""Cox partial likelihood loss (float32, ties, strata) and shared loss utilities.

The loss is a plain function (:func:`cox_nll`) plus a thin module (:class:`CoxPartialLikelihoodLoss`),
so it works in any training loop. It takes whole tensors: risks concatenated from several
micro-batches (gradient accumulation) or gathered from several DDP ranks give exactly the loss of
the unbatched set.

We write our own instead of wrapping torchsurv/pycox: neither is a dependency, pycox has no Efron
ties and no strata, and we need a float32 guarantee under autocast and a no-event policy that keeps
the graph. Efron's formula is checked against ``lifelines.CoxPHFitter`` in the tests.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from multimodal.registry import did_you_mean

__all__ = [
    "CoxPartialLikelihoodLoss",
    "LossStats",
    "cox_nll",
    "resolve_option",
    "track_loss_stats",
]

logger = logging.getLogger(__name__)

Ties = Literal["efron", "breslow"]
Reduction = Literal["mean", "sum"]


@dataclass
class LossStats:
    """Counters of the loss calls made inside :func:`track_loss_stats` (thread-safe increments).

    Attributes
    ----------
    no_event_batches : int
        Number of loss calls whose batch held no observed event (the loss was a graph-keeping zero).
    """

    no_event_batches: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record_no_event(self) -> int:
        with self._lock:
            self.no_event_batches += 1
            return self.no_event_batches

    def reset(self) -> None:
        """Set every counter back to zero."""
        with self._lock:
            self.no_event_batches = 0


#: The counters of the innermost :func:`track_loss_stats` block (none outside one): the trainer
#: owns them, the losses only report to whoever listens.
_ACTIVE_STATS: contextvars.ContextVar[LossStats | None] = contextvars.ContextVar(
    "multimodal_loss_stats", default=None
)


@contextlib.contextmanager
def track_loss_stats(stats: LossStats | None = None) -> Iterator[LossStats]:
    """Count what the losses report (no-event batches) inside this block.

    >>> with track_loss_stats() as stats:  # doctest: +SKIP
    ...     loss = cox_nll(risk, time, event)
    >>> stats.no_event_batches  # doctest: +SKIP
    """
    stats = stats if stats is not None else LossStats()
    token = _ACTIVE_STATS.set(stats)
    try:
        yield stats
    finally:
        _ACTIVE_STATS.reset(token)


def resolve_option(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Check a string option against its choices; raise ``ValueError`` with "did you mean"."""
    if value not in choices:
        raise ValueError(
            f"{name}={value!r} is not valid.{did_you_mean(value, choices)} "
            f"Choose one of: {', '.join(choices)}"
        )
    return value


def no_event_zero(reference: torch.Tensor, where: str) -> torch.Tensor:
    """Zero loss that keeps the graph of ``reference``; records and logs the no-event batch."""
    stats = _ACTIVE_STATS.get()
    count = stats.record_no_event() if stats is not None else None
    logger.warning(
        "%s: batch has no observed event; returning a zero loss%s. "
        "Use an event-balanced sampler or a larger batch to make this rare.",
        where,
        f" (no-event batches so far: {count})" if count is not None else "",
    )
    return reference.float().sum() * 0.0


def _check_1d(name: str, x: torch.Tensor, n: int) -> torch.Tensor:
    x = x.reshape(-1) if x.dim() == 2 and x.shape[1] == 1 else x
    if x.dim() != 1 or x.shape[0] != n:
        raise ValueError(
            f"{name} must have shape ({n},) like risk; got {tuple(x.shape)}. "
            "Pass one value per patient, in the same order as risk."
        )
    return x


def _group_logsumexp(values: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """log(sum(exp(values))) per group; groups without members give -inf. Shapes (n,) -> (n_groups,)."""
    shift = torch.full((n_groups,), float("-inf"), dtype=values.dtype, device=values.device)
    shift = shift.scatter_reduce(0, group, values.detach(), reduce="amax", include_self=True)
    safe_shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    sums = torch.zeros(n_groups, dtype=values.dtype, device=values.device)
    sums = sums.index_add(0, group, torch.exp(values - safe_shift[group]))
    return torch.log(sums) + safe_shift


def _cox_log_likelihood(
    risk: torch.Tensor, time: torch.Tensor, event: torch.Tensor, ties: str
) -> torch.Tensor:
    """Partial log-likelihood (a sum over events) of one stratum; all inputs (n,), float32/bool."""
    uniq, inv = torch.unique(time, sorted=True, return_inverse=True)
    n_groups = uniq.shape[0]
    # Risk set of time group g = every sample in groups >= g: per-group logsumexp, then a
    # reverse cumulative logsumexp over groups (vectorised; no loop over samples).
    group_lse = _group_logsumexp(risk, inv, n_groups)
    log_risk_set = torch.logcumsumexp(group_lse.flip(0), dim=0).flip(0)
    ev_risk = risk[event]
    ev_group = inv[event]
    log_denominator = log_risk_set[ev_group]
    if ties == "efron":
        # Efron: the l-th (0-based) of d tied events at a time uses R - (l/d) * E, with E the sum of
        # exp(risk) over the tied events. log(R - cE) = log R + log1p(-c * exp(log E - log R)).
        d = torch.bincount(ev_group, minlength=n_groups)
        order = torch.argsort(ev_group, stable=True)
        first = torch.cumsum(d, 0) - d
        rank = torch.empty_like(ev_group)
        rank[order] = torch.arange(ev_group.shape[0], device=risk.device) - first[ev_group[order]]
        frac = rank.to(risk.dtype) / d[ev_group].to(risk.dtype)
        log_tied = _group_logsumexp(ev_risk, ev_group, n_groups)[ev_group]
        ratio = torch.exp(log_tied - log_denominator).clamp(max=1.0)
        log_denominator = log_denominator + torch.log1p(-frac * ratio)
    return (ev_risk - log_denominator).sum()


def cox_nll(
    risk: torch.Tensor,
    time: torch.Tensor,
    event: torch.Tensor,
    ties: Ties = "efron",
    strata: torch.Tensor | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Negative Cox partial log-likelihood, always computed in float32.

    Parameters
    ----------
    risk : Tensor, shape (n,) or (n, 1)
        Log-hazard ratio, higher = worse prognosis. Any dtype; cast to float32 with autocast off.
    time : Tensor, shape (n,)
        Time to event or censoring.
    event : Tensor, shape (n,)
        True (or 1) = event observed.
    ties : {"efron", "breslow"}
        Handling of tied event times. Efron matches ``lifelines.CoxPHFitter``.
    strata : Tensor, shape (n,), optional
        Stratum of each sample; risk sets are formed within strata and the log-likelihoods summed.
    reduction : {"mean", "sum"}
        "mean" divides the summed negative log-likelihood by the number of events.

    Returns
    -------
    Tensor, shape ()
        float32 loss. A batch without events returns ``risk.sum() * 0.0`` (keeps the graph, no NaN),
        logs a warning and counts it in the active :func:`track_loss_stats` block.

    Notes
    -----
    Invariant to adding a constant to ``risk`` and to the order of the samples, so the loss of
    risks concatenated over micro-batches or gathered over ranks equals the unbatched loss.
    """
    resolve_option("ties", ties, ("efron", "breslow"))
    resolve_option("reduction", reduction, ("mean", "sum"))
    with torch.autocast(device_type=risk.device.type, enabled=False):
        r = risk.float()
        r = r.reshape(-1) if r.dim() == 2 and r.shape[1] == 1 else r
        if r.dim() != 1:
            raise ValueError(f"risk must have shape (n,) or (n, 1); got {tuple(risk.shape)}")
        n = r.shape[0]
        t = _check_1d("time", torch.as_tensor(time, device=r.device), n).float()
        e = _check_1d("event", torch.as_tensor(event, device=r.device), n).bool()
        n_events = int(e.sum())
        if n_events == 0:
            return no_event_zero(risk, "cox_nll")
        if strata is None:
            loglik = _cox_log_likelihood(r, t, e, ties)
        else:
            s = _check_1d("strata", torch.as_tensor(strata, device=r.device), n)
            loglik = r.new_zeros(())
            # A loop over strata (few), never over samples.
            for level in torch.unique(s):
                m = s == level
                if bool(e[m].any()):
                    loglik = loglik + _cox_log_likelihood(r[m], t[m], e[m], ties)
        nll = -loglik
        return nll / n_events if reduction == "mean" else nll


class CoxPartialLikelihoodLoss(nn.Module):
    """Module form of :func:`cox_nll`; ``forward(risk, time, event, strata=None)``."""

    def __init__(self, ties: Ties = "efron", reduction: Reduction = "mean") -> None:
        super().__init__()
        self.ties = resolve_option("ties", ties, ("efron", "breslow"))
        self.reduction = resolve_option("reduction", reduction, ("mean", "sum"))

    def forward(
        self,
        risk: torch.Tensor,
        time: torch.Tensor,
        event: torch.Tensor,
        strata: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return cox_nll(risk, time, event, self.ties, strata, self.reduction)
