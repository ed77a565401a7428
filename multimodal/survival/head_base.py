"""The head contract shared by every survival head: :class:`SurvivalHead`, the ``HEADS`` registry.

:mod:`multimodal.survival.heads` (Cox and discrete-time heads) and
:mod:`multimodal.survival.progression_heads` (multi-task, cause-specific Cox, illness-death) both
build on this module; importing :mod:`multimodal.survival.heads` registers every head. The
contract itself is documented in :mod:`multimodal.survival.heads`.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from multimodal.exceptions import DataError
from multimodal.registry import Registry
from multimodal.survival.metrics import harrell_c

__all__ = ["HEADS", "SurvivalHead", "cause_specific_score"]

#: name -> head class ("cox", "logistic_hazard", "pmf", "deephit", "deephit_competing",
#: "multitask_cox", "cause_specific_cox", "illness_death_cox").
HEADS: Registry[type[SurvivalHead]] = Registry("head")


def _times_tensor(times: Any, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(
        np.asarray(times, dtype=float) if not isinstance(times, torch.Tensor) else times
    )
    return t.reshape(-1).to(device=like.device, dtype=torch.float64)


class SurvivalHead(nn.Module):
    """Base class; see the module docstring for the contract."""

    supports_offset: bool = False
    #: Outputs are Cox log-hazards fitted by partial likelihood: the model's linear members can
    #: be fitted first by penalised Cox regression (:mod:`multimodal.training.combine`).
    partial_likelihood: bool = False
    is_competing: bool = False
    n_offsets: int = 1
    #: Batch fields passed (as keyword arguments) to ``loss``, ``fit_baseline`` and ``score``.
    targets: tuple[str, ...] = ("time", "event")

    def __init__(self, in_features: int) -> None:
        super().__init__()
        if int(in_features) < 1:
            raise ValueError(f"in_features must be >= 1; got {in_features}")
        self.in_features = int(in_features)

    def loss(
        self,
        outputs: torch.Tensor,
        time: torch.Tensor,
        event: torch.Tensor,
        event_type: torch.Tensor | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        raise NotImplementedError

    def fit_baseline(
        self, outputs: torch.Tensor, time: torch.Tensor, event: torch.Tensor, **targets: Any
    ) -> None:
        """No-op for heads whose outputs already define S(t | x)."""

    def score(self, outputs: torch.Tensor, time: Any, event: Any, **targets: Any) -> float:
        """Harrell's C of :meth:`risk` (NaN with fewer than 2 patients or no event)."""
        e = np.asarray(torch.as_tensor(event).cpu()).astype(bool).reshape(-1)
        if e.size < 2 or not e.any():
            return float("nan")
        r = self.risk(outputs).detach().float().cpu().numpy().astype(float)
        return float(harrell_c(np.asarray(torch.as_tensor(time).cpu(), dtype=float), e, r))


def cause_specific_score(head: Any, outputs: torch.Tensor, time: Any, event_type: Any) -> float:
    """Mean cause-specific Harrell C over the causes observed at least once (NaN when none)."""
    if event_type is None:
        raise ValueError("a competing-risks score needs event_type (0 = censored, k = cause k)")
    t = np.asarray(torch.as_tensor(time).cpu(), dtype=float).reshape(-1)
    k = np.asarray(torch.as_tensor(event_type).cpu()).astype(np.int64).reshape(-1)
    scores = []
    for c in range(1, head.n_causes + 1):
        if t.size >= 2 and (k == c).any():
            r = head.cause_risk(outputs, c).detach().float().cpu().numpy().astype(float)
            with contextlib.suppress(DataError):  # no comparable pair in a tiny hold-out
                scores.append(harrell_c(t, k == c, r))
    return float(np.mean(scores)) if scores else float("nan")
