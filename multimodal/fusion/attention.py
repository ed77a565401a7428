"""Attention over modalities: ``"attention_gated"`` and ``"cross_transformer"``."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from multimodal.encoders.base import GatedAttentionPool, make_mlp
from multimodal.exceptions import ConfigError
from multimodal.fusion.base import FUSIONS, Fusion
from multimodal.types import TokenSet

__all__ = ["AttentionGatedFusion", "CrossTransformerFusion"]


@FUSIONS.register("attention_gated")
class AttentionGatedFusion(Fusion):
    """Gated attention over the present modalities (masked softmax), weighted sum, linear out.

    Parameters
    ----------
    in_dims, out_dim, token_inputs, dropout : see :class:`~multimodal.fusion.base.Fusion`.
    attention_hidden : size of the attention layer.

    Attributes
    ----------
    last_weights : (B, M) modality weights of the last call: 0 for missing modalities, summing to
        1 over the present ones (all 0 for a sample without any).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
        attention_hidden: int = 32,
    ) -> None:
        super().__init__(in_dims, out_dim, token_inputs, dropout)
        self.project = nn.ModuleDict(
            {m: make_mlp(d, (), out_dim, dropout) for m, d in self.in_dims.items()}
        )
        self.attention = GatedAttentionPool(out_dim, attention_hidden)
        self.out = nn.Linear(out_dim, out_dim)

    def forward(
        self, embeddings: Mapping[str, torch.Tensor | TokenSet], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        present = self._present(embeddings, mask)
        h = self._stack_projected(self.project, embeddings, present)
        pooled, weights = self.attention(h, present)
        self.last_weights = weights.detach()
        return self._finish(self.out(pooled), present)


@FUSIONS.register("cross_transformer")
class CrossTransformerFusion(Fusion):
    """A transformer over modality tokens with a CLS token; the CLS output is the fused vector.

    Each vector modality is one token; a token-set modality contributes all its tokens (or one
    pooled token with ``consume_tokens=False``). Every token gets a learned modality-type
    embedding. Missing modalities and padding are hidden with ``src_key_padding_mask``; the CLS
    token is always present, so attention stays finite.

    Parameters
    ----------
    in_dims, out_dim, token_inputs, dropout : see :class:`~multimodal.fusion.base.Fusion`.
    d_model : transformer width (default ``out_dim``).
    nhead : attention heads (must divide ``d_model``).
    num_layers : transformer layers.
    dim_feedforward : feed-forward width (default ``2 * d_model``).
    consume_tokens : feed token sets as tokens (True) or masked-mean pooled (False).
    """

    consumes_tokens = True

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
        d_model: int | None = None,
        nhead: int = 4,
        num_layers: int = 1,
        dim_feedforward: int | None = None,
        consume_tokens: bool = True,
    ) -> None:
        super().__init__(in_dims, out_dim, token_inputs, dropout)
        d = int(d_model or out_dim)
        if d % nhead:
            raise ConfigError(f"cross_transformer: nhead={nhead} must divide d_model={d}")
        self.consume = bool(consume_tokens)
        self.project = nn.ModuleDict({m: nn.Linear(k, d) for m, k in self.in_dims.items()})
        self.type_embedding = nn.Parameter(torch.randn(len(self.modality_names), d) * 0.02)
        self.cls = nn.Parameter(torch.randn(d) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d, nhead, dim_feedforward or 2 * d, dropout, batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.out = nn.Linear(d, out_dim)

    def _tokens(
        self, j: int, name: str, x: torch.Tensor | TokenSet, present: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """-> tokens (B, N, d), valid (B, N) for modality ``name``."""
        if isinstance(x, TokenSet) and self.consume:
            valid = x.mask.bool() & present.unsqueeze(1)
            t = x.tokens.float().masked_fill(~valid.unsqueeze(-1), 0.0)
        else:
            t = self._vector(name, x, present).unsqueeze(1)
            valid = present.unsqueeze(1)
        return self.project[name](t) + self.type_embedding[j], valid

    def forward(
        self, embeddings: Mapping[str, torch.Tensor | TokenSet], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        present = self._present(embeddings, mask)
        b = present.shape[0]
        tokens = [self.cls.expand(b, 1, -1)]
        valid = [present.new_ones(b, 1)]
        for j, m in enumerate(self.modality_names):
            t, v = self._tokens(j, m, embeddings[m], present[:, j])
            tokens.append(t)
            valid.append(v)
        seq = self.transformer(
            torch.cat(tokens, dim=1), src_key_padding_mask=~torch.cat(valid, dim=1)
        )
        return self._finish(self.out(self.norm(seq[:, 0])), present)
