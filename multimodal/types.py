"""Shared vocabulary: modality kinds, the batch type, token sets.

Survival conventions used everywhere in the package:

- ``time``: float >= 0, time to event or censoring.
- ``event``: bool, True = the event was observed (never a ``censorship`` flag inside the package;
  TCGA's ``censorship`` is converted once, at the data boundary).
- ``risk``: float, higher = earlier event / worse prognosis.
- ``survival``: S(t), array of shape (n_patients, n_times).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import Literal, Union

import torch

__all__ = [
    "MODALITY_KINDS",
    "OUTCOME_COLUMN_PATTERN",
    "Batch",
    "InputSpec",
    "ModalityInput",
    "ModalityKind",
    "TokenSet",
    "columns_by_suffix",
    "is_outcome_column",
]

ModalityKind = Literal["clinical", "genomics", "text", "imaging", "feature_bag", "longitudinal"]
MODALITY_KINDS: tuple[str, ...] = (
    "clinical",
    "genomics",
    "text",
    "imaging",
    "feature_bag",
    "longitudinal",
)

#: Columns that carry outcome information and must never become model inputs.
OUTCOME_COLUMN_PATTERN = re.compile(
    r"^(cdr_.*|survival_.*|survpath_survival.*|survpath_censorship.*|event|events|censorship|"
    r"censored|time|event_type|os_.*|pfs_.*|pfi_.*|dss_.*|dfi_.*|vital_status|death.*|"
    r"days_to_death|days_to_last_follow_up|true_risk.*)$",
    re.IGNORECASE,
)


def columns_by_suffix(
    names: Sequence[object], suffixes: Sequence[str]
) -> list[tuple[str | None, list[int]]]:
    """Column indices by data type: ``(suffix, indices)`` for the names ending in
    ``_<suffix>`` (in the order of ``suffixes``, each name in the first that matches; a suffix
    no name has is left out), then ``(None, indices)`` for the names matching none (if any)."""
    out: list[tuple[str | None, list[int]]] = []
    taken: set[int] = set()
    for suffix in suffixes:
        idx = [i for i, n in enumerate(names) if i not in taken and str(n).endswith(f"_{suffix}")]
        if idx:
            out.append((suffix, idx))
            taken.update(idx)
    rest = [i for i in range(len(names)) if i not in taken]
    return [*out, (None, rest)] if rest else out


def is_outcome_column(name: str) -> bool:
    """True when a column name denotes an outcome (time, event, censoring, CDR endpoints)."""
    return bool(OUTCOME_COLUMN_PATTERN.match(str(name)))


@dataclass
class TokenSet:
    """A padded set of tokens per patient.

    Attributes
    ----------
    tokens : Tensor, shape (B, N, D)
    mask : BoolTensor, shape (B, N); True = a real token, False = padding.
    """

    tokens: torch.Tensor
    mask: torch.Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TokenSet:
        return TokenSet(
            self.tokens.to(device, non_blocking=non_blocking),
            self.mask.to(device, non_blocking=non_blocking),
        )

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


#: What an encoder receives for one modality: a tensor, a token set, or named tensors
#: (clinical covariates: ``{"numeric": (B, p), "numeric_missing": (B, p), "categorical": (B, q)}``).
ModalityInput = Union[torch.Tensor, TokenSet, dict[str, torch.Tensor]]  # noqa: UP007 - runtime alias


def _move(x: ModalityInput, device: torch.device | str, non_blocking: bool) -> ModalityInput:
    if isinstance(x, dict):
        return {k: v.to(device, non_blocking=non_blocking) for k, v in x.items()}
    return x.to(device, non_blocking=non_blocking)


@dataclass
class Batch:
    """One mini-batch.

    Attributes
    ----------
    patient_id : list[str], length B
    time : FloatTensor (B,)  -- endpoint time (float32)
    event : BoolTensor (B,)  -- True = event observed
    inputs : dict modality name -> ModalityInput
        Rows of a patient who lacks the modality hold placeholder values that must be ignored.
    mask : dict modality name -> BoolTensor (B,); True = present, False = missing.
    event_type : LongTensor (B,) or None -- competing risks: 0 = censored, k >= 1 = cause k.
    pfs_time, pfs_event : progression endpoint when the task has one.
    strata : LongTensor (B,) or None -- stratum index for stratified Cox.
    """

    patient_id: list[str]
    time: torch.Tensor
    event: torch.Tensor
    inputs: dict[str, ModalityInput] = field(default_factory=dict)
    mask: dict[str, torch.Tensor] = field(default_factory=dict)
    event_type: torch.Tensor | None = None
    pfs_time: torch.Tensor | None = None
    pfs_event: torch.Tensor | None = None
    strata: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.patient_id)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "patient_id" or v is None:
                out[f.name] = v
            elif f.name == "inputs":
                out[f.name] = {k: _move(x, device, non_blocking) for k, x in v.items()}
            elif f.name == "mask":
                out[f.name] = {k: m.to(device, non_blocking=non_blocking) for k, m in v.items()}
            else:
                out[f.name] = v.to(device, non_blocking=non_blocking)
        return Batch(**out)


@dataclass
class InputSpec:
    """What an encoder needs to know about its (preprocessed) input; built by preprocessing.

    Attributes
    ----------
    kind : ModalityKind
    in_features : feature dimension for genomics / text embeddings / feature bags / cached images.
    groups : genomics feature groups as lists of column indices into the preprocessed table.
    group_names : names of ``groups`` (pathways, gene families), same order.
    feature_names : names of the preprocessed columns (genomics, clinical numeric).
    n_numeric : number of numeric clinical covariates.
    cardinalities : number of levels of each categorical clinical covariate (level 0 = missing/unknown).
    categorical_names : the categorical clinical covariates' column names, same order.
    spatial_dims, in_channels, image_size : imaging geometry after transforms.
    tokens : True when the input arrives as a TokenSet (chunk embeddings, bags of patches).
    n_variables : longitudinal: number of measured variables per visit (``in_features`` is then
        the size of the landmark summary).
    scales : genomics: the training standard deviation of each preprocessed column's raw values
        (the columns themselves arrive z-scored); tree members that choose features by variance
        (``members.tree_selection: variance``) rank by it. None where not recorded.
    """

    kind: ModalityKind
    in_features: int | None = None
    groups: list[list[int]] | None = None
    group_names: list[str] | None = None
    feature_names: list[str] | None = None
    n_numeric: int = 0
    cardinalities: list[int] = field(default_factory=list)
    categorical_names: list[str] | None = None
    spatial_dims: int | None = None
    in_channels: int = 1
    image_size: tuple[int, ...] | None = None
    tokens: bool = False
    n_variables: int | None = None
    scales: list[float] | None = None
