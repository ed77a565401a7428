"""The modality pipeline contract, its registry and the run-wide preprocessing context.

A :class:`ModalityPipeline` is fitted on the training patients of a fold and turns any set of
patients into a :class:`~multimodal.training.stores.ModalityStore`; its state is JSON and is saved
with the model. The pipelines of each modality kind register in :data:`PIPELINES`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from multimodal.registry import Registry
from multimodal.training.stores import ModalityStore

__all__ = ["PIPELINES", "ModalityPipeline", "PreprocessContext", "default_cache_dir"]

log = logging.getLogger(__name__)

PIPELINES: Registry[type[ModalityPipeline]] = Registry("modality pipeline")


@dataclass
class PreprocessContext:
    """Run-wide caches shared by the folds (and settings every pipeline may need)."""

    cache_dir: Path | None = None
    text_model: str | None = None
    text_max_length: int = 256
    text_chunking: str = "sentences"
    text_features: str = "embedding"
    text_max_terms: int = 1000
    text_term_scaling: str = "term"
    image_size: int = 32
    image_intensity: Any = "scale"
    genomics_max_features: int | None = None
    genomics_types: tuple[str, ...] = ()
    genomics_transform: str = "none"
    genomics_clip: float | None = None
    frozen_image_encoder: dict[str, Any] | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> PreprocessContext:
        """Settings from a :class:`multimodal.config.Config`'s ``data`` block."""
        d = cfg.data
        return cls(
            cache_dir=Path(d.cache_dir) if d.cache_dir else None,
            text_model=d.text_model,
            text_max_length=d.text_max_length,
            text_chunking=d.text_chunking,
            text_features=d.text_features,
            text_max_terms=d.text_max_terms,
            text_term_scaling=d.text_term_scaling,
            image_size=d.image_size,
            image_intensity=(
                d.image_intensity
                if isinstance(d.image_intensity, str)
                else [float(v) for v in d.image_intensity]
            ),
            genomics_max_features=d.genomics_max_features,
            genomics_types=tuple(d.genomics_types),
            genomics_transform=d.genomics_transform,
            genomics_clip=d.genomics_clip,
            frozen_image_encoder=(
                d.frozen_image_encoder.model_dump() if d.frozen_image_encoder else None
            ),
        )


class ModalityPipeline:
    """Fit on training patients, transform any patients into a store."""

    kind: ClassVar[str]

    def __init__(self, ctx: PreprocessContext, encoder: str) -> None:
        self.ctx, self.encoder = ctx, encoder

    def fit(self, source: Any, train_ids: list[str]) -> ModalityPipeline:
        return self

    def transform(self, source: Any, ids: list[str]) -> ModalityStore:  # pragma: no cover
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> ModalityPipeline:
        return self


def _saved_stats(state: dict[str, Any], dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The standardisation mean and SD a pipeline's ``state()`` saved; (None, None) if none."""
    if state.get("mean") is None:
        return None, None
    return np.asarray(state["mean"], dtype=dtype), np.asarray(state["std"], dtype=dtype)


def _training_range(
    rows: pd.DataFrame, columns: list[str]
) -> tuple[list[float | None], list[float | None]]:
    """Per column of ``rows``: the smallest and largest finite value (None when it has none)."""
    x = rows.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").astype(np.float64)
    x = x.where(np.isfinite(x))
    low, high = x.min(), x.max()
    return (
        [None if pd.isna(v) else float(v) for v in low],
        [None if pd.isna(v) else float(v) for v in high],
    )


def _present(index: pd.Index, ids: list[str]) -> np.ndarray:
    return np.asarray(pd.Index(ids).isin(index), dtype=bool)


def default_cache_dir() -> Path:
    """``$MULTIMODAL_CACHE`` or ``~/.cache/multimodal``: text and frozen-image embeddings."""
    import os

    return Path(os.environ.get("MULTIMODAL_CACHE", Path.home() / ".cache" / "multimodal"))
