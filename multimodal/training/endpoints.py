"""Endpoints: the outcomes a model trains on, and the named predictions and metrics of each.

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
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.survival.competing import (
    CAUSES,
    cause_specific_c_index,
    cif_integrated_brier_score,
    competing_c_index,
    first_event,
)
from multimodal.survival.multistate import STATES

__all__ = [
    "PRIMARY",
    "PROGRESSION_ENDPOINTS",
    "endpoint_metrics",
    "endpoint_predictions",
    "outcome_arrays",
    "required_columns",
]

log = logging.getLogger(__name__)

PROGRESSION_ENDPOINTS: tuple[str, ...] = ("multitask", "competing", "multistate")
#: Primary endpoint / cause of each progression endpoint (its ``risk``, ``surv_<t>``, ``c_index``).
PRIMARY: dict[str, str] = {"multitask": "os", "competing": "progression", "multistate": "os"}
_SINGLE = {
    "os": ("time", "event"),
    "pfs": ("pfs_time", "pfs_event"),
    "dss": ("dss_time", "dss_event"),
}


def required_columns(endpoint: str) -> tuple[str, ...]:
    """Patient-table columns an endpoint needs (patients lacking any of them are left out)."""
    if endpoint in _SINGLE:
        return _SINGLE[endpoint]
    if endpoint in PROGRESSION_ENDPOINTS:
        return ("time", "event", "pfs_time", "pfs_event")
    raise ValueError(f"unknown endpoint {endpoint!r}")


def outcome_arrays(
    patients: pd.DataFrame, endpoint: str
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray] | None]:
    """``(time, event, outcomes)`` of ``patients`` for ``endpoint``.

    ``time``/``event`` are what the sampler balances and the discrete time grid is built on (see
    the module table); ``outcomes`` (progression endpoints only) holds ``os_time``, ``os_event``,
    ``pfs_time``, ``pfs_event`` and, for competing/multistate, ``event_type``.
    """
    if endpoint in _SINGLE:
        tcol, ecol = _SINGLE[endpoint]
        return patients[tcol].to_numpy(np.float64), patients[ecol].to_numpy().astype(bool), None
    os_t = patients["time"].to_numpy(np.float64)
    os_e = patients["event"].to_numpy().astype(bool)
    pfs_t = patients["pfs_time"].to_numpy(np.float64)
    pfs_e = patients["pfs_event"].to_numpy().astype(bool)
    out = {"os_time": os_t, "os_event": os_e, "pfs_time": pfs_t, "pfs_event": pfs_e}
    if endpoint == "multitask":
        return os_t, os_e, out
    first_t, etype = first_event(os_t, os_e, pfs_t, pfs_e)
    out.update(pfs_time=first_t, pfs_event=etype > 0, event_type=etype)
    if endpoint == "competing":
        return first_t, etype > 0, out
    return os_t, os_e, out


def _horizon(head: Any) -> float:
    cuts = getattr(head, "cuts", None)
    return float(cuts[-1]) if cuts is not None else float(head.max_time)


def _neg_rmst(curve_fn, head: Any) -> np.ndarray:
    """Minus the restricted mean of a curve over [0, the head's last time] (trapezoid, 200 steps)."""
    grid = np.linspace(0.0, _horizon(head), 201)
    s = np.asarray(curve_fn(grid), dtype=float)
    return -np.trapezoid(s, grid, axis=1)


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(float)


@torch.no_grad()
def endpoint_predictions(
    endpoint: str, head: Any, outputs: torch.Tensor, times: list[float], horizons: list[float]
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Named risks and curves of a progression endpoint for head ``outputs``.

    Returns
    -------
    risks : dict name -> (n,): ``"risk"`` (primary) and ``"risk_<name>"``
    curves : dict column prefix -> (n, len(times)) at ``times``: ``"surv"`` (primary), ``"surv_os"``,
        ``"surv_pfs"``, ``"cif_<cause>"``, ``"state_<state>"``; and ``"p_progression"`` ->
        (n, len(horizons)) at ``horizons``.
    """
    t_all = np.unique(np.concatenate([np.asarray(times, float), np.asarray(horizons, float)]))
    at_t = np.searchsorted(t_all, np.asarray(times, float))
    at_h = np.searchsorted(t_all, np.asarray(horizons, float))
    risks: dict[str, np.ndarray] = {}
    curves: dict[str, np.ndarray] = {}
    if endpoint == "multitask":
        for task in head.tasks:
            risks[task] = _np(head.task_risk(outputs, task))
            curves[f"surv_{task}"] = _np(head.task_survival(outputs, t_all, task))
        progression = 1.0 - curves["surv_pfs"]
    elif endpoint in ("competing", "multistate"):
        cif = _np(head.cif(outputs, t_all))
        for c, name in enumerate(CAUSES, start=1):
            risks[name] = _np(head.cause_risk(outputs, c))
            curves[f"cif_{name}"] = cif[:, c - 1]
        if endpoint == "competing":
            curves["surv_pfs"] = _np(head.survival(outputs, t_all))
            risks["pfs"] = _neg_rmst(lambda g: _np(head.survival(outputs, g)), head)
        else:
            p = head.state_probabilities(outputs, t_all).detach().cpu().numpy()
            curves["surv_os"] = np.clip(p[:, 0] + p[:, 1], 0.0, 1.0)
            curves["surv_pfs"] = p[:, 0]
            for j, state in enumerate(STATES):
                curves[f"state_{state}"] = p[:, j]
            risks["os"] = _np(head.risk(outputs))
            risks["pfs"] = _neg_rmst(
                lambda g: head.state_probabilities(outputs, g)[:, 0].cpu().numpy(), head
            )
        progression = curves["cif_progression"]
    else:
        raise ValueError(f"endpoint_predictions is for {PROGRESSION_ENDPOINTS}; got {endpoint!r}")
    primary = PRIMARY[endpoint]
    named = {"risk": risks[primary], **{f"risk_{k}": v for k, v in risks.items()}}
    surv = (
        1.0 - curves["cif_progression"] if primary == "progression" else curves[f"surv_{primary}"]
    )
    out = {"surv": surv[:, at_t], **{k: v[:, at_t] for k, v in curves.items()}}
    out["p_progression"] = progression[:, at_h]
    return named, out


def outcome_frame(endpoint: str, data: Any) -> pd.DataFrame:
    """Outcome columns of the prediction frame: time, event (primary) and the endpoint's own."""
    o = data.outcomes
    if endpoint not in PROGRESSION_ENDPOINTS or o is None:
        return pd.DataFrame({"time": data.time, "event": data.event.astype(int)})
    if endpoint == "competing":
        frame = {"time": o["pfs_time"], "event": (o["event_type"] == 1).astype(int)}
    else:
        frame = {"time": o["os_time"], "event": o["os_event"].astype(int)}
    frame.update(
        os_time=o["os_time"],
        os_event=o["os_event"].astype(int),
        pfs_time=o["pfs_time"],
        pfs_event=o["pfs_event"].astype(int),
    )
    if "event_type" in o:
        frame["event_type"] = o["event_type"]
    return pd.DataFrame(frame)


def _grid(times: list[float], val_time: np.ndarray, train_time: np.ndarray) -> np.ndarray:
    return np.array(
        [x for x in times if val_time.min() <= x < min(val_time.max(), train_time.max())]
    )


def _safe(out: dict[str, Any], key: str, fn, *args) -> None:
    """``out[key] = fn(*args)``, or None (logged) where the metric is undefined on this fold."""
    try:
        out[key] = float(fn(*args))
    except Exception as exc:  # no events of a cause, times outside follow-up, ...
        log.warning("%s not computed: %s", key, exc)
        out[key] = None


def endpoint_metrics(preds: pd.DataFrame, times: list[float], endpoint: str) -> dict[str, Any]:
    """Per-endpoint and per-cause validation metrics of one fold of a progression endpoint.

    For ``os``/``pfs`` (where the frame has ``risk_<name>``): ``c_index_<name>`` (Harrell),
    ``uno_c_<name>``, ``ibs_<name>`` (from ``surv_<name>_<t>``). Per cause (``event_type`` present):
    ``c_index_<cause>`` (cause-specific Harrell C, the other cause as censoring), ``cr_c_index_<cause>``
    (Wolbers' competing-risks C), ``ibs_cif_<cause>`` (IPCW integrated Brier score of the CIF).
    """
    from multimodal.survival import metrics as M

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
                _safe(out, f"ibs_cif_{name}", cif_integrated_brier_score, tt, tk, t, k, f, grid, c)
            out[f"n_events_val_{name}"] = int((k == c).sum())
    return out
