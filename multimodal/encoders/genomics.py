"""Genomics: self-normalising networks over molecular tables and the table preprocessor.

- ``"snn"``: one SNN (Klambauer et al., 2017; as in PORPOISE) over the whole table.
- ``"grouped_snn"``: one small SNN per feature group (pathway / signature family, as in MCAT)
  producing one token per group, or a pooled vector with ``pool=True``.
- :class:`GenomicsPreprocessor`: feature selection, median imputation and z-scoring, all fitted on
  training rows only.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import nn

from multimodal.encoders.base import ENCODERS, Encoder, GatedAttentionPool, layer_dims
from multimodal.exceptions import ConfigError, DataError, LeakageError
from multimodal.types import InputSpec, TokenSet, columns_by_suffix, is_outcome_column

__all__ = ["GenomicsPreprocessor", "GroupedSNNEncoder", "SNNEncoder", "snn_block"]

log = logging.getLogger(__name__)

GenomicsTransform = Literal["none", "asinh", "asinh_after_selection"]
_TRANSFORMS: tuple[str, ...] = get_args(GenomicsTransform)


def snn_block(in_features: int, out_features: int, dropout: float) -> nn.Sequential:
    """Linear -> SELU -> AlphaDropout with LeCun-normal weights (keeps activations self-normalised)."""
    lin = nn.Linear(in_features, out_features)
    nn.init.normal_(lin.weight, 0.0, 1.0 / math.sqrt(in_features))
    nn.init.zeros_(lin.bias)
    return nn.Sequential(lin, nn.SELU(), nn.AlphaDropout(dropout))


def _snn(in_features: int, hidden: Sequence[int], out_dim: int, dropout: float) -> nn.Sequential:
    dims = layer_dims(in_features, hidden, out_dim)
    return nn.Sequential(*(snn_block(a, b, dropout) for a, b in itertools.pairwise(dims)))


@ENCODERS.register("snn")
class SNNEncoder(Encoder):
    """Self-normalising MLP over the whole genomics table.

    Parameters
    ----------
    in_features : number of (preprocessed, z-scored) features.
    out_dim : embedding size.
    hidden : hidden layer sizes.
    dropout : AlphaDropout rate.

    Input ``(B, in_features)`` float -> ``(B, out_dim)``.
    """

    spec_fields: ClassVar[dict[str, str]] = {"in_features": "in_features"}

    def __init__(
        self,
        in_features: int,
        out_dim: int = 32,
        hidden: Sequence[int] = (256,),
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        self.in_features, self.out_dim = int(in_features), int(out_dim)
        self.net = _snn(in_features, hidden, out_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_features) -> (B, out_dim)."""
        return self.net(x.float())


@ENCODERS.register("grouped_snn")
class GroupedSNNEncoder(Encoder):
    """One small SNN per feature group.

    Parameters
    ----------
    groups : lists of column indices into the input table, one list per group (``InputSpec.groups``).
    out_dim : size of each group token (and of the pooled vector).
    hidden : hidden layer sizes of each group's SNN.
    dropout : AlphaDropout rate.
    pool : False -> ``TokenSet`` (B, G, out_dim) with an all-True mask (``returns_tokens``);
        True -> gated-attention pooling over the groups -> (B, out_dim); the weights of the last
        call are in ``last_attention`` (B, G).
    attention_hidden : size of the pooling attention layer.
    """

    spec_fields: ClassVar[dict[str, str]] = {"groups": "groups"}

    def __init__(
        self,
        groups: Sequence[Sequence[int]],
        out_dim: int = 32,
        hidden: Sequence[int] = (32,),
        dropout: float = 0.25,
        pool: bool = False,
        attention_hidden: int = 32,
    ) -> None:
        super().__init__()
        groups = [list(map(int, g)) for g in groups]
        if not groups or any(len(g) == 0 for g in groups):
            raise ConfigError(
                "grouped_snn needs non-empty feature groups (InputSpec.groups); declare `groups` "
                "for the genomics modality or use the 'snn' encoder"
            )
        self.out_dim, self.pool = int(out_dim), bool(pool)
        self.returns_tokens = not self.pool
        self.n_groups = len(groups)
        for i, g in enumerate(groups):
            self.register_buffer(f"index_{i}", torch.tensor(g, dtype=torch.long), persistent=False)
        self.nets = nn.ModuleList(_snn(len(g), hidden, out_dim, dropout) for g in groups)
        self.attention = GatedAttentionPool(out_dim, attention_hidden) if self.pool else None
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> TokenSet | torch.Tensor:
        """x: (B, in_features) -> TokenSet (B, G, out_dim), or (B, out_dim) when ``pool``."""
        x = x.float()
        tokens = torch.stack(
            [
                net(x.index_select(1, getattr(self, f"index_{i}")))
                for i, net in enumerate(self.nets)
            ],
            dim=1,
        )
        mask = torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
        if self.attention is None:
            return TokenSet(tokens, mask)
        pooled, weights = self.attention(tokens, mask)
        self.last_attention = weights.detach()
        return pooled


class GenomicsPreprocessor:
    """Select, impute and standardise a molecular table; everything fitted on training rows.

    Parameters
    ----------
    max_features : keep the ``max_features`` most variable columns (None = keep all).
    selection : ``"variance"`` or ``"mad"`` (median absolute deviation) ranking for the selection.
    groups : optional group name -> column names; after fitting, ``groups_`` maps each group to
        indices into the selected columns (groups left empty by the selection are dropped).
    types : column-name suffixes of the data types (``("rnaseq", "cnv", "mut")``): the
        ``max_features`` cap applies within each type (the columns named ``..._<suffix>``, and
        the columns matching none), each ranked on its own. Empty: one ranking over every column.
    transform : ``"asinh"`` maps every value through the inverse hyperbolic sine first (a log for
        large values that keeps the sign), so that right-skewed tables are ranked, imputed and
        standardised on a scale where a few extreme patients do not dominate;
        ``"asinh_after_selection"`` ranks the columns on their raw values and maps only the kept
        ones; ``"none"``: as they come.
    clip : after z-scoring, values beyond ``clip`` training SDs are set to ``+-clip`` (None: not
        clipped). Bounds a few extreme patients' (and a rare 0/1 column's) pull on a linear term.

    Notes
    -----
    Columns entirely missing or constant on the training rows are dropped. Missing values are
    imputed with the training median, then z-scored with the training mean and standard deviation.
    Columns absent from a table passed to :meth:`transform` are imputed as if all values were missing.
    """

    def __init__(
        self,
        max_features: int | None = None,
        selection: Literal["variance", "mad"] = "variance",
        groups: Mapping[str, Sequence[str]] | None = None,
        types: Sequence[str] = (),
        transform: GenomicsTransform = "none",
        clip: float | None = None,
    ) -> None:
        if selection not in ("variance", "mad"):
            raise ConfigError(f"unknown selection {selection!r}; use 'variance' or 'mad'")
        if transform not in _TRANSFORMS:
            raise ConfigError(
                f"unknown genomics transform {transform!r}; use one of {', '.join(_TRANSFORMS)}"
            )
        if clip is not None and not float(clip) > 0:
            raise ConfigError(f"genomics clip must be > 0 SDs or None, got {clip}")
        if max_features is not None and int(max_features) < 1:
            raise ConfigError(f"max_features must be >= 1 or None, got {max_features}")
        self.max_features = None if max_features is None else int(max_features)
        self.selection = selection
        self.groups = {str(k): [str(c) for c in v] for k, v in (groups or {}).items()}
        self.types = [str(t) for t in types]
        self.transform_name = transform
        self.clip = None if clip is None else float(clip)
        self.feature_names_: list[str] = []
        self.groups_: dict[str, list[int]] = {}

    def _numeric(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` as floats (non-numbers missing), before :attr:`transform_name`."""
        outcome = [c for c in df.columns if is_outcome_column(c)]
        if outcome:
            raise LeakageError(
                f"genomics table holds outcome columns {outcome}; remove them from the feature table"
            )
        return df.apply(pd.to_numeric, errors="coerce").astype(np.float64)

    def _map(self, x: pd.DataFrame) -> pd.DataFrame:
        """``x`` through :attr:`transform_name` (the identity for ``none``)."""
        return x if self.transform_name == "none" else np.arcsinh(x)

    def fit(self, df: pd.DataFrame) -> GenomicsPreprocessor:
        """Fit on the training rows ``df`` (patients x features)."""
        if len(df) == 0:
            raise DataError("GenomicsPreprocessor.fit got no training rows")
        raw = self._numeric(df)
        x = self._map(raw)
        # the values the columns are ranked on: raw with ``asinh_after_selection``
        on_raw = self.transform_name == "asinh_after_selection"
        ranked_on = raw if on_raw else x
        keep = ranked_on.notna().any() & (ranked_on.std(skipna=True).fillna(0.0) > 0)
        ranked_on, x = ranked_on.loc[:, keep], x.loc[:, keep]
        if x.shape[1] == 0:
            raise DataError("every genomics column is missing or constant on the training rows")
        if self.max_features is not None and x.shape[1] > self.max_features:
            if self.selection == "variance":
                score = ranked_on.var(skipna=True)
            else:
                score = (ranked_on - ranked_on.median()).abs().median()
            top: set = set()
            for columns in self._by_type(list(x.columns)):
                ranked = score[columns].sort_values(ascending=False, kind="stable")
                top.update(ranked.index[: self.max_features])
            x = x.loc[:, [c for c in x.columns if c in top]]
        self.feature_names_ = [str(c) for c in x.columns]
        self.median_ = x.median().to_numpy()
        filled = x.fillna(pd.Series(self.median_, index=x.columns))
        self.mean_ = filled.mean().to_numpy()
        std = filled.std(ddof=0).to_numpy()
        self.std_ = np.where(std > 0, std, 1.0)
        if on_raw:  # the kept columns' SDs on the raw scale they were ranked on
            kept = ranked_on.loc[:, x.columns]
            self.scales_ = kept.fillna(kept.median()).std(ddof=0).to_numpy()
        else:  # ranked on the values themselves: their SDs
            self.scales_ = std
        self._set_groups()
        return self

    def _by_type(self, columns: list) -> list[list]:
        """``columns`` split by :attr:`types` (suffix order; the rest last); one list without."""
        if not self.types:
            return [columns]
        return [[columns[i] for i in idx] for _, idx in columns_by_suffix(columns, self.types)]

    def _set_groups(self, level: int = logging.WARNING) -> None:
        """Groups as positions among the selected features; an empty group is dropped, said at
        ``level`` (a warning when fitting; debug when a saved state is loaded, where it was said)."""
        pos = {c: i for i, c in enumerate(self.feature_names_)}
        self.groups_ = {}
        for name, cols in self.groups.items():
            idx = [pos[c] for c in cols if c in pos]
            if idx:
                self.groups_[name] = idx
            else:
                log.log(level, "genomics group %r has no selected feature; dropped", name)

    def transform(self, df: pd.DataFrame) -> np.ndarray:
        """Rows of ``df`` -> float32 array (n, n_selected) with the training statistics."""
        if not self.feature_names_:
            raise RuntimeError("GenomicsPreprocessor is not fitted; call fit(train_rows) first")
        df = df.copy()
        df.columns = [str(c) for c in df.columns]
        absent = [c for c in self.feature_names_ if c not in df.columns]
        if absent:
            log.warning("%d genomics columns absent; imputed with the training median", len(absent))
        x = self._map(self._numeric(df.reindex(columns=self.feature_names_))).to_numpy()
        x = np.where(np.isnan(x), self.median_, x)
        z = (x - self.mean_) / self.std_
        if self.clip is not None:
            z = np.clip(z, -self.clip, self.clip)
        return z.astype(np.float32)

    def spec(self) -> InputSpec:
        """The InputSpec of the transformed table."""
        return InputSpec(
            kind="genomics",
            in_features=len(self.feature_names_),
            groups=list(self.groups_.values()) or None,
            group_names=list(self.groups_) or None,
            feature_names=list(self.feature_names_),
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable fitted state."""
        return {
            "version": 1,
            "max_features": self.max_features,
            "selection": self.selection,
            "groups": self.groups,
            "types": self.types,
            "transform": self.transform_name,
            "clip": self.clip,
            "feature_names": self.feature_names_,
            "median": [float(v) for v in self.median_],
            "mean": [float(v) for v in self.mean_],
            "std": [float(v) for v in self.std_],
            "scales": [float(v) for v in self.scales_],
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> GenomicsPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`state_dict`."""
        self = cls(
            state["max_features"],
            state["selection"],
            state.get("groups"),
            state.get("types", ()),
            state.get("transform", "none"),  # states written before the option: none
            state.get("clip"),
        )
        self.feature_names_ = list(state["feature_names"])
        self.median_ = np.asarray(state["median"], dtype=np.float64)
        self.mean_ = np.asarray(state["mean"], dtype=np.float64)
        self.std_ = np.asarray(state["std"], dtype=np.float64)
        # the SD of each column on the scale it was ranked on (= std before the transform option)
        self.scales_ = np.asarray(state.get("scales", state["std"]), dtype=np.float64)
        self._set_groups(logging.DEBUG)
        return self
