"""In-memory per-modality stores that cut batches out of preprocessed arrays.

Preprocessing turns every modality of every patient into arrays once; a training step then only
indexes them. This keeps CPU training fast (no per-sample Python collate) and makes a batch a pure
function of its indices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from multimodal.types import InputSpec, ModalityInput, TokenSet

__all__ = ["DenseStore", "DictStore", "ModalityStore", "TokenStore"]


@dataclass
class ModalityStore:
    """Base: ``present`` is (n,) bool, aligned to the patient order of the fold data."""

    spec: InputSpec
    present: np.ndarray

    def batch(self, idx: np.ndarray) -> ModalityInput:  # pragma: no cover - abstract
        raise NotImplementedError

    def mask(self, idx: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(self.present[idx])


@dataclass
class DenseStore(ModalityStore):
    """A tensor (n, ...) per patient: feature vectors, cached embeddings or images."""

    values: torch.Tensor = None  # type: ignore[assignment]

    def batch(self, idx: np.ndarray) -> torch.Tensor:
        return self.values[torch.from_numpy(np.asarray(idx, dtype=np.int64))]


@dataclass
class DictStore(ModalityStore):
    """Named tensors per patient (clinical: numeric, numeric_missing, categorical)."""

    values: dict[str, torch.Tensor] = None  # type: ignore[assignment]

    def batch(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        i = torch.from_numpy(np.asarray(idx, dtype=np.int64))
        return {k: v[i] for k, v in self.values.items()}


@dataclass
class TokenStore(ModalityStore):
    """A variable-length token set per patient (report chunks, bags of patch features)."""

    values: list[torch.Tensor] = None  # type: ignore[assignment]

    def batch(self, idx: np.ndarray) -> TokenSet:
        items = [self.values[int(i)] for i in idx]
        dim = self.spec.in_features or items[0].shape[-1]
        n_max = max(1, max(int(t.shape[0]) for t in items))
        tokens = torch.zeros(len(items), n_max, dim)
        mask = torch.zeros(len(items), n_max, dtype=torch.bool)
        for r, t in enumerate(items):
            tokens[r, : t.shape[0]] = t
            # a patient without the modality gets one placeholder token so that attention pooling
            # stays finite; the modality mask keeps the result out of the fusion
            mask[r, : max(1, t.shape[0])] = True
        return TokenSet(tokens, mask)
