"""Linear members of a model: a penalised Cox term on one modality's features.

A model's output is the deep fusion residual plus one :class:`LinearMember` per modality named in
the config's ``members`` block (the clinical covariates, and genomics / pooled report embeddings /
frozen image embeddings). Each member owns its design matrix (:meth:`LinearMember.design`) and
its coefficients; the combiner (:mod:`multimodal.training.combine`) fits them on the training
patients, and the model adds their outputs to the head's (:class:`~.model.MultimodalSurvivalModel`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from multimodal.encoders.clinical import linear_inputs
from multimodal.exceptions import ConfigError
from multimodal.types import InputSpec

__all__ = ["LINEAR_KINDS", "LinearMember"]

#: Modality kinds that may get a linear member (one dense feature vector per patient), besides
#: the clinical covariates; a longitudinal member is the classical landmark model's "last value
#: + slope" Cox term.
LINEAR_KINDS = ("genomics", "text", "imaging", "longitudinal")


class LinearMember(nn.Module):
    """A linear Cox term on one modality: ``design(x) @ W.T``, zero where the modality is missing.

    Parameters
    ----------
    modality : the modality's name in the cohort.
    spec : its :class:`~multimodal.types.InputSpec` (from the fitted preprocessing).
    n_outputs : columns of the term (1, or one per task / cause / transition of the head).
    group_means : for a grouped genomics table, one score per group (the mean of its z-scored
        features) instead of every feature.

    Notes
    -----
    The clinical design is ``[numeric, one-hot(level) per categorical]``
    (:func:`multimodal.encoders.clinical.linear_inputs`); level 0 is "unknown", which the
    preprocessing assigns to missing values and to levels not seen in training (it warns about
    those by column and patient). Other kinds use their feature vector as it is.
    """

    def __init__(
        self, modality: str, spec: InputSpec, n_outputs: int = 1, group_means: bool = False
    ) -> None:
        super().__init__()
        self.modality, self.kind = modality, spec.kind
        if spec.kind == "clinical":
            self.cardinalities = list(spec.cardinalities)
            n_in = spec.n_numeric + sum(spec.cardinalities)
        else:
            if spec.tokens or not spec.in_features or spec.kind not in LINEAR_KINDS:
                raise ConfigError(
                    f"members.linear: {modality!r} ({spec.kind}"
                    f"{', token sets' if spec.tokens else ''}) cannot get a linear term; it takes "
                    "one feature vector per patient (genomics, text with a pooled-embedding encoder "
                    "such as text_mlp, or frozen image embeddings with image_embedding). Remove it "
                    "from members.linear."
                )
            n_in = int(spec.in_features)
            if group_means and spec.kind == "genomics" and spec.groups:
                avg = torch.zeros(n_in, len(spec.groups))
                for j, cols in enumerate(spec.groups):
                    if cols:
                        avg[list(cols), j] = 1.0 / len(cols)
                self.register_buffer("group_mean", avg)
                n_in = len(spec.groups)
        self.linear = nn.Linear(n_in, int(n_outputs), bias=False)
        nn.init.zeros_(self.linear.weight)

    @property
    def weight(self) -> torch.Tensor:
        """(n_outputs, p) coefficients."""
        return self.linear.weight

    def design(self, x: Any) -> torch.Tensor:
        """(B, p) float design matrix of the modality's input ``x`` (a batch's ``inputs[m]``)."""
        if self.kind == "clinical":
            return linear_inputs(x, self.cardinalities)
        if self.kind == "longitudinal":  # the landmark summary (last values, slopes, ...)
            return x["summary"].float()
        x = x.float().reshape(x.shape[0], -1)
        avg = getattr(self, "group_mean", None)
        return x @ avg if avg is not None else x

    def forward(self, x: Any, present: torch.Tensor) -> torch.Tensor:
        """(B, n_outputs) contribution; rows where ``present`` is False contribute 0."""
        design = self.design(x)
        return self.linear(design) * present.to(design.dtype).unsqueeze(-1)
