"""Per-modality preprocessing fitted on training patients only, and the fold data it produces.

A :class:`ModalityPipeline` is fitted on the training patients of a fold (scalers, categorical
levels, feature selection) and then turns any set of patients into a :class:`ModalityStore`.
Fold-independent work -- text embeddings, image loading -- goes through a shared
:class:`PreprocessContext` so it is done once per run (and cached on disk across runs).
Each pipeline's state is JSON and is saved with the model, so a new cohort is transformed exactly
like the training data.

This module gathers the parts (importing it registers every pipeline kind):
:mod:`~multimodal.training.pipeline_base` (contract, registry, context),
:mod:`~multimodal.training.pipelines_tabular`, :mod:`~multimodal.training.pipelines_text`,
:mod:`~multimodal.training.pipelines_image`, :mod:`~multimodal.training.pipelines_longitudinal` and :mod:`~multimodal.training.fold_data`.
"""

from __future__ import annotations

from multimodal.training.fold_data import FoldData, build_fold_data
from multimodal.training.pipeline_base import (
    PIPELINES,
    ModalityPipeline,
    PreprocessContext,
    default_cache_dir,
)
from multimodal.training.pipelines_image import FeatureBagPipeline, ImagingPipeline
from multimodal.training.pipelines_longitudinal import LongitudinalPipeline
from multimodal.training.pipelines_tabular import ClinicalPipeline, GenomicsPipeline
from multimodal.training.pipelines_text import (
    MAX_REPORT_CHARS,
    MAX_REPORT_CHUNKS,
    MAX_SENTENCE_CHARS,
    TextPipeline,
    report_chunks,
    split_sentences,
)

__all__ = [
    "MAX_REPORT_CHARS",
    "MAX_REPORT_CHUNKS",
    "MAX_SENTENCE_CHARS",
    "PIPELINES",
    "ClinicalPipeline",
    "FeatureBagPipeline",
    "FoldData",
    "GenomicsPipeline",
    "ImagingPipeline",
    "LongitudinalPipeline",
    "ModalityPipeline",
    "PreprocessContext",
    "TextPipeline",
    "build_fold_data",
    "default_cache_dir",
    "report_chunks",
    "split_sentences",
]
