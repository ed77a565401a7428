"""Forward passes the explanation methods share: per-fold inputs, cached encoder outputs, and the
model's head outputs under a chosen modality mask (:meth:`MultimodalSurvivalModel.combine`).

Every method asks the same question many times -- "what does the model say when this modality is
hidden / this input is changed?" -- so encoder outputs of the unchanged modalities are computed once
per fold and fed back through :func:`head_outputs`, which runs the real fusion, linear members and
head of the model. A hidden modality is hidden with the model's own mask (exactly like a missing
modality), never by zero-filling its input.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from multimodal.models.model import MultimodalSurvivalModel
from multimodal.training.preprocess import FoldData
from multimodal.types import TokenSet

if TYPE_CHECKING:  # the trained run calls explain, not the other way round
    from multimodal.models.run import FoldModel, TrainedModel

__all__ = [
    "FoldInputs",
    "encode",
    "fold_inputs",
    "head_outputs",
    "present_matrix",
    "take",
    "to_device",
]

#: Rows per forward pass.
BATCH = 256


@dataclass
class FoldInputs:
    """One fold model of the ensemble and the requested patients, preprocessed its way."""

    fold: FoldModel
    data: FoldData
    device: torch.device

    @property
    def model(self) -> MultimodalSurvivalModel:
        return self.fold.model


def fold_inputs(trained: TrainedModel, cohort: Any, ids: list[str]) -> list[FoldInputs]:
    """Preprocess patients ``ids`` of ``cohort`` with each fold's fitted pipelines."""
    out = []
    for fm in trained.folds:
        fm.model.eval()
        out.append(FoldInputs(fm, trained.fold_data(fm, cohort, ids), trained.device))
    return out


def present_matrix(data: FoldData, modalities: list[str]) -> np.ndarray:
    """(n, M) bool: True where the patient has the modality."""
    return np.stack([np.asarray(data.stores[m].present, bool) for m in modalities], axis=1)


def _pad_cat(parts: list[TokenSet]) -> TokenSet:
    n_max = max(int(p.tokens.shape[1]) for p in parts)
    tokens, masks = [], []
    for p in parts:
        pad = n_max - int(p.tokens.shape[1])
        tokens.append(nn.functional.pad(p.tokens, (0, 0, 0, pad)))
        masks.append(nn.functional.pad(p.mask, (0, pad), value=False))
    return TokenSet(torch.cat(tokens), torch.cat(masks))


def _cat(parts: list[Any]) -> Any:
    if isinstance(parts[0], TokenSet):
        return _pad_cat(parts)
    return torch.cat(parts)


def take(value: Any, rows: np.ndarray | torch.Tensor) -> Any:
    """Rows of an encoder output (tensor or TokenSet) or of a clinical input dict."""
    idx = torch.as_tensor(np.asarray(rows, dtype=np.int64))
    if isinstance(value, TokenSet):
        idx = idx.to(value.tokens.device)
        return TokenSet(value.tokens[idx], value.mask[idx])
    if isinstance(value, dict):
        return {k: v[idx.to(v.device)] for k, v in value.items()}
    return value[idx.to(value.device)]


def to_device(x: Any, device: torch.device) -> Any:
    """Move a model input (tensor, TokenSet or dict of tensors) to ``device``."""
    if isinstance(x, dict):
        return {k: v.to(device) for k, v in x.items()}
    return x.to(device)


@torch.no_grad()
def encode(
    model: MultimodalSurvivalModel,
    data: FoldData,
    device: torch.device,
    modalities: list[str] | None = None,
) -> dict[str, Any]:
    """Encoder outputs for every patient of ``data``: modality -> (n, D) tensor or TokenSet."""
    out = {}
    for m in modalities or model.modalities:
        parts = [
            model.encoders[m](to_device(data.stores[m].batch(idx), device))
            for idx in data.batches(BATCH)
        ]
        out[m] = _cat(parts)
    return out


def head_outputs(
    fi: FoldInputs,
    rows: np.ndarray,
    mask: Mapping[str, torch.Tensor],
    embeddings: Mapping[str, Any],
    live: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Head outputs of the fold model for patients ``rows`` of ``fi.data``.

    Parameters
    ----------
    fi : the fold and its preprocessed patients.
    rows : (B,) indices into ``fi.data`` (repeats allowed).
    mask : modality -> (B,) bool, True = the model sees the modality.
    embeddings : modality -> encoder output for the B rows (used instead of running the encoder).
    live : modality -> model input for the B rows; these encoders really run (for gradients),
        and the modality's linear member sees this input too. The linear members of the other
        modalities take the patients' own inputs from ``fi.data``.

    Returns
    -------
    Tensor, (B,) for Cox heads, (B, T) for discrete heads.
    """
    model, live = fi.model, dict(live or {})
    rows = np.asarray(rows, dtype=np.int64)
    # the linear members see each patient's own input (or the live one), the deep residual the
    # given encoder outputs; the mask hides a modality from both
    inputs = {
        m: live[m] if m in live else to_device(fi.data.stores[m].batch(rows), fi.device)
        for m in model.member_modalities
    }
    emb = {m: embeddings[m] for m in model.modalities if m not in live}
    if live:
        emb.update(model.embed(live, list(live)))
    return model.combine(emb, inputs, {m: mask[m].to(fi.device) for m in model.modalities})


def risk_of(model: MultimodalSurvivalModel, outputs: torch.Tensor) -> torch.Tensor:
    """(B,) risk (higher = worse) from head outputs, differentiable."""
    return model.head.risk(outputs).float().reshape(-1)


def survival_of(
    model: MultimodalSurvivalModel, outputs: torch.Tensor, times: list[float]
) -> np.ndarray:
    """(B, len(times)) S(t) from head outputs."""
    t = torch.as_tensor(np.asarray(times, dtype=np.float32), device=outputs.device)
    return model.head.survival(outputs.detach(), t).detach().float().cpu().numpy()
