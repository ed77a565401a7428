"""Gated Kronecker (bilinear) fusion, after Pathomic Fusion (Chen et al., 2020) and, for many
modalities, low-rank multimodal fusion (LMF; Liu et al., 2018)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
from torch import nn

from multimodal.encoders.base import make_mlp
from multimodal.exceptions import ConfigError
from multimodal.fusion.base import FUSIONS, Fusion
from multimodal.types import TokenSet

__all__ = ["KroneckerFusion"]


@FUSIONS.register("kronecker")
class KroneckerFusion(Fusion):
    """Gated unimodal vectors with an appended 1, combined by their outer (Kronecker) product.

    Each modality gives ``v_m = [h_m * sigmoid(g_m), 1]`` with ``h_m = ReLU(W_m x_m)`` and a gate
    ``g_m = U_m x_m`` (self-gating; Pathomic Fusion gates with the other modality, which would let
    a missing modality's input in). The outer product of the ``v_m`` holds every unimodal,
    bimodal, ... interaction term; a missing modality has ``v_m = [0, ..., 0, 1]`` so only the
    constant term survives and the modality drops out.

    Parameters
    ----------
    in_dims, out_dim, token_inputs, dropout : see :class:`~multimodal.fusion.base.Fusion`.
    unimodal_dim : size k of each gated vector before the 1 is appended.
    mode : ``"full"`` (explicit outer product, size prod(k + 1)), ``"low_rank"`` (LMF factors,
        never materialises the product) or ``"auto"``: full when prod(k + 1) <= ``max_full``.
    rank : number of LMF factors.
    max_full : size limit of the explicit product for ``"auto"``.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
        unimodal_dim: int = 8,
        mode: Literal["auto", "full", "low_rank"] = "auto",
        rank: int = 4,
        max_full: int = 4096,
    ) -> None:
        super().__init__(in_dims, out_dim, token_inputs, dropout)
        if mode not in ("auto", "full", "low_rank"):
            raise ConfigError(f"unknown kronecker mode {mode!r}; use 'auto', 'full' or 'low_rank'")
        k = int(unimodal_dim)
        full_size = (k + 1) ** len(self.modality_names)
        self.mode = ("full" if full_size <= max_full else "low_rank") if mode == "auto" else mode
        self.hidden = nn.ModuleDict({m: nn.Linear(d, k) for m, d in self.in_dims.items()})
        self.gate = nn.ModuleDict({m: nn.Linear(d, k) for m, d in self.in_dims.items()})
        self.drop = nn.Dropout(dropout)
        if self.mode == "full":
            self.post = make_mlp(full_size, (out_dim,), out_dim, dropout, final_act=False)
        else:
            self.factors = nn.ParameterList(
                nn.Parameter(torch.empty(rank, k + 1, out_dim)) for _ in self.modality_names
            )
            for f in self.factors:
                nn.init.xavier_normal_(f)
            self.rank_weights = nn.Parameter(torch.full((1, rank), 1.0 / math.sqrt(rank)))
            self.bias = nn.Parameter(torch.zeros(out_dim))

    def _unimodal(self, name: str, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.hidden[name](x)) * torch.sigmoid(self.gate[name](x))
        h = self.drop(h).masked_fill(~present.unsqueeze(-1), 0.0)
        return torch.cat([h, h.new_ones(h.shape[0], 1)], dim=1)

    def forward(
        self, embeddings: Mapping[str, torch.Tensor | TokenSet], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        present = self._present(embeddings, mask)
        vs = [
            self._unimodal(m, self._vector(m, embeddings[m], present[:, j]), present[:, j])
            for j, m in enumerate(self.modality_names)
        ]
        if self.mode == "full":
            z = vs[0]
            for v in vs[1:]:
                z = (z.unsqueeze(-1) * v.unsqueeze(1)).flatten(1)
            fused = self.post(z)
        else:
            prod = None
            for v, f in zip(vs, self.factors, strict=True):
                term = torch.einsum("bk,rko->bro", v, f)
                prod = term if prod is None else prod * term
            fused = torch.einsum("xr,bro->bo", self.rank_weights, prod) + self.bias
        return self._finish(fused, present)
