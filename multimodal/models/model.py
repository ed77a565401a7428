"""The multimodal survival network: linear members plus the deep residual (encoders -> fusion ->
head).

No training code here: :mod:`multimodal.training` fits it, :mod:`multimodal.models.run` reloads it.
"""

from __future__ import annotations

import inspect
import logging
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from multimodal.config import (
    CUMULATIVE_FORMS,
    EncoderConfig,
    FusionConfig,
    HeadConfig,
    MembersConfig,
    resolve_head_name,
)
from multimodal.console import warn_once
from multimodal.encoders import ENCODERS
from multimodal.exceptions import ConfigError, MissingModalityError
from multimodal.fusion import FUSIONS, modality_dropout
from multimodal.models.members import LINEAR_KINDS, LinearMember
from multimodal.models.tree_terms import TREE_INPUT_KINDS, TreeTerms
from multimodal.registry import did_you_mean
from multimodal.survival.heads import HEADS
from multimodal.types import Batch, InputSpec

__all__ = [
    "DEFAULT_ENCODERS",
    "LINEAR_KINDS",
    "MultimodalSurvivalModel",
    "spec_from_dict",
    "upgrade_state_dict",
]

log = logging.getLogger(__name__)

#: Encoder used for a modality kind when the config names none.
DEFAULT_ENCODERS: dict[str, str] = {
    "clinical": "clinical_mlp",
    "genomics": "snn",
    "text": "text_mlp",
    "imaging": "small_cnn",
    "feature_bag": "attention_mil",
    "longitudinal": "longitudinal_gru",
}


def spec_from_dict(d: dict[str, Any]) -> InputSpec:
    d = dict(d)
    if d.get("image_size") is not None:
        d["image_size"] = tuple(d["image_size"])
    return InputSpec(**d)


def upgrade_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Weights saved before linear members existed, with their keys renamed to the current ones.

    ``omics_linear.<m>.weight`` becomes ``members.<m>.linear.weight`` and
    ``linear_group_mean_<m>`` becomes ``members.<m>.group_mean``. The old key of the clinical term,
    ``clinical_linear.weight``, does not name its modality: the model renames it when it loads
    (:meth:`MultimodalSurvivalModel._upgrade_keys`). Current keys are returned unchanged.
    """
    out = {}
    for key, value in state.items():
        if key.startswith("omics_linear."):
            m = key[len("omics_linear.") :].rsplit(".", 1)[0]
            key = f"members.{m}.linear.weight"
        elif key.startswith("linear_group_mean_"):
            key = f"members.{key[len('linear_group_mean_') :]}.group_mean"
        out[key] = value
    return out


class MultimodalSurvivalModel(nn.Module):
    """Linear members + the deep residual (encoders -> fusion -> head).

    Parameters
    ----------
    specs : modality name -> InputSpec (from the fitted preprocessing).
    encoders : modality name -> EncoderConfig.
    fusion : FusionConfig.
    head : HeadConfig.
    members : MembersConfig: which linear members exist (``clinical``, ``linear``).
    cuts : time grid for discrete-time heads (None for Cox).
    clinical_modality : name of the clinical modality (None = no clinical member).
    endpoint : the config's endpoint; progression endpoints build their variant of ``head.name``
        (:func:`multimodal.config.resolve_head_name`, e.g. ``cox`` -> ``multitask_cox``).

    Notes
    -----
    The head output is ``head(fusion(encoders(x))) + sum_m members[m](x_m)``. Linear members apply
    to heads whose outputs shift risk monotonically under a per-patient offset
    (``head.supports_offset``: Cox, logistic hazard); heads with one Cox risk per task / cause /
    transition (``head.n_offsets > 1``) get one column per output. The clinical member comes
    first; the others need it (a model without clinical covariates has no linear members).

    Attributes
    ----------
    skipped : members the config asks for that this model leaves out, each in a sentence (every
        member, for a head without a risk offset; tree members of a head with several outputs).
        Training logs them once; loading a run does not.
    """

    def __init__(
        self,
        specs: dict[str, InputSpec],
        encoders: dict[str, EncoderConfig],
        fusion: FusionConfig,
        head: HeadConfig,
        members: MembersConfig | None = None,
        cuts: list[float] | None = None,
        clinical_modality: str | None = None,
        endpoint: str = "os",
    ) -> None:
        super().__init__()
        members = members or MembersConfig()
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
        self.members = nn.ModuleDict()
        self.clinical_modality = None
        n_out = int(getattr(self.head, "n_offsets", 1))
        clinical_spec = specs.get(clinical_modality)
        has_covariates = clinical_spec is not None and (
            clinical_spec.n_numeric + sum(clinical_spec.cardinalities) > 0
        )
        offset = bool(getattr(self.head, "supports_offset", False))
        if has_covariates and offset and members.clinical:
            self.clinical_modality = clinical_modality
            self.members[clinical_modality] = LinearMember(clinical_modality, clinical_spec, n_out)
        self.skipped: list[str] = []
        if has_covariates and not offset and members.clinical:
            head_name = resolve_head_name(endpoint, head.name)
            listed = {"linear": members.linear, "trees": members.trees}
            asked = ["clinical", *(f"{k} {v}" for k, v in listed.items() if v)]
            # said by the trainer (it builds the model for training); loading a run stays quiet
            self.skipped.append(
                f"members ({', '.join(asked)}) not used: the {head_name!r} head takes no linear "
                "risk offset (it predicts a distribution over time bins), so the model is the "
                "deep network alone. To keep the members, use a head that takes one (cox or "
                "logistic_hazard; for competing risks, cause_specific_cox); to silence "
                "this, set members.clinical: false"
            )
            log.debug("%s", self.skipped[-1])
        if self.clinical_modality is not None:
            for m in members.linear:
                if m in specs and m not in self.members:  # absent: not used in this run
                    self.members[m] = LinearMember(
                        m,
                        specs[m],
                        n_out,
                        members.group_means,
                        modifier=self._modifier(
                            m,
                            members,
                            specs[clinical_modality],
                            n_out,
                            bool(getattr(self.head, "partial_likelihood", False)),
                            resolve_head_name(endpoint, head.name),
                        ),
                        components=members.interaction_components,
                        modifier_name=members.interactions.get(m),
                        column_blocks=members.column_blocks.get(m),
                        form=members.interaction_form,
                    )
        sparse = sorted(m for m in members.elastic_net if m in self.members)
        partial_likelihood = bool(getattr(self.head, "partial_likelihood", False))
        if sparse and (n_out != 1 or not partial_likelihood):
            raise ConfigError(
                f"members.elastic_net names {sparse}: the elastic-net paths are fitted by the "
                "stacked combiner for one Cox risk (a head with a partial likelihood and one "
                f"output); this run's head {resolve_head_name(endpoint, head.name)!r} has "
                f"{n_out} output(s){'' if partial_likelihood else ' and no partial likelihood'}. "
                "Remove members.elastic_net (the members then take ridge penalties), or use "
                "head.name: cox with a single-risk endpoint (os, pfs or dss)"
            )
        self.trees = self._tree_terms(specs, members, n_out, endpoint)
        self._register_load_state_dict_pre_hook(self._upgrade_keys)

    @staticmethod
    def _modifier(
        m: str,
        members: MembersConfig,
        clinical: InputSpec,
        n_out: int = 1,
        partial_likelihood: bool = True,
        head_name: str = "cox",
    ) -> tuple[int, int] | None:
        """``(index, levels)`` of the clinical categorical that modifies ``m``'s linear member
        (``members.interactions``); None without one. A column the cohort does not have (GBMLGG
        has no stage) leaves the member without products, with a warning -- as ``members.linear``
        skips a modality the cohort lacks -- so one config serves every cohort."""
        column = members.interactions.get(m)
        if column is None:
            return None
        names = list(clinical.categorical_names or [])
        if column not in names:
            warn_once(
                log,
                f"members.interactions: {m!r} is paired with clinical column {column!r}, which "
                f"is not among this cohort's categorical clinical covariates {names}; the "
                f"{m!r} term gets no products.{did_you_mean(column, names)}",
            )
            return None
        j = names.index(column)
        levels = int(clinical.cardinalities[j])
        form = members.interaction_form
        if form in CUMULATIVE_FORMS:
            if n_out != 1 or not partial_likelihood:
                raise ConfigError(
                    f"members.interaction_form: {form} products are fitted by the stacked "
                    "combiner for one Cox risk (a head with a partial likelihood and one "
                    f"output); this run's head {head_name!r} has {n_out} output(s)"
                    f"{'' if partial_likelihood else ' and no partial likelihood'}. Use "
                    "members.interaction_form: components, or head.name: cox with a "
                    "single-risk endpoint (os, pfs or dss)"
                )
            if levels <= 2:
                warn_once(
                    log,
                    f"members.interactions: {column!r} has {levels - 1} known level(s) in the "
                    f"training patients, so {m!r} gets no cumulative products"
                    + ("; it keeps the component products" if form == "both" else ""),
                )
                if form == "cumulative":
                    return None
        return j, levels

    def _tree_terms(
        self, specs: dict[str, InputSpec], members: MembersConfig, n_out: int, endpoint: str
    ) -> TreeTerms | None:
        """The tree members (``members.trees``): single-output Cox-type heads only."""
        if not members.trees or self.clinical_modality is None:
            return None
        if n_out != 1:
            # said by the trainer (it builds the model for training); loading a run stays quiet
            self.skipped.append(
                f"members.trees {members.trees} skipped: the {endpoint!r} endpoint's head has "
                f"{n_out} outputs, and tree members are fitted for one Cox risk"
            )
            log.debug("%s", self.skipped[-1])
            return None
        inputs = []
        for m in members.tree_inputs:
            if m not in specs or m == self.clinical_modality:
                continue
            spec = specs[m]
            if spec.tokens or not spec.in_features or spec.kind not in TREE_INPUT_KINDS:
                raise ConfigError(
                    f"members.tree_inputs: {m!r} ({spec.kind}) cannot feed the tree members; "
                    "they take one feature vector per patient (genomics, or text with a pooled "
                    "encoder such as text_mlp). Remove it from members.tree_inputs."
                )
            inputs.append(m)
        return TreeTerms(inputs, list(members.trees), list(members.tree_scores))

    def _upgrade_keys(self, state_dict, prefix, *args, **kwargs) -> None:
        """Load weights saved before linear members existed (see :func:`upgrade_state_dict`)."""
        old = f"{prefix}clinical_linear.weight"
        if old in state_dict and self.clinical_modality is not None:
            state_dict[f"{prefix}members.{self.clinical_modality}.linear.weight"] = state_dict.pop(
                old
            )
        for key in [k for k in state_dict if k.startswith(prefix)]:
            new = prefix + next(iter(upgrade_state_dict({key[len(prefix) :]: None})))
            if new != key:
                state_dict[new] = state_dict.pop(key)

    # ------------------------------------------------------------------ parts
    def embed(self, inputs: dict[str, Any], modalities: list[str] | None = None) -> dict[str, Any]:
        """Encoder outputs: modality -> (B, D) tensor or TokenSet."""
        return {m: self.encoders[m](inputs[m]) for m in modalities or self.modalities}

    @property
    def member_modalities(self) -> list[str]:
        """Modalities whose raw inputs the linear and tree members read."""
        tree = list(self.trees.inputs) if self.trees is not None else []
        return list(dict.fromkeys([*self.members, *tree]))

    def linear_designs(
        self, inputs: dict[str, Any], mask: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Inputs of the linear members: block -> (design (B, p) float, presence (B,) float). A
        block is a member's modality, or ``<modality>*<column>`` (and ``<modality>*<column>>=k``)
        for its products with a clinical modifier (:attr:`LinearMember.blocks`)."""
        out = {}
        for m, lm in self.members.items():
            present = mask[m].float()
            blocks = lm.design_blocks(inputs[m], *self._clinical_of(lm, inputs, mask))
            out.update({name: (block, present) for name, block in blocks.items()})
        return out

    def _clinical_of(self, lm: LinearMember, inputs: dict[str, Any], mask: dict[str, Any]):
        """What a member with a clinical modifier also reads: (clinical input, its mask)."""
        if lm.modifier is None:
            return None, None
        c = self.clinical_modality
        return inputs[c], mask[c]

    def member_outputs(
        self, inputs: dict[str, Any], mask: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Each linear member's contribution: modality -> (B, n_outputs)."""
        return {
            m: lm(inputs[m], mask[m], *self._clinical_of(lm, inputs, mask))
            for m, lm in self.members.items()
        }

    def fusion_mask(self, mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The modalities the fusion sees: ``mask``, with modality dropout while training (a
        present modality is hidden at random, never a sample's last one)."""
        fused = {m: mask[m] for m in self.modalities}
        if self.training and self.modality_dropout_p > 0:
            fused = modality_dropout(fused, self.modality_dropout_p)
        return fused

    def combine(
        self,
        embeddings: dict[str, Any],
        inputs: dict[str, Any],
        mask: dict[str, torch.Tensor],
        fused_mask: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Head outputs from encoder outputs (deep residual) and raw inputs (linear members).

        ``mask`` (modality -> (B,) bool, False = missing or hidden) applies to both parts;
        ``fused_mask`` (default :meth:`fusion_mask` of ``mask``) is what the fusion sees, so that
        modality dropout hides modalities from the fusion, never from the linear members.
        Explanations call this with precomputed ``embeddings`` and a mask that hides modalities,
        so a hidden modality loses its deep and its linear share alike.
        """
        if fused_mask is None:
            fused_mask = self.fusion_mask(mask)
        outputs = self.head(self.fusion(embeddings, fused_mask))
        total: torch.Tensor | float = 0.0
        for j, offset in enumerate(self.member_outputs(inputs, mask).values()):
            if offset.shape[-1] == 1:  # one column, shared by every output column
                offset = offset.squeeze(-1)
                offset = offset if outputs.dim() == 1 else offset.unsqueeze(-1)
            if j == 0:  # the clinical member
                outputs = outputs + offset
            else:
                total = total + offset
        if self.trees is not None and self.trees.fitted:
            clinical = self.clinical_modality
            design = self.members[clinical].design(inputs[clinical])
            design = design * mask[clinical].to(design.dtype)[:, None]
            tree = self.trees(design, inputs, mask).to(outputs.dtype)
            total = total + (tree if outputs.dim() == 1 else tree.unsqueeze(-1))
        return outputs + total if len(self.members) > 1 or self.trees is not None else outputs

    def forward(self, batch: Batch) -> torch.Tensor:
        """Head outputs for a batch: (B,) risk for Cox, (B, T) logits for discrete heads."""
        missing = [m for m in self.modalities if m not in batch.inputs]
        if missing:
            raise MissingModalityError(
                f"batch lacks modalities {missing}; the model was built for {self.modalities}"
            )
        fused_mask = self.fusion_mask(batch.mask)  # drawn before the encoders' dropout
        return self.combine(self.embed(batch.inputs), batch.inputs, batch.mask, fused_mask)

    def describe(self) -> dict[str, Any]:
        return {
            "modalities": self.modalities,
            "specs": {m: asdict(s) for m, s in self.specs.items()},
            "clinical_modality": self.clinical_modality,
            "members": list(self.members),
            "trees": list(self.trees.kinds) if self.trees is not None else [],
            "n_parameters": int(sum(p.numel() for p in self.parameters())),
        }
