"""Early (``"concat"``) and late (``"late"``) fusion."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from multimodal.encoders.base import make_mlp
from multimodal.fusion.base import FUSIONS, Fusion
from multimodal.types import TokenSet

__all__ = ["ConcatFusion", "LateFusion"]


@FUSIONS.register("concat")
class ConcatFusion(Fusion):
    """Early fusion: project each modality, concatenate, MLP.

    A missing modality is represented by a learned "missing" embedding of its own (not zeros)
    plus a presence indicator channel, so the MLP knows it is absent.

    Parameters
    ----------
    in_dims, out_dim, token_inputs, dropout : see :class:`~multimodal.fusion.base.Fusion`.
    modality_dim : size of each projected modality (default ``out_dim``).
    hidden : hidden sizes of the MLP after concatenation (default ``(out_dim,)``).

    Forward: embeddings {m: (B, D_m) | TokenSet}, mask {m: (B,) bool} -> (B, out_dim).
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
        modality_dim: int | None = None,
        hidden: tuple[int, ...] | None = None,
    ) -> None:
        super().__init__(in_dims, out_dim, token_inputs, dropout)
        k = int(modality_dim or out_dim)
        self.project = nn.ModuleDict(
            {m: make_mlp(d, (), k, dropout) for m, d in self.in_dims.items()}
        )
        self.missing = nn.Parameter(torch.zeros(len(self.modality_names), k))
        nn.init.normal_(self.missing, std=0.02)
        width = len(self.modality_names) * (k + 1)
        self.mlp = make_mlp(width, hidden or (out_dim,), out_dim, dropout, final_act=False)

    def forward(
        self, embeddings: Mapping[str, torch.Tensor | TokenSet], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        present = self._present(embeddings, mask)
        parts = []
        for j, m in enumerate(self.modality_names):
            h = self.project[m](self._vector(m, embeddings[m], present[:, j]))
            parts.append(torch.where(present[:, j : j + 1], h, self.missing[j].expand_as(h)))
        parts.append(present.float())
        return self._finish(self.mlp(torch.cat(parts, dim=1)), present)


@FUSIONS.register("late")
class LateFusion(Fusion):
    """Late fusion: one projection (a per-modality head) per modality, averaged over the present
    modalities.

    Parameters
    ----------
    in_dims, out_dim, token_inputs, dropout : see :class:`~multimodal.fusion.base.Fusion`.
    hidden : hidden size of each modality's projection (0 = a single linear layer).
    reduction : ``"mean"`` averages the present modalities' outputs; ``"sum"`` adds them, which
        matches additive log-hazards: a missing modality then contributes nothing (its share of
        the risk is taken as average) instead of re-weighting the others.

    Forward: embeddings, mask -> (B, out_dim), the masked mean (or sum) of the per-modality outputs.
    """

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
        hidden: int = 0,
        reduction: str = "mean",
    ) -> None:
        super().__init__(in_dims, out_dim, token_inputs, dropout)
        if reduction not in ("mean", "sum"):
            from multimodal.exceptions import ConfigError
            from multimodal.registry import did_you_mean

            hint = did_you_mean(reduction, ("mean", "sum"))
            raise ConfigError(
                f"late fusion reduction {reduction!r} is unknown.{hint} Use 'mean' or 'sum'"
            )
        self.reduction = reduction
        self.heads = nn.ModuleDict(
            {
                m: make_mlp(d, (hidden,) if hidden else (), out_dim, dropout, final_act=False)
                for m, d in self.in_dims.items()
            }
        )

    def forward(
        self, embeddings: Mapping[str, torch.Tensor | TokenSet], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        present = self._present(embeddings, mask)
        outs = self._stack_projected(self.heads, embeddings, present)
        w = present.float()
        if self.reduction == "mean":
            w = w / w.sum(dim=1, keepdim=True).clamp_min(1.0)
        self.last_weights = w.detach()
        fused = (outs.masked_fill(~present.unsqueeze(-1), 0.0) * w.unsqueeze(-1)).sum(dim=1)
        return self._finish(fused, present)
