"""The multimodal survival network: per-modality encoders -> fusion -> survival head.

No training code here: :mod:`multimodal.training` fits it, :mod:`multimodal.models.run` reloads it.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from multimodal.config import EncoderConfig, FusionConfig, HeadConfig, resolve_head_name
from multimodal.exceptions import ConfigError, MissingModalityError
from multimodal.types import Batch, InputSpec

__all__ = ["DEFAULT_ENCODERS", "LINEAR_KINDS", "MultimodalSurvivalModel", "spec_from_dict"]

#: Modality kinds that ``fusion.linear_modalities`` accepts (one dense feature vector per patient).
LINEAR_KINDS = ("genomics", "text", "imaging")

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
    endpoint : the config's endpoint; progression endpoints build their variant of ``head.name``
        (:func:`multimodal.config.resolve_head_name`, e.g. ``cox`` -> ``multitask_cox``).

    Notes
    -----
    On real cohorts clinical covariates alone are strong predictors. With ``fusion.clinical_linear``
    the head output is ``head(fusion(...)) + w . x_clinical``: a Cox-like linear clinical term plus
    what the other modalities add beyond it. It applies to heads whose outputs shift risk
    monotonically under a per-patient offset (``head.supports_offset``: Cox, logistic hazard);
    heads with one Cox risk per task / cause / transition (``head.n_offsets > 1``) get one linear
    clinical term per output column.
    """

    def __init__(
        self,
        specs: dict[str, InputSpec],
        encoders: dict[str, EncoderConfig],
        fusion: FusionConfig,
        head: HeadConfig,
        cuts: list[float] | None = None,
        clinical_modality: str | None = None,
        endpoint: str = "os",
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
        head_cls = HEADS.get(resolve_head_name(endpoint, head.name))
        if "ties" in inspect.signature(head_cls).parameters:
            head_options.setdefault("ties", head.ties)
        if cuts is not None:
            head_options["cuts"] = list(cuts)
        self.head = head_cls(fusion.dim, **head_options)
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
                n_out = int(getattr(self.head, "n_offsets", 1))
                self.clinical_linear = nn.Linear(n_lin, n_out, bias=False)
                nn.init.zeros_(self.clinical_linear.weight)
        # ridge-penalised linear terms of tabular modalities, beside the clinical one
        self.omics_linear = nn.ModuleDict()
        if self.clinical_modality is not None:
            for m in fusion.linear_modalities:
                spec = specs.get(m)
                if spec is None:  # not used in this run (e.g. a single-modality model)
                    continue
                if spec.tokens or not spec.in_features or spec.kind not in LINEAR_KINDS:
                    raise ConfigError(
                        f"fusion.linear_modalities: {m!r} ({spec.kind}"
                        f"{', token sets' if spec.tokens else ''}) cannot get a linear term; "
                        "it takes one feature vector per patient (genomics, text with a "
                        "pooled-embedding encoder such as text_mlp, or frozen image embeddings "
                        "with image_embedding). Remove it from the list."
                    )
                n_in = int(spec.in_features)
                if fusion.linear_group_means and spec.kind == "genomics" and spec.groups:
                    # the linear term sees one score per group (the mean of its z-scored features)
                    avg = torch.zeros(n_in, len(spec.groups))
                    for j, cols in enumerate(spec.groups):
                        if cols:
                            avg[list(cols), j] = 1.0 / len(cols)
                    self.register_buffer(f"linear_group_mean_{m}", avg)
                    n_in = len(spec.groups)
                layer = nn.Linear(n_in, self.clinical_linear.out_features, bias=False)
                nn.init.zeros_(layer.weight)
                self.omics_linear[m] = layer

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
            offset = self.clinical_linear(self._clinical_design(batch.inputs[m]))
            offset = offset * batch.mask[m].to(offset.dtype).unsqueeze(-1)  # true mask, no dropout
            if offset.shape[-1] == 1:  # one offset, shared by every output column
                offset = offset.squeeze(-1)
                outputs = outputs + (offset if outputs.dim() == 1 else offset.unsqueeze(-1))
            else:  # one offset per output column (task, cause or transition)
                outputs = outputs + offset
            outputs = outputs + self._omics_offset(batch, outputs)
        return outputs

    def linear_design(self, batch: Batch) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Inputs of the linear paths: modality -> (design (B, p) float, presence (B,) float)."""
        out = {}
        if self.clinical_modality is not None:
            m = self.clinical_modality
            out[m] = (self._clinical_design(batch.inputs[m]), batch.mask[m].float())
        for m in self.omics_linear:
            out[m] = (self._linear_input(batch, m), batch.mask[m].float())
        return out

    def _linear_input(self, batch: Batch, m: str) -> torch.Tensor:
        """Design of modality ``m``'s linear term: its features, or its group means."""
        x = batch.inputs[m].float().reshape(batch.inputs[m].shape[0], -1)
        avg = getattr(self, f"linear_group_mean_{m}", None)
        return x @ avg if avg is not None else x

    def _omics_offset(self, batch: Batch, outputs: torch.Tensor) -> torch.Tensor | float:
        total: torch.Tensor | float = 0.0
        for m, layer in self.omics_linear.items():
            x = self._linear_input(batch, m)
            off = layer(x) * batch.mask[m].to(x.dtype).unsqueeze(-1)
            if off.shape[-1] == 1:
                off = off.squeeze(-1)
                off = off if outputs.dim() == 1 else off.unsqueeze(-1)
            total = total + off
        return total

    def describe(self) -> dict[str, Any]:
        return {
            "modalities": self.modalities,
            "specs": {m: asdict(s) for m, s in self.specs.items()},
            "clinical_modality": self.clinical_modality,
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
        }
