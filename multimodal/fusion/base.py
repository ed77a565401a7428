"""Fusion registry, base class and modality dropout.

A fusion module takes one embedding per modality -- ``(B, D_m)`` or a
:class:`~multimodal.types.TokenSet` -- and a presence mask per modality ``(B,)`` (True = present)
and returns ``(B, out_dim)``. Conventions shared by every fusion:

- A missing modality contributes nothing: its input rows are never used as data (they are
  replaced before any computation, so their values cannot change the output).
- A sample with every modality missing gets the learned "no data" vector ``no_data`` (out_dim,).
- Token inputs are masked-mean pooled to one vector, unless the fusion consumes tokens
  (``cross_transformer``).
- ``modality_names`` is the modality order (the order of ``in_dims``) used by weights such as
  ``last_weights`` (B, M).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import nn

from multimodal.encoders.base import masked_mean
from multimodal.exceptions import ConfigError, MissingModalityError
from multimodal.registry import Registry
from multimodal.types import TokenSet

__all__ = ["FUSIONS", "Fusion", "modality_dropout"]

#: Fusion classes by name (``"concat"``, ``"late"``, ``"kronecker"``, ``"attention_gated"``, ...).
FUSIONS: Registry[type[Fusion]] = Registry("fusion")


class Fusion(nn.Module):
    """Base class of the fusion modules.

    Parameters
    ----------
    in_dims : modality name -> embedding size (token size for token inputs).
    out_dim : size of the fused representation.
    token_inputs : modalities whose encoder returns a ``TokenSet``.
    dropout : dropout rate used by the subclass.

    Attributes
    ----------
    modality_names : list[str], the modality order.
    no_data : Parameter (out_dim,), the output for a sample without any modality.
    last_weights : (B, M) modality weights of the last call, for fusions that have them.
    """

    consumes_tokens: ClassVar[bool] = False

    def __init__(
        self,
        in_dims: Mapping[str, int],
        out_dim: int,
        token_inputs: set[str] | frozenset[str] = frozenset(),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not in_dims:
            raise ConfigError("a fusion needs at least one modality (in_dims is empty)")
        self.modality_names = [str(m) for m in in_dims]
        self.in_dims = {str(m): int(d) for m, d in in_dims.items()}
        self.out_dim, self.dropout_p = int(out_dim), float(dropout)
        unknown = set(token_inputs) - set(self.in_dims)
        if unknown:
            raise ConfigError(
                f"token_inputs {sorted(unknown)} are not in in_dims {self.modality_names}"
            )
        self.token_inputs = frozenset(token_inputs)
        self.no_data = nn.Parameter(torch.zeros(self.out_dim))
        self.last_weights: torch.Tensor | None = None

    def _present(
        self, embeddings: Mapping[str, object], mask: Mapping[str, torch.Tensor]
    ) -> torch.Tensor:
        """Stack the masks in ``modality_names`` order -> (B, M) bool."""
        absent = [m for m in self.modality_names if m not in embeddings or m not in mask]
        if absent:
            raise MissingModalityError(
                f"fusion input lacks modalities {absent} (embeddings and mask need every one of "
                f"{self.modality_names}; mark a missing modality with mask False)"
            )
        return torch.stack([mask[m].bool().reshape(-1) for m in self.modality_names], dim=1)

    def _vector(self, name: str, x: torch.Tensor | TokenSet, present: torch.Tensor) -> torch.Tensor:
        """(B, D) vector of modality ``name``: token sets pooled, missing rows set to 0 (never used
        as data: callers replace or mask them)."""
        if isinstance(x, TokenSet):
            x = masked_mean(x.tokens.float(), x.mask.bool())
        return x.float().masked_fill(~present.unsqueeze(-1), 0.0)

    def _stack_projected(
        self,
        modules: Mapping[str, nn.Module],
        embeddings: Mapping[str, torch.Tensor | TokenSet],
        present: torch.Tensor,
    ) -> torch.Tensor:
        """(B, M, D): ``modules[m]`` applied to each modality's vector, in ``modality_names`` order."""
        return torch.stack(
            [
                modules[m](self._vector(m, embeddings[m], present[:, j]))
                for j, m in enumerate(self.modality_names)
            ],
            dim=1,
        )

    def _finish(self, fused: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Replace the rows of samples without any modality by the learned ``no_data`` vector."""
        anything = present.any(dim=1, keepdim=True)
        return torch.where(anything, fused, self.no_data.to(fused.dtype).expand_as(fused))


def modality_dropout(
    mask: Mapping[str, torch.Tensor], p: float, generator: torch.Generator | None = None
) -> dict[str, torch.Tensor]:
    """Hide each present modality of each sample with probability ``p`` (training augmentation).

    A sample never loses its last present modality: when every present one is drawn, one of them
    (chosen at random) is kept. Missing modalities stay missing.

    Parameters
    ----------
    mask : modality -> (B,) bool, True = present.
    p : drop probability in [0, 1).
    generator : optional ``torch.Generator`` for reproducibility (on the masks' device).

    Returns
    -------
    dict modality -> (B,) bool, a new mask (inputs are not modified).
    """
    if not 0.0 <= p < 1.0:
        raise ConfigError(f"modality dropout p must be in [0, 1), got {p}")
    names = list(mask)
    if p == 0.0 or not names:
        return {m: v.bool().clone() for m, v in mask.items()}
    present = torch.stack([mask[m].bool().reshape(-1) for m in names], dim=1)
    u = torch.rand(present.shape, generator=generator, device=present.device)
    kept = present & (u >= p)
    lost_all = present.any(dim=1) & ~kept.any(dim=1)
    if lost_all.any():
        pick = torch.rand(present.shape, generator=generator, device=present.device)
        pick = pick.masked_fill(~present, -1.0).argmax(dim=1)
        rescue = nn.functional.one_hot(pick, len(names)).bool() & lost_all.unsqueeze(1)
        kept = kept | rescue
    return {m: kept[:, j].clone() for j, m in enumerate(names)}
