"""Heads for progression endpoints: multi-task OS + PFS, cause-specific Cox, illness-death.

All three put one Cox log-hazard ratio per task / cause / transition on the shared fused
representation (``outputs``: (B, n_offsets)), fit Breslow baselines on the training patients
(:meth:`fit_baseline`, stored in ``bl_*`` buffers that travel in ``state_dict``), and follow the
head contract of :mod:`multimodal.survival.heads` with extra ``targets`` (Batch fields):

============================  =================================================  =====================
head                          loss                                                targets
============================  =================================================  =====================
``multitask_cox``             ``w_os L_os + w_pfs L_pfs`` (fixed weights), or     time, event,
                              ``sum_k w_k (exp(-s_k) L_k + s_k)`` with learned    pfs_time, pfs_event
                              log-variances ``s_k`` (``weighting="uncertainty"``)
``cause_specific_cox``        joint partial likelihood of the K cause-specific    time, event,
                              Cox models (other causes = censoring)               event_type
``illness_death_cox``         joint partial likelihood of the transitions         time, event,
                              0->1, 0->2 and 1->2 (delayed entry at progression)   pfs_time, event_type
============================  =================================================  =====================

``L_*`` are Cox negative partial log-likelihoods per event (:func:`cox_nll`); the joint likelihoods
are sums of log-likelihoods divided by the total number of events.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch
from torch import nn

from multimodal.exceptions import DataError
from multimodal.survival.competing import cumulative_incidence
from multimodal.survival.curves import breslow_baseline, step_function_at, step_values
from multimodal.survival.head_base import HEADS, SurvivalHead, _times_tensor, cause_specific_score
from multimodal.survival.losses import cox_nll, no_event_zero, resolve_option
from multimodal.survival.metrics import harrell_c
from multimodal.survival.multistate import (
    breslow_baseline_delayed_entry,
    cox_nll_delayed_entry,
    state_occupation,
)

__all__ = ["CauseSpecificCoxHead", "IllnessDeathCoxHead", "MultiTaskCoxHead", "rmst_risk"]

_MAX_LOG_HR = 50.0  # exp() of larger log-hazard ratios overflows; such risks are saturated anyway


def _np(x: Any, dtype: type = float) -> np.ndarray:
    return np.asarray(torch.as_tensor(x).detach().cpu().numpy()).astype(dtype).reshape(-1)


def _require(name: str, value: Any, head: str) -> Any:
    if value is None:
        raise ValueError(
            f"{head} needs {name}; the batch of this endpoint must carry it "
            "(set endpoint: multitask | competing | multistate in the config)"
        )
    return value


def rmst_risk(grid: torch.Tensor, survival: torch.Tensor) -> torch.Tensor:
    """Minus the restricted mean of a right-continuous step curve known just after ``grid`` times.

    ``grid`` (m,) increasing, ``survival`` (..., m); the curve is 1 before ``grid[0]`` and the
    integral runs from 0 to ``grid[-1]``. Returns (...,) float64, higher = worse.
    """
    g = grid.double()
    widths = torch.diff(torch.cat([g.new_zeros(1), g]))
    before = torch.cat([torch.ones_like(survival[..., :1]), survival[..., :-1]], dim=-1)
    return -(before.double() * widths).sum(-1)


def _union(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Step functions (times, cumhaz) on their union grid: (grid (m,), values (K, m))."""
    grid = np.unique(np.concatenate([np.zeros(0)] + [t for t, _ in curves]))
    rows = [step_values(t, h, grid) for t, h in curves]
    return grid, np.stack(rows) if rows else np.zeros((0, grid.size))


class _CoxBaselines(SurvivalHead):
    """Shared machinery: a bias-free linear map to K log-hazard ratios and Breslow baselines
    on one grid (``bl_times`` (m,), ``bl_cumhaz`` (K, m))."""

    supports_offset = True
    partial_likelihood = True

    def __init__(self, in_features: int, n_outputs: int, ties: str = "efron") -> None:
        super().__init__(in_features)
        self.ties = resolve_option("ties", ties, ("efron", "breslow"))
        self.n_offsets = int(n_outputs)
        self.linear = nn.Linear(self.in_features, self.n_offsets, bias=False)
        self.register_buffer("bl_times", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("bl_cumhaz", torch.zeros(self.n_offsets, 0, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x)

    @property
    def has_baseline(self) -> bool:
        return self.bl_times.numel() > 0

    @property
    def max_time(self) -> float:
        """Largest time of the baseline grid (curves are constant beyond it)."""
        self._check_baseline()
        return float(self.bl_times[-1])

    def _check_baseline(self) -> None:
        if not self.has_baseline:
            raise RuntimeError(
                f"{type(self).__name__} needs baseline hazards: call head.fit_baseline(outputs, "
                f"**targets) with targets {self.targets} of the training patients first "
                "(the trainer does this after training)."
            )

    def _store(self, curves: list[tuple[np.ndarray, np.ndarray]]) -> None:
        grid, cumhaz = _union(curves)
        device = self.bl_times.device
        self.bl_times = torch.as_tensor(grid, dtype=torch.float64, device=device)
        self.bl_cumhaz = torch.as_tensor(cumhaz, dtype=torch.float64, device=device)

    def _increments(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-patient hazard increments on ``bl_times``: (B, K, m), float64."""
        self._check_baseline()
        d0 = torch.diff(self.bl_cumhaz, dim=-1, prepend=self.bl_cumhaz.new_zeros(self.n_offsets, 1))
        r = outputs.detach().double().to(d0.device).clamp(max=_MAX_LOG_HR)
        return d0.unsqueeze(0) * torch.exp(r).unsqueeze(-1)

    def _at(self, values: torch.Tensor, times: Any, before: float) -> torch.Tensor:
        return step_function_at(self.bl_times, values, _times_tensor(times, self.bl_times), before)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The baseline buffers change size when fitted: resize ours before the default copy.
        for name in ("bl_times", "bl_cumhaz"):
            if prefix + name in state_dict:
                setattr(
                    self,
                    name,
                    torch.empty_like(state_dict[prefix + name], device=self.bl_times.device),
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


@HEADS.register("multitask_cox")
class MultiTaskCoxHead(_CoxBaselines):
    """Two Cox heads, overall survival and progression-free survival, on one shared trunk.

    Parameters
    ----------
    in_features : int
    ties : {"efron", "breslow"}
    task_weights : dict, optional
        ``{"os": w_os, "pfs": w_pfs}``, weights >= 0 (default 1 each; a missing task gets 1).
        ``w_pfs = 0`` trains on OS alone.
    weighting : {"fixed", "uncertainty"}
        "uncertainty": learned log-variances ``s_k`` (parameters ``log_vars``, Kendall et al. 2018)
        and ``loss = sum_k w_k (exp(-s_k) L_k + s_k)``.

    Notes
    -----
    ``forward(x) -> (B, 2)`` log-hazard ratios ``[os, pfs]``; :meth:`risk` and :meth:`survival` are
    the OS ones, :meth:`task_risk` / :meth:`task_survival` give either task.
    """

    tasks: tuple[str, ...] = ("os", "pfs")
    targets = ("time", "event", "pfs_time", "pfs_event")

    def __init__(
        self,
        in_features: int,
        ties: str = "efron",
        task_weights: dict[str, float] | None = None,
        weighting: str = "fixed",
    ) -> None:
        super().__init__(in_features, len(self.tasks), ties)
        weights = {t: 1.0 for t in self.tasks}
        for key, value in (task_weights or {}).items():
            if key not in weights:
                raise ValueError(f"task_weights: unknown task {key!r}; the tasks are {self.tasks}")
            if not float(value) >= 0:
                raise ValueError(f"task_weights[{key!r}] must be >= 0; got {value}")
            weights[key] = float(value)
        if not any(weights.values()):
            raise ValueError("task_weights: at least one task needs a weight > 0")
        self.task_weights = weights
        self.weighting = resolve_option("weighting", weighting, ("fixed", "uncertainty"))
        if self.weighting == "uncertainty":
            self.log_vars = nn.Parameter(torch.zeros(len(self.tasks)))

    def _task(self, task: str) -> int:
        if task not in self.tasks:
            raise ValueError(f"task must be one of {self.tasks}; got {task!r}")
        return self.tasks.index(task)

    def loss(self, outputs, time, event, event_type=None, pfs_time=None, pfs_event=None):
        pfs_time = _require("pfs_time", pfs_time, "multitask_cox")
        pfs_event = _require("pfs_event", pfs_event, "multitask_cox")
        labels = {"os": (time, event), "pfs": (pfs_time, pfs_event)}
        total = outputs.float().sum() * 0.0
        for j, task in enumerate(self.tasks):
            w = self.task_weights[task]
            if w == 0:
                continue
            task_loss = cox_nll(outputs[:, j], *labels[task], ties=self.ties)
            if self.weighting == "uncertainty":
                s = self.log_vars[j].float()
                task_loss = torch.exp(-s) * task_loss + s
            total = total + w * task_loss
        return total

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, 0].float()

    def task_risk(self, outputs: torch.Tensor, task: str) -> torch.Tensor:
        """(B,) log-hazard ratio of ``task`` ("os" or "pfs")."""
        return outputs[:, self._task(task)].float()

    @torch.no_grad()
    def fit_baseline(self, outputs, time, event, pfs_time=None, pfs_event=None, **targets):
        pfs_time = _require("pfs_time", pfs_time, "multitask_cox.fit_baseline")
        pfs_event = _require("pfs_event", pfs_event, "multitask_cox.fit_baseline")
        labels = {"os": (time, event), "pfs": (pfs_time, pfs_event)}
        self._store([breslow_baseline(outputs[:, j], *labels[t]) for j, t in enumerate(self.tasks)])

    def task_survival(self, outputs: torch.Tensor, times: Any, task: str) -> torch.Tensor:
        """S(t | x) of ``task`` at ``times``: (B, len(times))."""
        self._check_baseline()
        j = self._task(task)
        h0 = self._at(self.bl_cumhaz[j], times, 0.0)
        r = outputs[:, j].detach().double().to(h0.device).clamp(max=_MAX_LOG_HR)
        return torch.exp(-h0[None, :] * torch.exp(r)[:, None]).float()

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        return self.task_survival(outputs, times, "os")

    def score(self, outputs, time, event, pfs_time=None, pfs_event=None, **targets) -> float:
        """Mean of the OS and PFS Harrell C (tasks with at least one event)."""
        labels = {"os": (time, event), "pfs": (pfs_time, pfs_event)}
        scores = []
        for task in self.tasks:
            t, e = labels[task]
            if t is None or e is None:
                continue
            e = _np(e, bool)
            if e.size >= 2 and e.any():
                with contextlib.suppress(DataError):  # no comparable pair in a tiny hold-out
                    scores.append(harrell_c(_np(t), e, _np(self.task_risk(outputs, task))))
        return float(np.mean(scores)) if scores else float("nan")


@HEADS.register("cause_specific_cox")
class CauseSpecificCoxHead(_CoxBaselines):
    """Cause-specific Cox models for K competing causes on one shared trunk.

    Each cause k has a Cox model fitted with the other causes as censoring; the cause-specific
    Breslow baselines give per-patient hazard increments and :func:`cumulative_incidence` turns them
    into the event-free survival and the CIFs.

    Parameters
    ----------
    in_features : int
    n_causes : int
    ties : {"efron", "breslow"}

    Notes
    -----
    ``forward(x) -> (B, K)`` cause-specific log-hazard ratios. ``loss`` needs ``event_type``
    (0 = censored, k = cause k) at ``time`` (the first-event time). :meth:`risk` is cause 1's
    log-hazard ratio (progression, for the ``competing`` endpoint), :meth:`cause_risk` any cause's;
    :meth:`survival` is the event-free survival and :meth:`cif` the CIFs.
    """

    is_competing = True
    targets = ("time", "event", "event_type")

    def __init__(self, in_features: int, n_causes: int = 2, ties: str = "efron") -> None:
        if int(n_causes) < 1:
            raise ValueError(f"n_causes must be >= 1; got {n_causes}")
        super().__init__(in_features, int(n_causes), ties)
        self.n_causes = int(n_causes)

    def loss(self, outputs, time, event, event_type=None, **targets) -> torch.Tensor:
        etype = torch.as_tensor(_require("event_type", event_type, "cause_specific_cox"))
        etype = etype.to(outputs.device).reshape(-1).long()
        total, n_events = outputs.float().sum() * 0.0, 0
        for c in range(1, self.n_causes + 1):
            mine = etype == c
            if bool(mine.any()):  # a batch without this cause adds nothing (no warning)
                total = total + cox_nll(outputs[:, c - 1], time, mine, self.ties, reduction="sum")
                n_events += int(mine.sum())
        if n_events == 0:
            return no_event_zero(outputs, "cause_specific_cox")
        return total / n_events

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        return outputs[:, 0].float()

    def cause_risk(self, outputs: torch.Tensor, cause: int) -> torch.Tensor:
        """(B,) log-hazard ratio of ``cause`` (1-based)."""
        if not 1 <= cause <= self.n_causes:
            raise ValueError(f"cause must be in 1..{self.n_causes}; got {cause}")
        return outputs[:, cause - 1].float()

    @torch.no_grad()
    def fit_baseline(self, outputs, time, event, event_type=None, **targets) -> None:
        etype = _np(_require("event_type", event_type, "cause_specific_cox.fit_baseline"), int)
        curves = []
        for c in range(1, self.n_causes + 1):
            mine = etype == c
            curves.append(
                breslow_baseline(outputs[:, c - 1], time, mine)
                if mine.any()
                else (np.zeros(0), np.zeros(0))
            )
        self._store(curves)

    def _grid(self, outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return cumulative_incidence(self._increments(outputs))

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """Event-free survival ``1 - sum_k F_k(t | x)``: (B, len(times))."""
        return self._at(self._grid(outputs)[0], times, 1.0).float()

    def cif(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """CIF of each cause at ``times``: (B, K, len(times)), non-decreasing."""
        return self._at(self._grid(outputs)[1], times, 0.0).float()

    def score(self, outputs, time, event, event_type=None, **targets) -> float:
        return cause_specific_score(self, outputs, time, event_type)


@HEADS.register("illness_death_cox")
class IllnessDeathCoxHead(_CoxBaselines):
    """Illness-death model (0 progression-free -> 1 progressed -> 2 dead, and 0 -> 2) with one Cox
    model per transition (clock-forward, Markov; see :mod:`multimodal.survival.multistate`).

    Notes
    -----
    ``forward(x) -> (B, 3)`` log-hazard ratios of the transitions ``[0->1, 0->2, 1->2]``. Targets:
    ``time``/``event`` = overall survival, ``pfs_time`` = first-event time, ``event_type`` = its
    cause (1 progression, 2 death without progression). :meth:`state_probabilities` gives
    P0, P1, P2; :meth:`survival` is overall survival ``P0 + P1``; :meth:`cif` the first-event CIFs
    (progression, death without progression); :meth:`risk` is minus the restricted mean overall
    survival up to the last baseline time (needs the baseline); :meth:`cause_risk` the 0->1 / 0->2
    log-hazard ratios.
    """

    transitions: tuple[str, ...] = ("01", "02", "12")
    targets = ("time", "event", "pfs_time", "event_type")
    n_causes = 2

    def __init__(self, in_features: int, ties: str = "efron") -> None:
        super().__init__(in_features, 3, ties)

    def _labels(self, time, event, pfs_time, event_type, device) -> dict[str, Any]:
        pt = torch.as_tensor(_require("pfs_time", pfs_time, "illness_death_cox"), device=device)
        k = torch.as_tensor(_require("event_type", event_type, "illness_death_cox"), device=device)
        k = k.reshape(-1).long()
        t = torch.as_tensor(time, device=device).reshape(-1)
        e = torch.as_tensor(event, device=device).reshape(-1).bool()
        prog = k == 1
        return {"pfs_time": pt.reshape(-1), "k": k, "time": t, "event": e, "prog": prog}

    def loss(self, outputs, time, event, event_type=None, pfs_time=None, **targets):
        lab = self._labels(time, event, pfs_time, event_type, outputs.device)
        total, n_events = outputs.float().sum() * 0.0, 0
        for c in (1, 2):
            mine = lab["k"] == c
            if bool(mine.any()):
                total = total + cox_nll(
                    outputs[:, c - 1], lab["pfs_time"], mine, self.ties, reduction="sum"
                )
                n_events += int(mine.sum())
        p = lab["prog"]
        usable = p & lab["event"] & (lab["time"] > lab["pfs_time"])
        if bool(usable.any()):
            total = total + cox_nll_delayed_entry(
                outputs[p, 2], lab["pfs_time"][p], lab["time"][p], lab["event"][p], self.ties, "sum"
            )
            n_events += int(usable.sum())
        if n_events == 0:
            return no_event_zero(outputs, "illness_death_cox")
        return total / n_events

    def cause_risk(self, outputs: torch.Tensor, cause: int) -> torch.Tensor:
        """(B,) log-hazard ratio of the first-event transition 0 -> ``cause`` (1 or 2)."""
        if cause not in (1, 2):
            raise ValueError(f"cause must be 1 (progression) or 2 (death); got {cause}")
        return outputs[:, cause - 1].float()

    @torch.no_grad()
    def fit_baseline(self, outputs, time, event, pfs_time=None, event_type=None, **targets):
        lab = self._labels(time, event, pfs_time, event_type, "cpu")
        pt, k = lab["pfs_time"].double().numpy(), lab["k"].numpy()
        curves = []
        for c in (1, 2):
            curves.append(
                breslow_baseline(outputs[:, c - 1], pt, k == c)
                if (k == c).any()
                else (np.zeros(0), np.zeros(0))
            )
        p = lab["prog"].numpy()
        curves.append(
            breslow_baseline_delayed_entry(
                outputs[:, 2].detach().cpu().double().numpy()[p],
                pt[p],
                lab["time"].double().numpy()[p],
                lab["event"].numpy()[p],
            )
        )
        self._store(curves)

    def _grid_states(self, outputs: torch.Tensor) -> torch.Tensor:
        d = self._increments(outputs)
        return state_occupation(d[:, 0], d[:, 1], d[:, 2])  # (B, 3, m)

    def state_probabilities(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """P0, P1, P2 at ``times``: (B, 3, len(times)), float64, summing to 1 at every time."""
        p = self._grid_states(outputs)
        before = p.new_tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1)
        t = _times_tensor(times, self.bl_times)
        pos = torch.searchsorted(self.bl_times.contiguous(), t.contiguous(), right=True) - 1
        padded = torch.cat([before.expand(p.shape[0], 3, 1), p], dim=-1)
        return padded[..., pos + 1]

    def survival(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """Overall survival ``P0 + P1``: (B, len(times))."""
        p = self.state_probabilities(outputs, times)
        return (p[:, 0] + p[:, 1]).clamp(0.0, 1.0).float()

    def cif(self, outputs: torch.Tensor, times: Any) -> torch.Tensor:
        """First-event CIFs (progression, death without progression): (B, 2, len(times))."""
        d = self._increments(outputs)
        return self._at(cumulative_incidence(d[:, :2])[1], times, 0.0).float()

    def risk(self, outputs: torch.Tensor) -> torch.Tensor:
        p = self._grid_states(outputs)
        return rmst_risk(self.bl_times, p[:, 0] + p[:, 1]).float()

    def score(self, outputs, time, event, pfs_time=None, event_type=None, **targets) -> float:
        """Mean of the cause-specific C of 0->1 and 0->2 and the C of 1->2 among the progressed
        (on time since progression: a monitoring proxy for the delayed-entry concordance)."""
        scores = [cause_specific_score(self, outputs, pfs_time, event_type)]
        k, e = _np(event_type, int), _np(event, bool)
        p = (k == 1) & (_np(time) > _np(pfs_time))
        if p.sum() >= 2 and e[p].any():
            gap = _np(time)[p] - _np(pfs_time)[p]
            with contextlib.suppress(DataError):  # no comparable pair in a tiny hold-out
                scores.append(harrell_c(gap, e[p], _np(outputs[:, 2])[p]))
        scores = [s for s in scores if np.isfinite(s)]
        return float(np.mean(scores)) if scores else float("nan")
