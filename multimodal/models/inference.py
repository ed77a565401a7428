"""Forward passes over preprocessed patients: the one path every consumer predicts through.

Training (hold-out scores, fold predictions), :class:`~multimodal.models.run.TrainedModel`
(``predict``, ``explain``), the dashboard and tuning all compute head outputs with
:func:`head_outputs` and turn them into named risks and curves with the endpoint's
:meth:`~multimodal.survival.endpoints.Endpoint.predictions` (:func:`predict_frame`).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.survival.endpoints import get_endpoint

__all__ = ["autocast", "head_outputs", "predict_frame", "prediction_columns"]


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context of ``train.precision`` (``auto``: bf16 on CUDA, float32 elsewhere)."""
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "32"
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def head_outputs(
    model: torch.nn.Module,
    data: Any,
    device: torch.device,
    precision: str = "32",
    batch_size: int = 256,
) -> torch.Tensor:
    """Head outputs for every patient of ``data`` (a ``FoldData``), float32, on ``device``.

    The model is put in eval mode. Shape: (n,) for Cox heads, (n, T) for discrete-time heads,
    (n, outputs) for multi-output heads.
    """
    model.eval()
    outs = []
    for idx in data.batches(batch_size):
        with autocast(device, precision):
            outs.append(model(data.batch(idx).to(device)).float())
    return torch.cat(outs) if outs else torch.zeros(0, device=device)


def prediction_columns(
    risks: dict[str, np.ndarray],
    curves: dict[str, np.ndarray],
    times: list[float],
    horizons: list[float],
) -> dict[str, np.ndarray]:
    """Named prediction columns: risks as they are, curves as ``<prefix>_<t>`` at ``times``
    (``p_progression_<h>`` at ``horizons``)."""
    columns = dict(risks)
    for prefix, values in curves.items():
        grid = horizons if prefix == "p_progression" else times
        for j, t in enumerate(grid):
            columns[f"{prefix}_{t:g}"] = values[:, j]
    return columns


@torch.no_grad()
def predict_frame(
    model: torch.nn.Module,
    data: Any,
    times: list[float],
    device: torch.device,
    precision: str = "32",
    endpoint: str = "os",
    horizons: list[float] | tuple[float, ...] = (),
) -> pd.DataFrame:
    """patient_id, the endpoint's outcome columns, ``risk``, ``surv_<t>`` at ``times`` and, for
    multi-output endpoints, their named risks and curves, for every patient of ``data``."""
    out = head_outputs(model, data, device, precision)
    ep = get_endpoint(endpoint)
    risks, curves = ep.predictions(model.head, out, list(times), list(horizons))
    frame = ep.outcome_frame(data)
    frame.insert(0, "patient_id", data.ids)
    columns = {k: frame[k].to_numpy() for k in frame.columns}
    columns.update(prediction_columns(risks, curves, list(times), list(horizons)))
    return pd.DataFrame(columns)
