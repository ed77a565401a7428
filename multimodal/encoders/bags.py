"""Bags of precomputed features (WSI patch features, several slides): attention MIL pooling.

A patient's bag arrives as a :class:`~multimodal.types.TokenSet` ``(B, N, in_features)`` with a
padding mask. :class:`AttentionMILEncoder` projects each token, weighs the tokens with gated
attention (Ilse, Tomczak & Welling, 2018) and returns the weighted sum.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch
from torch import nn

from multimodal.data.files import read_feature_bag
from multimodal.encoders.base import ENCODERS, Encoder, GatedAttentionPool, as_token_set
from multimodal.types import TokenSet

__all__ = ["AttentionMILEncoder", "load_feature_bag"]


@ENCODERS.register("attention_mil")
class AttentionMILEncoder(Encoder):
    """Gated attention MIL pooling over a bag of feature vectors.

    Parameters
    ----------
    in_features : size D of each feature vector.
    out_dim : embedding size.
    attention_hidden : size of the attention layer.
    dropout : dropout on the projected tokens.

    Input: ``TokenSet`` tokens (B, N, in_features), mask (B, N) (or a dense (B, N, D) tensor,
    every token valid) -> (B, out_dim). A row without any valid token gives a zero vector and
    all-zero attention (the fusion's modality mask must hide such patients).

    Attributes
    ----------
    last_attention : (B, N) attention weights of the last call (detached): 0 at padding, summing to
        1 over a patient's valid tokens.
    """

    spec_fields: ClassVar[dict[str, str]] = {"in_features": "in_features"}

    def __init__(
        self,
        in_features: int,
        out_dim: int = 32,
        attention_hidden: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.in_features, self.out_dim = int(in_features), int(out_dim)
        self.project = nn.Sequential(
            nn.Linear(in_features, out_dim), nn.ReLU(), nn.Dropout(dropout)
        )
        self.attention = GatedAttentionPool(out_dim, attention_hidden)
        self.last_attention: torch.Tensor | None = None

    def forward_with_attention(
        self, x: TokenSet | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x -> (embedding (B, out_dim), attention weights (B, N), with gradients)."""
        x = as_token_set(x)
        mask = x.mask.bool()
        tokens = x.tokens.float().masked_fill(~mask.unsqueeze(-1), 0.0)
        pooled, weights = self.attention(self.project(tokens), mask)
        self.last_attention = weights.detach()
        return pooled, weights

    def forward(self, x: TokenSet | torch.Tensor) -> torch.Tensor:
        """x -> (B, out_dim)."""
        return self.forward_with_attention(x)[0]


def load_feature_bag(path: str | Path) -> torch.Tensor:
    """Read a bag of feature vectors: ``.pt``/``.pth`` (tensor or ``{"features": ...}``), ``.npy``,
    ``.npz`` or ``.h5`` (dataset ``"features"``); the format is owned by
    :func:`multimodal.data.files.read_feature_bag`, which :func:`multimodal.data.validate` checks
    bags with too.

    Returns
    -------
    FloatTensor (N, D). A (1, N, D) array is squeezed; a 1-D vector becomes one token (1, D).

    Raises
    ------
    DataError naming the file when it is missing, unreadable, not 1-3 dimensional or not finite.
    """
    return read_feature_bag(path)
