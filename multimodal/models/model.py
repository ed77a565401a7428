"""The multimodal survival network: per-modality encoders -> fusion -> survival head.

No training code here: :mod:`multimodal.training` fits it, :mod:`multimodal.models.run` reloads it.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from multimodal.config import EncoderConfig, FusionConfig, HeadConfig
from multimodal.exceptions import MissingModalityError
from multimodal.types import Batch, InputSpec

__all__ = ["DEFAULT_ENCODERS", "MultimodalSurvivalModel", "spec_from_dict"]

#: Encoder used for a modality kind when the config names none.
DEFAULT_ENCODERS: dict[str, str] = {
    "clinical": "clinical_mlp",
    "genomics": "snn",
    "text": "text_mlp",
    "imaging": "small_cnn",
    "feature_bag": "attention_mil",
}


def spec_from_dict(d: dict[str, Any]) -> InputSpec:
    d = dict(d)
    if d.get("image_size") is not None:
        d["image_size"] = tuple(d["image_size"])
    return InputSpec(**d)


class MultimodalSurvivalModel(nn.Module):
    """Encoders + fusion + head, with an optional linear clinical path.

    Parameters
    ----------
    specs : modality name -> InputSpec (from the fitted preprocessing).
    encoders : modality name -> EncoderConfig.
    fusion : FusionConfig.
    head : HeadConfig.
    cuts : time grid for discrete-time heads (None for Cox).
    clinical_modality : name of the clinical modality that feeds the linear path (None = no path).

    Notes
    -----
    On real cohorts clinical covariates alone are strong predictors. With ``fusion.clinical_linear``
    the head output is ``head(fusion(...)) + w . x_clinical``: a Cox-like linear clinical term plus
    what the other modalities add beyond it. It applies to heads whose outputs shift risk
    monotonically under a per-patient offset (``head.supports_offset``: Cox, logistic hazard).
    """

    def __init__(
        self,
        specs: dict[str, InputSpec],
        encoders: dict[str, EncoderConfig],
        fusion: FusionConfig,
        head: HeadConfig,
        cuts: list[float] | None = None,
        clinical_modality: str | None = None,
    ) -> None:
        super().__init__()
        from multimodal.encoders import ENCODERS
        from multimodal.fusion import FUSIONS
        from multimodal.survival.heads import HEADS

        self.modalities = list(specs)
        self.specs = specs
        self.encoders = nn.ModuleDict(
            {
                m: ENCODERS.get(encoders[m].name).from_spec(
                    specs[m], encoders[m].out_dim, **encoders[m].options
                )
                for m in self.modalities
            }
        )
        in_dims = {m: int(enc.out_dim) for m, enc in self.encoders.items()}
        token_inputs = {
            m for m, enc in self.encoders.items() if getattr(enc, "returns_tokens", False)
        }
        self.fusion = FUSIONS.get(fusion.name)(
            in_dims, fusion.dim, token_inputs=token_inputs, dropout=fusion.dropout, **fusion.options
        )
        head_options = dict(head.options)
        if head.name == "cox":
            head_options.setdefault("ties", head.ties)
        if cuts is not None:
            head_options["cuts"] = list(cuts)
        self.head = HEADS.get(head.name)(fusion.dim, **head_options)
        self.modality_dropout_p = float(fusion.modality_dropout)
        self.clinical_modality = None
        if (
            clinical_modality in specs
            and getattr(self.head, "supports_offset", False)
            and fusion.clinical_linear
        ):
            spec = specs[clinical_modality]
            n_lin = spec.n_numeric + sum(spec.cardinalities)
            if n_lin > 0:
                self.clinical_modality = clinical_modality
                self.clinical_linear = nn.Linear(n_lin, 1, bias=False)
                nn.init.zeros_(self.clinical_linear.weight)

    # ------------------------------------------------------------------ forward
    def _clinical_design(self, x: dict[str, torch.Tensor]) -> torch.Tensor:
        spec = self.specs[self.clinical_modality]
        parts = []
        if spec.n_numeric:
            parts.append(x["numeric"].float())
        for j, card in enumerate(spec.cardinalities):
            parts.append(nn.functional.one_hot(x["categorical"][:, j].long(), card).float())
        return torch.cat(parts, dim=1)

    def forward(self, batch: Batch) -> torch.Tensor:
        """Head outputs for a batch: (B,) risk for Cox, (B, T) logits for discrete heads."""
        missing = [m for m in self.modalities if m not in batch.inputs]
        if missing:
            raise MissingModalityError(
                f"batch lacks modalities {missing}; the model was built for {self.modalities}"
            )
        mask = {m: batch.mask[m] for m in self.modalities}
        if self.training and self.modality_dropout_p > 0:
            from multimodal.fusion import modality_dropout

            mask = modality_dropout(mask, self.modality_dropout_p)
        embeddings = {m: self.encoders[m](batch.inputs[m]) for m in self.modalities}
        outputs = self.head(self.fusion(embeddings, mask))
        if self.clinical_modality is not None:
            m = self.clinical_modality
            offset = self.clinical_linear(self._clinical_design(batch.inputs[m])).squeeze(-1)
            offset = offset * batch.mask[m].to(offset.dtype)  # the true mask: no dropout on it
            outputs = outputs + (offset if outputs.dim() == 1 else offset.unsqueeze(-1))
        return outputs

    def describe(self) -> dict[str, Any]:
        return {
            "modalities": self.modalities,
            "specs": {m: asdict(s) for m, s in self.specs.items()},
            "clinical_modality": self.clinical_modality,
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
        }
