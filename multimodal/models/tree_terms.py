"""Tree members of a model: tree ensembles on the clinical covariates and selected features.

``members.trees`` adds, beside the linear members, one tree ensemble per kind (gradient-boosted
Cox trees, a random survival forest; :mod:`multimodal.models.trees`). They all see one design:

``[clinical design, x_m[:, columns_m] * present_m, present_m for m in tree_inputs]``

where the clinical design is the clinical linear member's (numeric covariates and one-hot
levels) and ``columns_m`` are the features of modality ``m`` chosen on the training patients
(:func:`select_columns`). The combiner (:mod:`multimodal.training.combine`) fits the ensembles
and their stacking weights; in the model they are fixed buffers: the term adds
``sum_k weight_k * standardised score_k`` to the risk and is never trained by gradient descent.

Sizes (trees, nodes, chosen columns) are only known after fitting, so every buffer starts empty
and takes the shape of the saved tensor when a run folder's weights are loaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from multimodal.models.trees import SizedByState, TreeMember

__all__ = [
    "TREE_INPUT_KINDS",
    "TreeTerms",
    "select_columns",
    "select_columns_by_variance",
    "univariate_cox_scores",
]

#: Modality kinds whose feature vector the tree members may see besides the clinical design.
TREE_INPUT_KINDS = ("genomics", "text", "imaging")


class _Fitted(SizedByState):
    """One fitted vector (a buffer named ``name``), empty until the combiner fills it."""

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        super().__init__()
        self.register_buffer(name, torch.zeros(0, dtype=dtype))


class TreeTerms(SizedByState):
    """The tree members of one model.

    Parameters
    ----------
    inputs : modalities besides the clinical covariates whose chosen features the trees see.
    kinds : tree-ensemble kinds (``boosting``, ``forest``), one member each.
    scored : inputs whose linear member's risk score the trees also see (``members.tree_scores``).
    """

    def __init__(self, inputs: list[str], kinds: list[str], scored: list[str] = ()) -> None:
        super().__init__()
        self.inputs, self.kinds = list(inputs), list(kinds)
        self.scored = [m for m in scored if m in self.inputs]
        # per input: the chosen feature columns (``index``) and, if scored, the linear
        # direction whose risk score the trees see (``weight``)
        self.columns = nn.ModuleDict({m: _Fitted("index", torch.long) for m in self.inputs})
        self.scores = nn.ModuleDict({m: _Fitted("weight", torch.float64) for m in self.scored})
        self.ensembles = nn.ModuleDict({k: TreeMember() for k in self.kinds})
        self.register_buffer("weight", torch.zeros(len(self.kinds)))

    @property
    def fitted(self) -> bool:
        return bool(self.weight.abs().sum() > 0)

    def design(
        self,
        clinical: torch.Tensor,
        inputs: dict[str, Any],
        mask: dict[str, torch.Tensor],
        columns: dict[str, torch.Tensor] | None = None,
        scores: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(B, p) design of the trees: the clinical design, then per input modality its chosen
        features (zero where the modality is missing or hidden) and its presence flag, then per
        scored input its linear risk score ``x @ direction`` (zero where missing), in float64.
        ``columns`` and ``scores`` (default: the fitted ones) override the chosen features and
        the directions while fitting (the combiner's inner folds)."""
        parts = [clinical.double()]
        for m in self.inputs:
            cols = self.columns[m].index if columns is None else columns[m]
            x = inputs[m].double().reshape(inputs[m].shape[0], -1)
            present = mask[m].to(x.dtype)
            parts.append(x[:, cols.to(x.device)] * present[:, None])
            parts.append(present[:, None])
        for m in self.scored:
            x = inputs[m].double().reshape(inputs[m].shape[0], -1)
            w = self.scores[m].weight if scores is None else scores[m].double()
            score = x @ w if w.numel() == x.shape[1] else torch.zeros_like(x[:, 0])
            parts.append((score * mask[m].to(x.dtype))[:, None])
        return torch.cat(parts, dim=1)

    def member_scores(self, design: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each ensemble's standardised score, (B,), before its stacking weight."""
        return {k: self.ensembles[k](design) for k in self.kinds}

    def forward(
        self, clinical: torch.Tensor, inputs: dict[str, Any], mask: dict[str, torch.Tensor]
    ) -> torch.Tensor:
        """(B,) contribution to the risk: ``sum_k weight_k * score_k``."""
        if not self.fitted:
            return torch.zeros(clinical.shape[0], device=clinical.device)
        design = self.design(clinical, inputs, mask)
        scores = torch.stack(list(self.member_scores(design).values()), dim=1)
        return scores.to(self.weight.dtype) @ self.weight


def univariate_cox_scores(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Per column, the Cox score test statistic ``U^2 / I`` at beta = 0 (Breslow ties).

    ``U_j = sum over events i of (x_ij - mean of x_j over the risk set of i)`` and ``I_j`` the sum
    of the risk sets' variances: how strongly each feature alone is associated with the hazard,
    in O(n p) after one sort. Constant columns get 0.
    """
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(-np.asarray(time, dtype=np.float64), kind="stable")
    t, d, xs = np.asarray(time, float)[order], np.asarray(event, bool)[order], x[order]
    # risk set of patient i (sorted by decreasing time): everyone up to the last with time >= t_i
    n_at = np.arange(1, len(t) + 1)
    last = np.searchsorted(-t, -t, side="right") - 1  # index of the last tied patient
    s1, s2 = np.cumsum(xs, axis=0)[last], np.cumsum(xs * xs, axis=0)[last]
    n = n_at[last][:, None].astype(float)
    mean = s1 / n
    var = np.maximum(s2 / n - mean * mean, 0.0)
    u = ((xs - mean) * d[:, None]).sum(0)
    info = (var * d[:, None]).sum(0)
    return np.where(info > 1e-12, u * u / np.maximum(info, 1e-12), 0.0)


def select_columns(
    x: np.ndarray, present: np.ndarray, time: np.ndarray, event: np.ndarray, k: int
) -> np.ndarray:
    """The ``k`` columns of ``x`` with the largest univariate Cox score statistic among the
    patients where the modality is ``present`` (sorted column indices; fewer when fewer vary)."""
    rows = np.asarray(present, bool)
    if k <= 0 or rows.sum() < 2 or not np.asarray(event, bool)[rows].any():
        return np.zeros(0, dtype=np.int64)
    return _top_columns(univariate_cox_scores(x[rows], time[rows], event[rows]), k, 0.0)


def select_columns_by_variance(
    x: np.ndarray, present: np.ndarray, k: int, scales: np.ndarray | None = None
) -> np.ndarray:
    """The ``k`` columns of ``x`` with the largest variance among the patients where the modality
    is ``present`` (sorted column indices; fewer when fewer vary). ``scales``: each column's
    standard deviation in raw units when ``x`` arrives standardised (the variance is ranked in
    raw units, ``scales**2 * var(x)``). Needs no outcome."""
    rows = np.asarray(present, bool)
    if k <= 0 or rows.sum() < 2:
        return np.zeros(0, dtype=np.int64)
    variance = np.asarray(x, dtype=np.float64)[rows].var(axis=0)
    if scales is not None:
        variance = variance * np.asarray(scales, dtype=np.float64) ** 2
    return _top_columns(np.where(np.isfinite(variance), variance, 0.0), k, 1e-12)


def _top_columns(scores: np.ndarray, k: int, floor: float) -> np.ndarray:
    """Sorted indices of the ``k`` largest ``scores`` above ``floor`` (ties: lower index first)."""
    ranked = np.argsort(-scores, kind="stable")
    return np.sort(ranked[scores[ranked] > floor][:k]).astype(np.int64)
