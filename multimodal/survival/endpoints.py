"""Endpoints as objects: each owns its outcome columns, heads, prediction columns and metrics.

=============  ======================================  =========================  ==============
endpoint       trains on (Batch fields)                primary (risk, surv_<t>)   c_index
=============  ======================================  =========================  ==============
os, pfs, dss   time, event of that endpoint            that endpoint              that endpoint
multitask      OS (time, event) + PFS (pfs_*)          OS                         c_index_os
competing      first event (time) and its cause        progression: 1 - CIF       c_index_progression
               (event_type: 1 progression, 2 death
               without progression)
multistate     OS (time, event) + first event          OS = P0 + P1               c_index_os
               (pfs_time, event_type)
=============  ======================================  =========================  ==============

The first event and its cause come from :func:`multimodal.survival.competing.first_event`. For
``competing`` and ``multistate``, "PFS" is that first event (progression or death from any cause);
for ``multitask`` it is the cohort's ``pfs_time``/``pfs_event`` as given (TCGA: the CDR PFI, which
censors deaths without tumour), the same label as the single-task ``pfs`` endpoint.

Prediction columns (besides ``patient_id``, ``risk`` and ``surv_<t>`` of the primary endpoint):
``risk_<name>`` (os, pfs, progression, death), curves ``surv_os_<t>``, ``surv_pfs_<t>``,
``cif_progression_<t>``, ``cif_death_<t>``, multistate ``state_<progression_free|progressed|dead>_<t>``
and ``p_progression_<h>`` at the horizons ``eval.horizons`` (CIF of progression; for ``multitask``,
where causes are not separated, ``1 - PFS(h)``: progression or death).

``get_endpoint(name)`` returns the registered object; nothing else in the package compares
endpoint names.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from multimodal.registry import Registry, did_you_mean
from multimodal.survival import metrics as M
from multimodal.survival.competing import (
    CAUSES,
    cause_specific_c_index,
    cif_integrated_brier_score,
    competing_c_index,
    first_event,
)
from multimodal.survival.multistate import STATES

__all__ = [
    "ENDPOINTS",
    "CompetingEndpoint",
    "Endpoint",
    "MultistateEndpoint",
    "MultitaskEndpoint",
    "SingleEndpoint",
    "get_endpoint",
    "primary_metrics",
]

log = logging.getLogger(__name__)

ENDPOINTS: Registry[Endpoint] = Registry("endpoint")


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(float)


def _safe(out: dict[str, Any], key: str, fn: Callable, *args: Any) -> None:
    """``out[key] = fn(*args)``, or None (logged) where the metric is undefined on this fold."""
    try:
        out[key] = float(fn(*args))
    except Exception as exc:  # no events of a cause, times outside follow-up, ...
        log.warning("%s not computed: %s", key, exc)
        out[key] = None


def _grid(times: list[float], val_time: np.ndarray, train_time: np.ndarray) -> np.ndarray:
    """Times inside both the validation follow-up and the training range (IPCW metrics)."""
    return np.array(
        [x for x in times if val_time.min() <= x < min(val_time.max(), train_time.max())]
    )


def primary_metrics(
    preds: pd.DataFrame, times: list[float], n_boot: int = 0, seed: int = 0
) -> dict[str, Any]:
    """Validation metrics of the primary endpoint from ``time``/``event``/``risk``/``surv_<t>``:
    ``c_index`` (Harrell), ``uno_c``, ``td_auc``, ``ibs``, ``n_events_val`` and, with ``n_boot``,
    ``c_index_ci``. Training rows (``split == "train"``) give the IPCW censoring weights."""
    tr, va = preds[preds.split == "train"], preds[preds.split == "val"]
    t, e, r = va.time.to_numpy(float), va.event.to_numpy(bool), va.risk.to_numpy(float)
    tt, te = tr.time.to_numpy(float), tr.event.to_numpy(bool)
    out: dict[str, Any] = {"c_index": float(M.harrell_c(t, e, r)), "n_events_val": int(e.sum())}
    grid = _grid(times, t, tt)
    cols = [f"surv_{x:g}" for x in grid]
    for key, fn in (
        ("uno_c", lambda: M.uno_c(tt, te, t, e, r)),
        ("td_auc", lambda: M.td_auc(tt, te, t, e, r, grid)[1]),
        ("ibs", lambda: M.integrated_brier_score(tt, te, t, e, va[cols].to_numpy(), grid)),
    ):
        try:
            out[key] = float(fn()) if (key == "uno_c" or len(grid) >= 2) else None
        except Exception as exc:  # metric undefined on this fold (e.g. no events in range)
            log.warning("%s not computed: %s", key, exc)
            out[key] = None
    if n_boot:
        _, lo, hi = M.bootstrap_ci(M.harrell_c, t, e, r, n_boot=n_boot, seed=seed)
        out["c_index_ci"] = [float(lo), float(hi)]
    return out


class Endpoint:
    """What a model is trained to predict.

    Attributes
    ----------
    name : the config's ``endpoint`` value.
    primary : the outcome of ``risk``, ``surv_<t>`` and ``c_index`` (``os``, ``pfs``, ``dss``,
        ``progression``).
    required_columns : patient-table columns the endpoint needs (patients lacking one are left
        out of training).
    grid_columns : (time, event) columns whose event times set the reporting time grid.
    heads : head name in the config -> head built; None: any single-risk head, as named.
    multi_output : True when the endpoint has several outcomes (named risks and curves).
    competing_causes : True when it separates progression from death without progression
        (cumulative incidences ``cif_<cause>_<t>``).
    """

    name: ClassVar[str]
    primary: ClassVar[str]
    required_columns: ClassVar[tuple[str, ...]]
    grid_columns: ClassVar[tuple[str, str]]
    heads: ClassVar[dict[str, str] | None] = None
    multi_output: ClassVar[bool] = False
    competing_causes: ClassVar[bool] = False

    def head_name(self, head: str) -> str:
        """The head registry name built for ``head`` (the config's ``head.name``)."""
        if self.heads is None:
            multi = {h for e in _all() if e.heads is not None for h in e.heads.values()}
            if head in multi:  # a progression head (built names only: "deephit" is single too)
                wanted = sorted({e.name for e in _all() if e.heads and head in e.heads})
                raise ValueError(
                    f"head {head!r} needs a progression endpoint ({' or '.join(wanted)}), "
                    f"not endpoint {self.name!r}"
                )
            return head
        if head not in self.heads:
            raise ValueError(
                f"endpoint {self.name!r} cannot use head {head!r}.{did_you_mean(head, self.heads)} "
                f"Choose one of: {', '.join(self.heads)}"
            )
        return self.heads[head]

    def outcome_arrays(
        self, patients: pd.DataFrame
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
        """``(time, event, outcomes)``: what the sampler balances and the discrete grid is built on,
        and (multi-output endpoints) the named outcome arrays of :class:`Batch` targets."""
        raise NotImplementedError

    def outcome_frame(self, data: Any) -> pd.DataFrame:
        """Outcome columns of a prediction frame (``time``, ``event`` of the primary outcome)."""
        return pd.DataFrame({"time": data.time, "event": data.event.astype(int)})

    @torch.no_grad()
    def predictions(
        self, head: Any, outputs: torch.Tensor, times: Any, horizons: Any = ()
    ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Named risks and curves for head ``outputs``.

        Returns
        -------
        risks : name -> (n,): ``"risk"`` (primary; higher = worse) and ``"risk_<name>"``.
        curves : column prefix -> (n, len(times)): ``"surv"`` (primary) and the endpoint's own
            (``"surv_os"``, ``"cif_<cause>"``, ...); ``"p_progression"`` -> (n, len(horizons)).
        """
        t = torch.as_tensor(np.asarray(times, dtype=np.float32), device=outputs.device)
        risk = head.risk(outputs).detach().float().cpu().numpy().astype(float)
        surv = head.survival(outputs, t).detach().float().cpu().numpy()
        return {"risk": risk}, {"surv": surv}

    def fold_metrics(self, preds: pd.DataFrame, times: list[float]) -> dict[str, Any]:
        """Metrics beyond :func:`primary_metrics` (per outcome and per cause); may replace some."""
        return {}


class SingleEndpoint(Endpoint):
    """One time-to-event outcome (``os``, ``pfs``, ``dss``); any single-risk head."""

    def __init__(self, name: str, time_col: str, event_col: str) -> None:
        self.name = self.primary = name
        self.required_columns = self.grid_columns = (time_col, event_col)

    def outcome_arrays(self, patients):
        tcol, ecol = self.required_columns
        return patients[tcol].to_numpy(np.float64), patients[ecol].to_numpy().astype(bool), None


class _ProgressionEndpoint(Endpoint):
    """OS and progression together (one trunk, several outputs)."""

    required_columns = ("time", "event", "pfs_time", "pfs_event")
    grid_columns = ("time", "event")
    multi_output = True

    def outcome_arrays(self, patients):
        os_t = patients["time"].to_numpy(np.float64)
        os_e = patients["event"].to_numpy().astype(bool)
        pfs_t = patients["pfs_time"].to_numpy(np.float64)
        pfs_e = patients["pfs_event"].to_numpy().astype(bool)
        out = {"os_time": os_t, "os_event": os_e, "pfs_time": pfs_t, "pfs_event": pfs_e}
        if not self.competing_causes:
            return os_t, os_e, out
        first_t, etype = first_event(os_t, os_e, pfs_t, pfs_e)
        out.update(pfs_time=first_t, pfs_event=etype > 0, event_type=etype)
        return (*self._primary_arrays(os_t, os_e, first_t, etype), out)

    def _primary_arrays(self, os_t, os_e, first_t, etype) -> tuple[np.ndarray, np.ndarray]:
        return os_t, os_e

    def outcome_frame(self, data: Any) -> pd.DataFrame:
        o = data.outcomes
        if o is None:
            return super().outcome_frame(data)
        frame = self._primary_frame(o)
        frame.update(
            os_time=o["os_time"],
            os_event=o["os_event"].astype(int),
            pfs_time=o["pfs_time"],
            pfs_event=o["pfs_event"].astype(int),
        )
        if "event_type" in o:
            frame["event_type"] = o["event_type"]
        return pd.DataFrame(frame)

    def _primary_frame(self, o: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"time": o["os_time"], "event": o["os_event"].astype(int)}

    def _horizon(self, head: Any) -> float:
        cuts = getattr(head, "cuts", None)
        return float(cuts[-1]) if cuts is not None else float(head.max_time)

    def _neg_rmst(self, curve_fn: Callable, head: Any) -> np.ndarray:
        """Minus the restricted mean of a curve over [0, the head's last time] (200 steps)."""
        grid = np.linspace(0.0, self._horizon(head), 201)
        s = np.asarray(curve_fn(grid), dtype=float)
        return -np.trapezoid(s, grid, axis=1)

    def _risks_and_curves(self, head, outputs, t_all) -> tuple[dict, dict, np.ndarray]:
        """(risks by outcome/cause name, curves by prefix on ``t_all``, progression curve)."""
        raise NotImplementedError

    @torch.no_grad()
    def predictions(self, head, outputs, times, horizons=()):
        t_all = np.unique(np.concatenate([np.asarray(times, float), np.asarray(horizons, float)]))
        at_t = np.searchsorted(t_all, np.asarray(times, float))
        at_h = np.searchsorted(t_all, np.asarray(horizons, float))
        risks, curves, progression = self._risks_and_curves(head, outputs, t_all)
        named = {"risk": risks[self.primary], **{f"risk_{k}": v for k, v in risks.items()}}
        if self.primary == "progression":
            surv = 1.0 - curves["cif_progression"]
        else:
            surv = curves[f"surv_{self.primary}"]
        out = {"surv": surv[:, at_t], **{k: v[:, at_t] for k, v in curves.items()}}
        out["p_progression"] = progression[:, at_h]
        return named, out

    def fold_metrics(self, preds: pd.DataFrame, times: list[float]) -> dict[str, Any]:
        """For ``os``/``pfs`` (where the frame has ``risk_<name>``): ``c_index_<name>``
        (Harrell), ``uno_c_<name>``, ``ibs_<name>``. Per cause (``event_type`` present):
        ``c_index_<cause>`` (cause-specific Harrell C), ``cr_c_index_<cause>`` (Wolbers'
        competing-risks C), ``ibs_cif_<cause>`` (IPCW integrated Brier score of the CIF)."""
        tr, va = preds[preds.split == "train"], preds[preds.split == "val"]
        out: dict[str, Any] = {}
        for name in ("os", "pfs"):
            if f"risk_{name}" not in preds:
                continue
            t, e = va[f"{name}_time"].to_numpy(float), va[f"{name}_event"].to_numpy(bool)
            tt, te = tr[f"{name}_time"].to_numpy(float), tr[f"{name}_event"].to_numpy(bool)
            r = va[f"risk_{name}"].to_numpy(float)
            _safe(out, f"c_index_{name}", M.harrell_c, t, e, r)
            _safe(out, f"uno_c_{name}", M.uno_c, tt, te, t, e, r)
            grid = _grid(times, t, tt)
            cols = [f"surv_{name}_{x:g}" for x in grid]
            if len(grid) >= 2 and all(c in va for c in cols):
                s = va[cols].to_numpy()
                _safe(out, f"ibs_{name}", M.integrated_brier_score, tt, te, t, e, s, grid)
        if "event_type" in preds:
            t, k = va["pfs_time"].to_numpy(float), va["event_type"].to_numpy(int)
            tt, tk = tr["pfs_time"].to_numpy(float), tr["event_type"].to_numpy(int)
            grid = _grid(times, t, tt)
            for c, name in enumerate(CAUSES, start=1):
                if f"risk_{name}" not in preds:
                    continue
                r = va[f"risk_{name}"].to_numpy(float)
                _safe(out, f"c_index_{name}", cause_specific_c_index, t, k, r, c)
                _safe(out, f"cr_c_index_{name}", competing_c_index, t, k, r, c)
                cols = [f"cif_{name}_{x:g}" for x in grid]
                if len(grid) >= 2 and all(col in va for col in cols):
                    f = va[cols].to_numpy()
                    _safe(
                        out, f"ibs_cif_{name}", cif_integrated_brier_score, tt, tk, t, k, f, grid, c
                    )
                out[f"n_events_val_{name}"] = int((k == c).sum())
        return out


class MultitaskEndpoint(_ProgressionEndpoint):
    """OS + PFS heads on one trunk (``pfs_time``/``pfs_event`` as the cohort gives them)."""

    name = "multitask"
    primary = "os"
    heads: ClassVar[dict[str, str]] = {"cox": "multitask_cox", "multitask_cox": "multitask_cox"}

    def _risks_and_curves(self, head, outputs, t_all):
        risks, curves = {}, {}
        for task in head.tasks:
            risks[task] = _np(head.task_risk(outputs, task))
            curves[f"surv_{task}"] = _np(head.task_survival(outputs, t_all, task))
        return risks, curves, 1.0 - curves["surv_pfs"]


class CompetingEndpoint(_ProgressionEndpoint):
    """Progression vs death without progression (competing risks of the first event)."""

    name = "competing"
    primary = "progression"
    competing_causes = True
    grid_columns = ("pfs_time", "pfs_event")
    heads: ClassVar[dict[str, str]] = {
        "cox": "cause_specific_cox",
        "cause_specific_cox": "cause_specific_cox",
        "deephit": "deephit_competing",
        "deephit_competing": "deephit_competing",
    }

    def _primary_arrays(self, os_t, os_e, first_t, etype):
        return first_t, etype > 0

    def _primary_frame(self, o):
        return {"time": o["pfs_time"], "event": (o["event_type"] == 1).astype(int)}

    def _risks_and_curves(self, head, outputs, t_all):
        risks, curves = self._cause_risks(head, outputs, t_all)
        curves["surv_pfs"] = _np(head.survival(outputs, t_all))
        risks["pfs"] = self._neg_rmst(lambda g: _np(head.survival(outputs, g)), head)
        return risks, curves, curves["cif_progression"]

    @staticmethod
    def _cause_risks(head, outputs, t_all) -> tuple[dict, dict]:
        cif = _np(head.cif(outputs, t_all))
        risks, curves = {}, {}
        for c, name in enumerate(CAUSES, start=1):
            risks[name] = _np(head.cause_risk(outputs, c))
            curves[f"cif_{name}"] = cif[:, c - 1]
        return risks, curves

    def fold_metrics(self, preds, times):
        out = super().fold_metrics(preds, times)
        out["ibs"] = out.get("ibs_cif_progression")  # the primary IBS is the progression CIF's
        return out


class MultistateEndpoint(_ProgressionEndpoint):
    """Illness-death: diagnosis -> progression -> death, and death without progression."""

    name = "multistate"
    primary = "os"
    competing_causes = True
    heads: ClassVar[dict[str, str]] = {
        "cox": "illness_death_cox",
        "illness_death_cox": "illness_death_cox",
    }

    def _risks_and_curves(self, head, outputs, t_all):
        risks, curves = CompetingEndpoint._cause_risks(head, outputs, t_all)
        p = head.state_probabilities(outputs, t_all).detach().cpu().numpy()
        curves["surv_os"] = np.clip(p[:, 0] + p[:, 1], 0.0, 1.0)
        curves["surv_pfs"] = p[:, 0]
        for j, state in enumerate(STATES):
            curves[f"state_{state}"] = p[:, j]
        risks["os"] = _np(head.risk(outputs))
        risks["pfs"] = self._neg_rmst(
            lambda g: head.state_probabilities(outputs, g)[:, 0].cpu().numpy(), head
        )
        return risks, curves, curves["cif_progression"]


for _endpoint in (
    SingleEndpoint("os", "time", "event"),
    SingleEndpoint("pfs", "pfs_time", "pfs_event"),
    SingleEndpoint("dss", "dss_time", "dss_event"),
    MultitaskEndpoint(),
    CompetingEndpoint(),
    MultistateEndpoint(),
):
    ENDPOINTS.register(_endpoint.name)(_endpoint)


def _all() -> list[Endpoint]:
    return [ENDPOINTS.get(n) for n in ENDPOINTS.names()]


def get_endpoint(name: str) -> Endpoint:
    """The registered endpoint ``name`` (ConfigError with "did you mean" when unknown)."""
    return ENDPOINTS.get(name)
