"""Survival heads: the last layer of every model, with its loss, risk score and S(t | x).

Contract (docs/architecture.md, binding for the trainer)
-------------------------------------------------------
``cls(in_features, **options)``; ``forward(x) -> outputs``; ``loss(outputs, time, event,
event_type=None)`` (float32 scalar); ``risk(outputs) -> (B,)`` (higher = worse);
``fit_baseline(outputs, time, event)``; ``survival(outputs, times) -> (B, len(times))``;
competing heads also ``cif(outputs, times) -> (B, K, len(times))``. ``supports_offset`` is True
when adding a per-sample scalar to ``outputs`` (broadcast over the last dimension) shifts the risk
monotonically (the model adds its linear clinical path that way); ``n_offsets > 1`` asks for one
offset per output column instead (heads with one Cox risk per task, cause or transition).

``targets`` names the :class:`multimodal.types.Batch` fields that ``loss``, ``fit_baseline`` and
``score`` take as keyword arguments (``("time", "event")`` for single-endpoint heads; the
progression heads of :mod:`multimodal.survival.progression_heads` add ``pfs_time``, ``pfs_event``
or ``event_type``). ``score(outputs, **targets)`` is the C-index that early stopping maximises.

Risk of the discrete heads
--------------------------
``risk = -RMST``: minus the restricted mean survival time over the grid, ``-∫_0^{cuts[-1]} S(t) dt``,
with S interpolated as in :meth:`survival`. It uses the whole curve, is monotone in the hazards
and is on the time scale (months when times are months).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

# imported for its side effect: the progression heads register themselves in HEADS
from multimodal.survival import progression_heads  # noqa: F401
from multimodal.survival.curves import breslow_baseline, interpolate_survival, step_function_at
from multimodal.survival.discrete import (
    deephit_loss,
    discretize,
    logistic_hazard_nll,
    pmf_nll,
)
from multimodal.survival.head_base import (
    HEADS,
    SurvivalHead,
    _times_tensor,
    cause_specific_score,
)
from multimodal.survival.losses import cox_nll, resolve_option

__all__ = [
    "HEADS",
    "CoxHead",
    "DeepHitCompetingHead",
    "DeepHitHead",
    "DiscreteTimeHead",
    "LogisticHazardHead",
    "PMFHead",
    "SurvivalHead",
]


@HEADS.register("cox")
class CoxHead(SurvivalHead):
    """Cox proportional hazards head: a linear map to the log-hazard ratio.

    Parameters
    ----------
    in_features : int
    ties : {"efron", "breslow"}
        Tie handling of the partial likelihood.

    Notes
    -----
    ``forward(x) -> (B,)`` log-hazard ratio (= risk). :meth:`fit_baseline` stores Breslow's baseline
    cumulative hazard in the buffers ``baseline_times`` / ``baseline_cumhaz`` (saved in and restored
    from ``state_dict``); :meth:`survival` is then ``exp(-H0(t) exp(risk))`` with H0 a step function.
    """

    supports_offset = True
    partial_likelihood = True

    def __init__(self, in_features: int, ties: str = "efron") -> None:
        super().__init__(in_features)
        self.ties = resolve_option("ties", ties, ("efron", "breslow"))
        self.linear = nn.Linear(self.in_features, 1, bias=False)  # a bias cancels in the likelihood
        self.register_buffer("baseline_times", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("baseline_cumhaz", torch.zeros(0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).squeeze(-1)

    def loss(self, outputs, time, event, event_type=None) -> torch.Tensor:
        return cox_nll(outputs, time, event, ties=self.ties)

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs.float()

    @torch.no_grad()
    def fit_baseline(self, outputs: torch.Tensor, time: torch.Tensor, event: torch.Tensor) -> None:
        """Fit Breslow's baseline cumulative hazard on *training* outputs (B,), time, event."""
        times, cumhaz = breslow_baseline(outputs, time, event)
        device = self.baseline_times.device
        self.baseline_times = torch.as_tensor(times, dtype=torch.float64, device=device)
        self.baseline_cumhaz = torch.as_tensor(cumhaz, dtype=torch.float64, device=device)

    @property
    def has_baseline(self) -> bool:
        return self.baseline_times.numel() > 0

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        if not self.has_baseline:
            raise RuntimeError(
                "CoxHead.survival needs a baseline hazard: call head.fit_baseline(outputs, time, event) "
                "on the training patients first (the trainer does this after training)."
            )
        t = _times_tensor(times, self.baseline_times)
        h0 = step_function_at(self.baseline_times, self.baseline_cumhaz, t)  # (T,)
        r = outputs.detach().double().reshape(-1, 1).to(h0.device)
        return torch.exp(-h0[None, :] * torch.exp(r)).float()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The baseline buffers change size when fitted: resize ours before the default copy.
        for name in ("baseline_times", "baseline_cumhaz"):
            key = prefix + name
            if key in state_dict:
                setattr(
                    self, name, torch.empty_like(state_dict[key], device=self.baseline_times.device)
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class DiscreteTimeHead(SurvivalHead):
    """Base of the discrete-time heads; ``cuts`` from :func:`make_time_grid` (training data).

    Parameters
    ----------
    in_features : int
    cuts : array (T + 1,), strictly increasing, ``cuts[0] = 0``
    interpolation : {"linear", "step"}
        How S(t) is evaluated between grid points (see :func:`interpolate_survival`).
    n_causes : int
        Number of competing causes K (1 = single risk).
    """

    def __init__(
        self, in_features: int, cuts: Any, interpolation: str = "linear", n_causes: int = 1
    ) -> None:
        super().__init__(in_features)
        c = torch.as_tensor(np.asarray(cuts, dtype=float), dtype=torch.float64)
        if c.dim() != 1 or c.numel() < 2 or bool((c[1:] <= c[:-1]).any()) or float(c[0]) != 0.0:
            raise ValueError(
                "cuts must be strictly increasing, start at 0 and have >= 2 values; "
                "build them with make_time_grid(train_time, train_event)"
            )
        self.interpolation = resolve_option("interpolation", interpolation, ("linear", "step"))
        self.n_causes = int(n_causes)
        self.n_intervals = int(c.numel() - 1)
        self.register_buffer("cuts", c)
        self.linear = nn.Linear(self.in_features, self.n_causes * self.n_intervals)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x)
        if self.n_causes > 1:
            return out.reshape(x.shape[0], self.n_causes, self.n_intervals)
        return out

    def _idx(self, outputs, time, event):
        return discretize(time, event, self.cuts.cpu())[0].to(outputs.device), torch.as_tensor(
            event, device=outputs.device
        ).reshape(-1).bool()

    def grid_survival(self, outputs: torch.Tensor) -> torch.Tensor:
        """S at every cut, shape (B, T + 1), float64, ``[:, 0] = 1``."""
        raise NotImplementedError

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        s = self.grid_survival(outputs.detach())
        return interpolate_survival(
            self.cuts, s, _times_tensor(times, s), self.interpolation
        ).float()

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        s = self.grid_survival(outputs)
        width = self.cuts[1:] - self.cuts[:-1]
        if self.interpolation == "linear":
            rmst = (0.5 * (s[:, 1:] + s[:, :-1]) * width).sum(1)
        else:
            rmst = (s[:, :-1] * width).sum(1)
        return (-rmst).float()


@HEADS.register("logistic_hazard")
class LogisticHazardHead(DiscreteTimeHead):
    """Logistic-hazard (Nnet-survival / pycox LogisticHazard) head; outputs (B, T) hazard logits."""

    supports_offset = True

    def __init__(self, in_features: int, cuts: Any, interpolation: str = "linear") -> None:
        super().__init__(in_features, cuts, interpolation)

    def loss(self, outputs, time, event, event_type=None) -> torch.Tensor:
        idx, e = self._idx(outputs, time, event)
        return logistic_hazard_nll(outputs, idx, e)

    def grid_survival(self, outputs: torch.Tensor) -> torch.Tensor:
        log_surv = torch.cumsum(-nn.functional.softplus(outputs.double()), dim=1)
        return torch.cat([log_surv.new_ones(log_surv.shape[0], 1), log_surv.exp()], dim=1)


def _pmf_grid_survival(logits: torch.Tensor) -> torch.Tensor:
    """(B, K, T) logits (+ zero pad logit) -> event-free survival at the cuts (B, T + 1)."""
    b = logits.shape[0]
    flat = torch.cat([logits.double().reshape(b, -1), logits.new_zeros(b, 1).double()], dim=1)
    p = torch.softmax(flat, dim=1)
    p_time = p[:, :-1].reshape(logits.shape).sum(1)  # (B, T)
    # S(cuts[j+1]) = tail mass after interval j (pad included): reverse cumsum, stable near 0
    tail = torch.flip(torch.cumsum(torch.flip(torch.cat([p_time, p[:, -1:]], 1), [1]), 1), [1])
    return tail.clamp(0.0, 1.0)


@HEADS.register("pmf")
class PMFHead(DiscreteTimeHead):
    """PMF head (pycox PMF): softmax over the T intervals plus "after the grid"; outputs (B, T)."""

    def __init__(self, in_features: int, cuts: Any, interpolation: str = "linear") -> None:
        super().__init__(in_features, cuts, interpolation)

    def loss(self, outputs, time, event, event_type=None) -> torch.Tensor:
        idx, e = self._idx(outputs, time, event)
        return pmf_nll(outputs, idx, e)

    def grid_survival(self, outputs: torch.Tensor) -> torch.Tensor:
        return _pmf_grid_survival(outputs[:, None, :])


@HEADS.register("deephit")
class DeepHitHead(DiscreteTimeHead):
    """Single-risk DeepHit head: PMF likelihood + ranking loss; outputs (B, T).

    Parameters
    ----------
    alpha : float
        Likelihood weight, ``loss = alpha * nll + (1 - alpha) * rank``.
    sigma : float
        Ranking-loss scale.
    ranking : bool
        Include the ranking term.
    """

    def __init__(
        self,
        in_features: int,
        cuts: Any,
        alpha: float = 0.2,
        sigma: float = 0.1,
        ranking: bool = True,
        interpolation: str = "linear",
    ) -> None:
        super().__init__(in_features, cuts, interpolation)
        self.alpha, self.sigma, self.ranking = float(alpha), float(sigma), bool(ranking)

    def loss(self, outputs, time, event, event_type=None) -> torch.Tensor:
        idx, e = self._idx(outputs, time, event)
        return deephit_loss(
            outputs[:, None, :], idx, e.long(), self.alpha, self.sigma, self.ranking
        )

    def grid_survival(self, outputs: torch.Tensor) -> torch.Tensor:
        return _pmf_grid_survival(outputs[:, None, :])


@HEADS.register("deephit_competing")
class DeepHitCompetingHead(DiscreteTimeHead):
    """Competing-risks DeepHit head; outputs (B, K, T) joint (cause, interval) logits.

    ``loss`` needs ``event_type`` (0 = censored, k = cause k). :meth:`survival` is the event-free
    (all causes) survival; :meth:`cif` the cumulative incidence of each cause; :meth:`risk` is
    ``-RMST`` of the event-free survival and :meth:`cause_risk` the CIF of one cause at the last cut.
    """

    is_competing = True
    targets = ("time", "event", "event_type")

    def __init__(
        self,
        in_features: int,
        cuts: Any,
        n_causes: int = 2,
        alpha: float = 0.2,
        sigma: float = 0.1,
        ranking: bool = True,
        interpolation: str = "linear",
    ) -> None:
        if int(n_causes) < 1:
            raise ValueError(f"n_causes must be >= 1; got {n_causes}")
        super().__init__(in_features, cuts, interpolation, n_causes=n_causes)
        self.alpha, self.sigma, self.ranking = float(alpha), float(sigma), bool(ranking)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).reshape(x.shape[0], self.n_causes, self.n_intervals)

    def loss(self, outputs, time, event, event_type=None) -> torch.Tensor:
        if event_type is None:
            raise ValueError(
                "deephit_competing needs event_type (0 = censored, k = cause k); "
                "declare an event_type column in patients.csv"
            )
        idx, _ = self._idx(outputs, time, event)
        return deephit_loss(outputs, idx, event_type, self.alpha, self.sigma, self.ranking)

    def grid_survival(self, outputs: torch.Tensor) -> torch.Tensor:
        return _pmf_grid_survival(outputs)

    def grid_cif(self, outputs: torch.Tensor) -> torch.Tensor:
        """Cumulative incidence at every cut, (B, K, T + 1), float64, ``[..., 0] = 0``."""
        b = outputs.shape[0]
        flat = torch.cat([outputs.double().reshape(b, -1), outputs.new_zeros(b, 1).double()], 1)
        p = torch.softmax(flat, dim=1)[:, :-1].reshape(outputs.shape)
        cif = torch.cumsum(p, dim=2).clamp(0.0, 1.0)
        return torch.cat([cif.new_zeros(b, self.n_causes, 1), cif], dim=2)

    def cif(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """CIF of each cause at ``times``: (B, K, len(times)), non-decreasing in time."""
        f = self.grid_cif(outputs.detach())
        # interpolate 1 - F (a survival-like curve) with the same rule as survival()
        g = 1.0 - interpolate_survival(
            self.cuts, 1.0 - f, _times_tensor(times, f), self.interpolation
        )
        return g.float()

    def cause_risk(self, outputs: torch.Tensor, cause: int) -> torch.Tensor:
        """CIF of ``cause`` (1-based) at the last cut, (B,)."""
        if not 1 <= cause <= self.n_causes:
            raise ValueError(f"cause must be in 1..{self.n_causes}; got {cause}")
        return self.grid_cif(outputs)[:, cause - 1, -1].float()

    def score(self, outputs, time, event, event_type=None, **targets) -> float:
        """Mean over causes of the cause-specific C of :meth:`cause_risk` (needs ``event_type``)."""
        return cause_specific_score(self, outputs, time, event_type)
