"""Encoders of irregular visit sequences (the ``longitudinal`` modality).

Input: the dict a :class:`~multimodal.training.pipelines_longitudinal.LongitudinalPipeline`
produces -- ``values``/``observed`` (B, N, V), ``before``/``gap`` (B, N) on the landmark's time
scale, ``visits`` (B, N) and the landmark ``summary`` (B, F). Each visit becomes the vector
``[values, observed, before, gap]``: unmeasured values are 0 and flagged by ``observed`` (the
mask), and the time since the previous visit and before the landmark carry the irregular timing.

- ``longitudinal_gru`` / ``longitudinal_lstm``: a recurrent network over the visits in time order
  (packed, so padding never enters); its last state.
- ``longitudinal_transformer``: self-attention over the visits with a continuous-time encoding
  (sinusoids of the time before the landmark, not of the visit's position), mean-pooled.
- ``longitudinal_mlp``: the landmark summary alone.

Every variant concatenates the sequence state with the landmark summary and maps it to
``out_dim`` with an MLP. A row without any visit (nothing measured before its landmark) has a
zero sequence state.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import nn

from multimodal.encoders.base import ENCODERS, Encoder, make_mlp, masked_mean

__all__ = [
    "LongitudinalMLPEncoder",
    "LongitudinalRNNEncoder",
    "LongitudinalTransformerEncoder",
    "time_encoding",
]


def time_encoding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Continuous-time sinusoidal encoding of times ``t`` (B, N) -> (B, N, dim)."""
    half = max(1, dim // 2)
    freq = torch.exp(torch.arange(half, device=t.device, dtype=t.dtype) * (-math.log(100.0) / half))
    angle = t.unsqueeze(-1) * freq
    out = torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)
    return (
        out[..., :dim] if out.shape[-1] >= dim else nn.functional.pad(out, (0, dim - out.shape[-1]))
    )


def _visit_features(x: dict[str, torch.Tensor]) -> torch.Tensor:
    values = x["values"].float()
    return torch.cat(
        [
            values,
            x["observed"].to(values.dtype),
            x["before"].float().unsqueeze(-1),
            x["gap"].float().unsqueeze(-1),
        ],
        dim=-1,
    )


class _SequenceEncoder(Encoder):
    spec_fields: ClassVar[dict[str, str]] = {
        "n_variables": "n_variables",
        "in_features": "n_summary",
    }

    def __init__(
        self,
        n_variables: int,
        n_summary: int,
        out_dim: int = 32,
        hidden: int = 32,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.n_variables, self.n_summary, self.out_dim = (
            int(n_variables),
            int(n_summary),
            int(out_dim),
        )
        self.hidden = int(hidden)
        self.head = make_mlp(self.hidden + self.n_summary, (self.hidden,), self.out_dim, dropout)

    def sequence_state(self, x: dict[str, torch.Tensor]) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        """x: the longitudinal inputs -> (B, out_dim)."""
        state = self.sequence_state(x)
        return self.head(torch.cat([state, x["summary"].float()], dim=-1))


class LongitudinalRNNEncoder(_SequenceEncoder):
    """GRU or LSTM over the visits (in time order); the last state of each row's real visits."""

    cell: ClassVar[type[nn.Module]] = nn.GRU

    def __init__(self, n_variables, n_summary, out_dim=32, hidden=32, dropout=0.1, layers=1):
        super().__init__(n_variables, n_summary, out_dim, hidden, dropout)
        self.rnn = self.cell(
            2 * self.n_variables + 2, self.hidden, num_layers=int(layers), batch_first=True
        )

    def sequence_state(self, x):
        feats = _visit_features(x)
        lengths = x["visits"].sum(1)
        state = feats.new_zeros(feats.shape[0], self.hidden)
        rows = torch.nonzero(lengths > 0).flatten()
        if len(rows):
            packed = nn.utils.rnn.pack_padded_sequence(
                feats[rows], lengths[rows].cpu(), batch_first=True, enforce_sorted=False
            )
            _, h = self.rnn(packed)
            h = h[0] if isinstance(h, tuple) else h
            state = state.index_copy(0, rows, h[-1].to(state.dtype))
        return state


@ENCODERS.register("longitudinal_gru")
class LongitudinalGRUEncoder(LongitudinalRNNEncoder):
    """GRU over the visit sequence + the landmark summary."""

    cell = nn.GRU


@ENCODERS.register("longitudinal_lstm")
class LongitudinalLSTMEncoder(LongitudinalRNNEncoder):
    """LSTM over the visit sequence + the landmark summary."""

    cell = nn.LSTM


@ENCODERS.register("longitudinal_transformer")
class LongitudinalTransformerEncoder(_SequenceEncoder):
    """Self-attention over the visits, with a continuous-time encoding of the time before the
    landmark; padding is masked; masked mean over real visits."""

    def __init__(
        self, n_variables, n_summary, out_dim=32, hidden=32, dropout=0.1, layers=1, heads=2
    ):
        super().__init__(n_variables, n_summary, out_dim, hidden, dropout)
        self.embed = nn.Linear(2 * self.n_variables + 2, self.hidden)
        layer = nn.TransformerEncoderLayer(
            self.hidden, int(heads), 2 * self.hidden, dropout, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, int(layers), enable_nested_tensor=False)

    def sequence_state(self, x):
        visits = x["visits"]
        h = self.embed(_visit_features(x)) + time_encoding(x["before"].float(), self.hidden)
        any_visit = visits.any(1)
        # rows without visits attend to their first (padding) slot so that attention stays finite
        key_mask = visits.clone()
        key_mask[~any_visit, 0] = True
        h = self.encoder(h, src_key_padding_mask=~key_mask)
        return masked_mean(h, visits) * any_visit.unsqueeze(-1).to(h.dtype)


@ENCODERS.register("longitudinal_mlp")
class LongitudinalMLPEncoder(Encoder):
    """MLP over the landmark summary only (last values, slopes, ...)."""

    spec_fields: ClassVar[dict[str, str]] = {"in_features": "n_summary"}

    def __init__(self, n_summary: int, out_dim: int = 32, hidden=(32,), dropout: float = 0.1):
        super().__init__()
        self.out_dim = int(out_dim)
        self.net = make_mlp(int(n_summary), hidden, self.out_dim, dropout)

    def forward(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(x["summary"].float())
