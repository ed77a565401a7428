"""Pipelines of the tabular modalities: clinical covariates and genomic feature tables."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from multimodal.training.pipeline_base import (
    PIPELINES,
    ModalityPipeline,
    _present,
    _training_range,
)
from multimodal.training.stores import DenseStore, DictStore
from multimodal.types import InputSpec

__all__ = ["ClinicalPipeline", "GenomicsPipeline"]

log = logging.getLogger(__name__)


@PIPELINES.register("clinical")
class ClinicalPipeline(ModalityPipeline):
    kind = "clinical"

    def fit(self, source: Any, train_ids: list[str]) -> ClinicalPipeline:
        from multimodal.encoders.clinical import ClinicalPreprocessor

        rows = source.table.loc[source.table.index.intersection(train_ids)]
        self.prep = ClinicalPreprocessor(numeric=source.numeric, categorical=source.categorical)
        self.prep.fit(rows)
        return self

    def transform(self, source: Any, ids: list[str]) -> DictStore:
        present = _present(source.table.index, ids)
        arrays = self.prep.transform(source.table.reindex(ids))
        values = {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}
        spec = InputSpec(
            kind="clinical",
            n_numeric=self.prep.n_numeric,
            cardinalities=list(self.prep.cardinalities),
            feature_names=list(self.prep.feature_names),
            categorical_names=list(self.prep.categorical),
        )
        return DictStore(spec=spec, present=present, values=values)

    def state(self) -> dict[str, Any]:
        return self.prep.state_dict()

    def load_state(self, state: dict[str, Any]) -> ClinicalPipeline:
        from multimodal.encoders.clinical import ClinicalPreprocessor

        self.prep = ClinicalPreprocessor.from_state(state)
        return self


@PIPELINES.register("genomics")
class GenomicsPipeline(ModalityPipeline):
    kind = "genomics"

    def fit(self, source: Any, train_ids: list[str]) -> GenomicsPipeline:
        from multimodal.encoders.genomics import GenomicsPreprocessor

        rows = source.table.loc[source.table.index.intersection(train_ids)]
        self.prep = GenomicsPreprocessor(
            max_features=self.ctx.genomics_max_features,
            groups=getattr(source, "groups", None),
            types=self.ctx.genomics_types,
            transform=self.ctx.genomics_transform,
            clip=self.ctx.genomics_clip,
        )
        self.prep.fit(rows)
        self.min_, self.max_ = _training_range(rows, self.prep.feature_names_)
        return self

    def transform(self, source: Any, ids: list[str]) -> DenseStore:
        present = _present(source.table.index, ids)
        x = np.asarray(self.prep.transform(source.table.reindex(ids)), dtype=np.float32)
        x[~present] = 0.0  # placeholder rows, masked out downstream
        x = np.nan_to_num(x, nan=0.0)
        groups = getattr(self.prep, "groups_", None) or None
        spec = InputSpec(
            kind="genomics",
            in_features=x.shape[1],
            groups=[list(map(int, g)) for g in groups.values()] if groups else None,
            group_names=list(groups) if groups else None,
            feature_names=list(self.prep.feature_names_),
            scales=[float(s) for s in self.prep.scales_],
        )
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def state(self) -> dict[str, Any]:
        """The preprocessor's state plus the training range (``min``/``max``, raw values of the
        selected features; None where a feature had no finite training value)."""
        state = self.prep.state_dict()
        if getattr(self, "min_", None) is not None:
            state.update(min=self.min_, max=self.max_)
        return state

    def load_state(self, state: dict[str, Any]) -> GenomicsPipeline:
        from multimodal.encoders.genomics import GenomicsPreprocessor

        self.prep = GenomicsPreprocessor.from_state(state)
        # the training range: absent from run folders saved before it was recorded
        self.min_, self.max_ = state.get("min"), state.get("max")
        return self
