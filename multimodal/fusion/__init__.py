"""Fusion of per-modality embeddings under a modality mask -> ``(B, out_dim)``.

Registered names (:data:`FUSIONS`): ``concat`` (early), ``late`` (averaged per-modality heads),
``kronecker`` (gated Kronecker / low-rank bilinear), ``attention_gated`` (masked attention over
modalities, ``last_weights``), ``cross_transformer`` (CLS token over modality tokens).
See :mod:`multimodal.fusion.base` for the missing-modality conventions, and
:func:`modality_dropout` for the training-time augmentation.
"""

from multimodal.fusion.attention import AttentionGatedFusion, CrossTransformerFusion
from multimodal.fusion.base import FUSIONS, Fusion, modality_dropout
from multimodal.fusion.kronecker import KroneckerFusion
from multimodal.fusion.simple import ConcatFusion, LateFusion

__all__ = [
    "FUSIONS",
    "AttentionGatedFusion",
    "ConcatFusion",
    "CrossTransformerFusion",
    "Fusion",
    "KroneckerFusion",
    "LateFusion",
    "modality_dropout",
]
