"""Linear members of a model: a penalised Cox term on one modality's features.

A model's output is the deep fusion residual plus one :class:`LinearMember` per modality named in
the config's ``members`` block (the clinical covariates, and genomics / pooled report embeddings /
frozen image embeddings). Each member owns its design matrix (:meth:`LinearMember.design`) and
its coefficients; the combiner (:mod:`multimodal.training.combine`) fits them on the training
patients, and the model adds their outputs to the head's (:class:`~.model.MultimodalSurvivalModel`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from multimodal.config import COMPONENT_FORMS, CUMULATIVE_FORMS, interaction_blocks
from multimodal.console import warn_once
from multimodal.encoders.clinical import linear_inputs
from multimodal.exceptions import ConfigError
from multimodal.types import InputSpec, columns_by_suffix

__all__ = ["LINEAR_KINDS", "LinearMember", "split_by_suffix"]

log = logging.getLogger(__name__)

#: Modality kinds that may get a linear member (one dense feature vector per patient), besides
#: the clinical covariates; a longitudinal member is the classical landmark model's "last value
#: + slope" Cox term.
LINEAR_KINDS = ("genomics", "text", "imaging", "longitudinal")


def split_by_suffix(
    modality: str, names: Sequence[str], n_features: int, suffixes: Sequence[str]
) -> dict[str, list[int]]:
    """Block name -> feature indices: ``<modality>:<suffix>`` for the features named
    ``..._<suffix>`` (each suffix any feature has, in the order given), then ``<modality>`` for
    the rest (when any). Without suffixes, or names, one block holds every feature."""
    if not suffixes or len(names) != n_features:
        return {modality: list(range(n_features))}
    return {
        f"{modality}:{suffix}" if suffix else modality: idx
        for suffix, idx in columns_by_suffix(names, suffixes)
    }


_ROMAN = {"i": 1, "ii": 2, "iii": 3, "iv": 4, "v": 5}
_ORDINAL = re.compile(
    r"^(?:stage|grade)?[-_\s]*(?:y?[pc]?[gtnm])?[-_\s]*(iv|v|i{1,3}|\d+)[-_\s]*([a-e]?\d?|mi)$"
)


def _ordinal_key(level: str) -> tuple[int, str] | None:
    """``(rank, sub-level)`` of a staging or grading level (``"IIIA"``, ``"Stage IV"``,
    ``"stage_iv"``, ``"G2"``, ``"pT1b"``, ``"N1mi"``, ``"3"``); None where the level names no
    rank (``"GX"``, ``"Tis"``, ``"unknown"``, ``"high"``)."""
    m = _ORDINAL.match(str(level).strip().lower())
    if m is None:
        return None
    rank = m.group(1)
    return (int(rank) if rank.isdigit() else _ROMAN[rank], m.group(2))


def level_order_problem(column: str, levels: Sequence[str]) -> str | None:
    """Why the cumulative thresholds ``[level >= k]`` of ``column`` would be meaningless, or None.

    The thresholds follow the levels' sorted (string) order, which is the clinical order for
    stage I-IV and grade G1-G3. A level naming no rank (``"GX"``, ``"not reported"``) or a sorted
    order that is not the rank order (``"10"`` before ``"9"``) makes some threshold compare
    unlike things."""
    keys = [_ordinal_key(lv) for lv in levels]
    unranked = [lv for lv, k in zip(levels, keys, strict=True) if k is None]
    if unranked:
        return (
            f"{column!r} has level(s) {unranked} with no rank among its stages or grades, sorted "
            f"among the ranked ones ({list(levels)}), so the thresholds [{column} >= level] "
            "that pass them compare unlike things"
        )
    ranked = [k for k in keys if k is not None]
    if ranked != sorted(ranked):
        return (
            f"the levels of {column!r} in sorted order, {list(levels)}, are not in rank order, "
            "so the thresholds [level >= k] do not follow the ranks"
        )
    return None


class LinearMember(nn.Module):
    """A linear Cox term on one modality: ``design(x) @ W.T``, zero where the modality is missing.

    Parameters
    ----------
    modality : the modality's name in the cohort.
    spec : its :class:`~multimodal.types.InputSpec` (from the fitted preprocessing).
    n_outputs : columns of the term (1, or one per task / cause / transition of the head).
    group_means : for a grouped genomics table, one score per group (the mean of its z-scored
        features) instead of every feature.
    modifier : ``(j, levels)``: the design also holds the modality's ``components`` leading
        principal components times the one-hot level of the clinical categorical covariate ``j``
        (``levels`` levels, 0 = unknown) -- effect modification (``members.interactions``). The
        components are fitted by :meth:`fit_components` on training patients.
    components : number of principal components with ``modifier``.
    form : ``"components"`` (above), ``"cumulative"`` or ``"both"``. ``cumulative``: the products
        are every feature times each cumulative level indicator ``[level >= k]`` for the clinical
        column's known levels ``k = 2 .. levels - 1`` in their sorted order (stage I < II < III <
        IV: ``>= II``, ``>= III``, ``>= IV``; unknown gives 0), fitted with an elastic-net penalty
        by the stacked combiner (``members.interaction_form``); no components then. ``both``: the
        component products (block ``<modality>*<column>``) and the cumulative ones (block
        ``<modality>*<column>>=k``), each with its own penalty and stacking weight.
    column_blocks : column-name suffixes (``members.column_blocks``): the modality's features are
        cut into one block per suffix (``<modality>:<suffix>``, the columns named ``..._<suffix>``
        in ``spec.feature_names``), the rest staying in block ``<modality>``; each block gets its
        own penalty and stacked weight from the combiner.

    Notes
    -----
    The clinical design is ``[numeric, one-hot(level) per categorical]``
    (:func:`multimodal.encoders.clinical.linear_inputs`); level 0 is "unknown", which the
    preprocessing assigns to missing values and to levels not seen in training (it warns about
    those by column and patient). Other kinds use their feature vector as it is.
    """

    def __init__(
        self,
        modality: str,
        spec: InputSpec,
        n_outputs: int = 1,
        group_means: bool = False,
        modifier: tuple[int, int] | None = None,
        components: int = 0,
        modifier_name: str | None = None,
        column_blocks: Sequence[str] | None = None,
        form: str = "components",
    ) -> None:
        super().__init__()
        self.modality, self.kind = modality, spec.kind
        self.modifier = None
        self.form = form
        self.sparse_blocks: list[str] = []
        """Blocks the stacked combiner fits with an elastic-net penalty (the cumulative
        products), not a ridge one."""
        self.columns: dict[str, list[int]] = {}
        """Block name -> its columns of the design: the modality (or ``<modality>:<suffix>``
        per column type, :func:`split_by_suffix`), then ``<modality>*<column>`` for the products
        with a modifier (and ``<modality>*<column>>=k`` for the cumulative ones of ``form="both"``).
        The combiner fits each block with its own penalty."""
        if spec.kind == "clinical":
            self.cardinalities = list(spec.cardinalities)
            n_in = spec.n_numeric + sum(spec.cardinalities)
            self.columns[modality] = list(range(n_in))
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
                self.columns[modality] = list(range(n_in))
            else:
                names = list(spec.feature_names or [])
                self.columns = split_by_suffix(modality, names, n_in, column_blocks or ())
                if column_blocks and list(self.columns) == [modality]:
                    warn_once(
                        log,
                        f"members.column_blocks: no column of {modality!r} ends in any of "
                        f"{['_' + x for x in column_blocks]} (its columns: "
                        f"{names[:3] or 'unnamed'}{' ...' if len(names) > 3 else ''}); its "
                        "linear term stays one block. Check the suffixes.",
                    )
            if modifier is not None:
                mod, n_features = (int(modifier[0]), int(modifier[1])), n_in
                blocks = interaction_blocks(modality, modifier_name or mod[0], form)
                if form in COMPONENT_FORMS and components > 0:
                    self.modifier = mod
                    # (p, k) loadings scaled so that the training patients' scores have unit SD;
                    # zero until fit_components (the products are then zero)
                    self.register_buffer("loadings", torch.zeros(n_in, int(components)))
                    n_products = int(components) * mod[1]
                    self.columns[blocks[0]] = list(range(n_in, n_in + n_products))
                    n_in += n_products
                if form in CUMULATIVE_FORMS and mod[1] > 2:
                    # every feature times [level >= k], k = 2 .. levels - 1 (threshold-major)
                    self.modifier = mod
                    n_products = n_features * (mod[1] - 2)
                    self.columns[blocks[-1]] = list(range(n_in, n_in + n_products))
                    self.sparse_blocks.append(blocks[-1])
                    n_in += n_products
        self.linear = nn.Linear(n_in, int(n_outputs), bias=False)
        nn.init.zeros_(self.linear.weight)

    @property
    def blocks(self) -> list[str]:
        """Names of the design's column blocks, in the order of :attr:`columns`."""
        return list(self.columns)

    @torch.no_grad()
    def set_block_weights(self, coef: dict[str, torch.Tensor]) -> None:
        """Install each block's (n_outputs, p_block) coefficients at its columns."""
        weight = torch.zeros_like(self.linear.weight)
        for name, cols in self.columns.items():
            weight[:, cols] = coef[name].to(weight)
        self.linear.weight.copy_(weight)

    @property
    def weight(self) -> torch.Tensor:
        """(n_outputs, p) coefficients."""
        return self.linear.weight

    def _features(self, x: Any) -> torch.Tensor:
        if self.kind == "clinical":
            return linear_inputs(x, self.cardinalities)
        if self.kind == "longitudinal":  # the landmark summary (last values, slopes, ...)
            return x["summary"].float()
        x = x.float().reshape(x.shape[0], -1)
        avg = getattr(self, "group_mean", None)
        return x @ avg if avg is not None else x

    def design(
        self, x: Any, clinical: Any = None, clinical_present: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(B, p) float design matrix of the modality's input ``x`` (a batch's ``inputs[m]``).

        With a ``modifier``, ``clinical`` (the clinical input) and ``clinical_present`` give the
        level of each patient; the products are zero where the clinical covariates are missing.
        """
        features = self._features(x)
        if self.modifier is None:
            return features
        j, levels = self.modifier
        if clinical is None:
            raise ValueError(f"the linear member of {self.modality!r} needs the clinical input")
        level = clinical["categorical"][:, j].long().clamp(0, levels - 1)
        present = None if clinical_present is None else clinical_present.to(features.dtype)
        parts = [features]
        if hasattr(self, "loadings"):  # the leading components x each level (one-hot)
            onehot = nn.functional.one_hot(level, levels).to(features.dtype)
            if present is not None:
                onehot = onehot * present.unsqueeze(-1)
            scores = features @ self.loadings.to(features.dtype)
            parts.append((scores.unsqueeze(-1) * onehot.unsqueeze(1)).reshape(len(features), -1))
        if self.sparse_blocks:  # every feature x [level >= k], k = 2 .. levels - 1
            steps = torch.arange(2, levels, device=level.device)
            above = (level[:, None] >= steps[None, :]).to(features.dtype)  # (B, levels - 2)
            if present is not None:
                above = above * present.unsqueeze(-1)
            parts.append((above.unsqueeze(-1) * features.unsqueeze(1)).reshape(len(features), -1))
        return torch.cat(parts, dim=1)

    def design_blocks(
        self, x: Any, clinical: Any = None, clinical_present: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """:meth:`design` cut into its :attr:`blocks` (name -> (B, p_block))."""
        design = self.design(x, clinical, clinical_present)
        if len(self.columns) == 1:
            return {self.blocks[0]: design}
        out = {}
        for name, cols in self.columns.items():
            contiguous = cols == list(range(cols[0], cols[-1] + 1))
            out[name] = design[:, cols[0] : cols[-1] + 1] if contiguous else design[:, cols]
        return out

    @torch.no_grad()
    def fit_components(self, x: Any, present: torch.Tensor) -> None:
        """Fit the principal components of the modality's features on the rows of ``x`` where
        ``present`` (training patients): unit-SD scores, each component's sign fixed so that its
        largest loading is positive."""
        if self.modifier is None or not hasattr(self, "loadings"):
            return
        features = self._features(x)[present.bool()].double()
        k = self.loadings.shape[1]
        if features.shape[0] <= k:
            self.loadings.zero_()
            return
        centred = features - features.mean(0, keepdim=True)
        _, sv, vt = torch.linalg.svd(centred, full_matrices=False)
        v = vt[:k].T  # (p, k)
        sign = torch.sign(v.gather(0, v.abs().argmax(0, keepdim=True)))
        sd = sv[:k] / max(1.0, float(features.shape[0] - 1)) ** 0.5
        self.loadings.copy_((v * sign / sd.clamp_min(1e-12)).to(self.loadings.dtype))

    def forward(
        self,
        x: Any,
        present: torch.Tensor,
        clinical: Any = None,
        clinical_present: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """(B, n_outputs) contribution; rows where ``present`` is False contribute 0."""
        design = self.design(x, clinical, clinical_present)
        return self.linear(design) * present.to(design.dtype).unsqueeze(-1)
