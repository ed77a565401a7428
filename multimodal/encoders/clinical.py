"""Clinical covariates: the ``"clinical_mlp"`` encoder and the covariate preprocessor.

The clinical input of a batch is a dict (see :class:`multimodal.types.Batch`)::

    {"numeric": (B, p) float32,          # standardised with training mean / sd; missing -> 0 (= mean)
     "numeric_missing": (B, p) float32,  # 1 where the value was missing
     "categorical": (B, q) int64}        # level index, 0 = missing / unknown / unseen in training

``cardinalities[j]`` counts the levels of categorical ``j`` *including* level 0.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from multimodal.console import warn_once
from multimodal.encoders.base import ENCODERS, Encoder, check_options, make_mlp
from multimodal.exceptions import ConfigError, DataError, LeakageError
from multimodal.types import InputSpec, is_outcome_column

log = logging.getLogger(__name__)

__all__ = ["ClinicalMLPEncoder", "ClinicalPreprocessor", "embedding_dim", "linear_inputs"]


def embedding_dim(cardinality: int) -> int:
    """Embedding size of a categorical covariate: ``min(8, (cardinality + 1) // 2)``."""
    return max(1, min(8, (int(cardinality) + 1) // 2))


def _safe_levels(c: torch.Tensor, cardinalities: Sequence[int]) -> torch.Tensor:
    """Out-of-range level indices -> 0 (unknown)."""
    card = torch.as_tensor(list(cardinalities), device=c.device).unsqueeze(0)
    c = c.long()
    return torch.where((c < 0) | (c >= card), torch.zeros_like(c), c)


def linear_inputs(x: Mapping[str, torch.Tensor], cardinalities: Sequence[int]) -> torch.Tensor:
    """One-hot design for a linear clinical term: ``[numeric, onehot(cat_1), ...]``.

    Parameters
    ----------
    x : the clinical input dict.
    cardinalities : levels per categorical covariate, level 0 (unknown) included.

    Returns
    -------
    Tensor (B, p + sum(cardinalities)) float.
    """
    parts = [x["numeric"].float()] if "numeric" in x and x["numeric"].shape[1] else []
    if cardinalities:
        c = _safe_levels(x["categorical"], cardinalities)
        for j, card in enumerate(cardinalities):
            parts.append(nn.functional.one_hot(c[:, j], int(card)).float())
    if not parts:
        ref = next(iter(x.values()))
        return ref.new_zeros((ref.shape[0], 0), dtype=torch.float32)
    return torch.cat(parts, dim=1)


@ENCODERS.register("clinical_mlp")
class ClinicalMLPEncoder(Encoder):
    """Embeddings per categorical covariate + numeric values + missing indicators -> MLP.

    Parameters
    ----------
    n_numeric : number of numeric covariates p.
    cardinalities : levels per categorical covariate (level 0 = unknown included).
    out_dim : embedding size.
    hidden : hidden layer sizes.
    dropout : dropout after each layer.
    missing_indicators : feed the ``numeric_missing`` indicators to the MLP.

    Input: the clinical dict (module docstring) -> (B, out_dim).
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        out_dim: int = 32,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        missing_indicators: bool = True,
    ) -> None:
        super().__init__()
        self.n_numeric, self.cardinalities = int(n_numeric), [int(c) for c in cardinalities]
        self.out_dim, self.missing_indicators = int(out_dim), bool(missing_indicators)
        if any(c < 1 for c in self.cardinalities):
            raise ConfigError(f"cardinalities must be >= 1, got {self.cardinalities}")
        self.embeddings = nn.ModuleList(
            nn.Embedding(c, embedding_dim(c)) for c in self.cardinalities
        )
        width = self.n_numeric * (2 if self.missing_indicators else 1)
        width += sum(embedding_dim(c) for c in self.cardinalities)
        if width == 0:
            raise ConfigError("clinical_mlp needs at least one numeric or categorical covariate")
        self.mlp = make_mlp(width, hidden, out_dim, dropout)

    @classmethod
    def from_spec(cls, spec: InputSpec, out_dim: int, **options: Any) -> ClinicalMLPEncoder:
        """Build from ``spec.n_numeric`` and ``spec.cardinalities``."""
        check_options(cls, options, skip=("n_numeric", "cardinalities", "out_dim"))
        return cls(spec.n_numeric, list(spec.cardinalities), out_dim=out_dim, **options)

    def linear_inputs(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """One-hot design (B, p + sum(card)) for a linear clinical term (see :func:`linear_inputs`)."""
        return linear_inputs(x, self.cardinalities)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """x: clinical dict -> (B, out_dim)."""
        parts = []
        if self.n_numeric:
            parts.append(x["numeric"].float())
            if self.missing_indicators:
                parts.append(x["numeric_missing"].float())
        if self.cardinalities:
            c = _safe_levels(x["categorical"], self.cardinalities)
            parts += [emb(c[:, j]) for j, emb in enumerate(self.embeddings)]
        return self.mlp(torch.cat(parts, dim=1))


def _float_or_none(v: Any) -> float | None:
    return None if v is None else float(v)


def _level(v: Any) -> str | None:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    s = str(v).strip()
    return s or None


class ClinicalPreprocessor:
    """Standardise numeric covariates and index categorical levels, fitted on training rows.

    Parameters
    ----------
    numeric : numeric covariate columns.
    categorical : categorical covariate columns.

    Notes
    -----
    Numeric: z-scored with the training mean / sd; a missing value becomes the training mean (0
    after scaling) and sets its ``numeric_missing`` indicator. Categorical: the training levels
    (sorted as strings) get indices 1..K; missing, unknown and levels unseen in training get 0.
    The training range of each numeric column (``min_``, ``max_``; finite values only, None when
    the column had none) is kept for the input checks of
    :func:`multimodal.models.input_checks.check_inputs`; states saved before it was recorded load
    with ``min_ = max_ = None``.
    """

    def __init__(self, numeric: Sequence[str] = (), categorical: Sequence[str] = ()) -> None:
        self.numeric = [str(c) for c in numeric]
        self.categorical = [str(c) for c in categorical]
        leaked = [c for c in self.numeric + self.categorical if is_outcome_column(c)]
        if leaked:
            raise LeakageError(f"clinical covariates {leaked} are outcome columns; remove them")
        self.mean_: list[float] = []
        self.std_: list[float] = []
        self.min_: list[float | None] | None = None
        self.max_: list[float | None] | None = None
        self.levels_: dict[str, list[str]] = {}
        self.fitted = False

    @property
    def n_numeric(self) -> int:
        return len(self.numeric)

    @property
    def cardinalities(self) -> list[int]:
        """Levels per categorical covariate, level 0 (unknown) included."""
        return [len(self.levels_[c]) + 1 for c in self.categorical]

    @property
    def feature_names(self) -> list[str]:
        """Names of the numeric columns (the order of ``numeric`` in the output)."""
        return list(self.numeric)

    def design_names(self) -> list[str]:
        """Column names of :func:`linear_inputs` (``"stage=II"``, ``"stage=<unknown>"``)."""
        names = list(self.numeric)
        for c in self.categorical:
            names += [f"{c}=<unknown>"] + [f"{c}={lv}" for lv in self.levels_[c]]
        return names

    def _columns(self, df: pd.DataFrame) -> None:
        absent = [c for c in self.numeric + self.categorical if c not in df.columns]
        if absent:
            raise DataError(f"clinical table lacks columns {absent}; found {list(df.columns)[:20]}")

    def _numeric_values(self, df: pd.DataFrame) -> np.ndarray:
        if not self.numeric:
            return np.zeros((len(df), 0), dtype=np.float64)
        return df[self.numeric].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)

    def fit(self, df: pd.DataFrame) -> ClinicalPreprocessor:
        """Fit on the training rows ``df`` (patients x columns)."""
        self._columns(df)
        x = self._numeric_values(df)
        with np.errstate(all="ignore"):
            mean = np.nanmean(x, axis=0) if len(x) else np.zeros(x.shape[1])
            std = np.nanstd(x, axis=0) if len(x) else np.ones(x.shape[1])
        self.mean_ = [float(v) if np.isfinite(v) else 0.0 for v in mean]
        self.std_ = [float(v) if np.isfinite(v) and v > 0 else 1.0 for v in std]
        finite = np.where(np.isfinite(x), x, np.nan)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN column: range unknown
            low = np.nanmin(finite, axis=0) if len(x) else np.full(x.shape[1], np.nan)
            high = np.nanmax(finite, axis=0) if len(x) else np.full(x.shape[1], np.nan)
        self.min_ = [float(v) if np.isfinite(v) else None for v in low]
        self.max_ = [float(v) if np.isfinite(v) else None for v in high]
        self.levels_ = {
            c: sorted({lv for lv in map(_level, df[c]) if lv is not None}) for c in self.categorical
        }
        self.fitted = True
        return self

    def transform(self, df: pd.DataFrame) -> dict[str, np.ndarray]:
        """Rows -> ``{"numeric": (n, p) f32, "numeric_missing": (n, p) f32, "categorical": (n, q) i64}``."""
        if not self.fitted:
            raise RuntimeError("ClinicalPreprocessor is not fitted; call fit(train_rows) first")
        self._columns(df)
        x = self._numeric_values(df)
        missing = np.isnan(x)
        z = (x - np.asarray(self.mean_)) / np.asarray(self.std_)
        z[missing] = 0.0
        cat = np.zeros((len(df), len(self.categorical)), dtype=np.int64)
        for j, c in enumerate(self.categorical):
            index = {lv: i + 1 for i, lv in enumerate(self.levels_[c])}
            levels = [_level(v) for v in df[c]]
            cat[:, j] = [index.get(lv, 0) for lv in levels]
            unseen = self._unseen(c, df.index, levels)
            if unseen:
                names = sorted({lv for _, lv in unseen})
                # once per run (per predict call): every fold model transforms the same rows
                warn_once(
                    log,
                    "clinical column %r: level(s) %s were not seen in the training patients "
                    "(%d patient(s), e.g. %s); they are treated as unknown, like a missing value. "
                    "Known levels: %s",
                    c,
                    ", ".join(repr(v) for v in names[:5]),
                    len(unseen),
                    ", ".join(str(pid) for pid, _ in unseen[:3]),
                    ", ".join(self.levels_[c][:10]),
                    key=("unseen levels", c, tuple(map(str, unseen))),
                )
        return {
            "numeric": z.astype(np.float32),
            "numeric_missing": missing.astype(np.float32),
            "categorical": cat,
        }

    def _unseen(self, column: str, ids: Sequence[Any], levels: Sequence[str | None]) -> list:
        known = set(self.levels_[column])
        return [(pid, lv) for pid, lv in zip(ids, levels) if lv is not None and lv not in known]

    def unseen_levels(self, df: pd.DataFrame) -> pd.DataFrame:
        """Categorical values of ``df`` that are not training levels (treated as unknown).

        Returns
        -------
        DataFrame with columns ``patient_id`` (``df``'s index), ``column``, ``level`` (the value
        as the preprocessor reads it, stripped); one row per patient and column. Columns ``df``
        lacks are skipped.
        """
        rows = []
        for c in self.categorical:
            if c in df.columns:
                levels = [_level(v) for v in df[c]]
                rows += [(str(pid), c, lv) for pid, lv in self._unseen(c, df.index, levels)]
        return pd.DataFrame(rows, columns=["patient_id", "column", "level"])

    def spec(self) -> InputSpec:
        """The InputSpec of the transformed covariates."""
        return InputSpec(
            kind="clinical",
            n_numeric=self.n_numeric,
            cardinalities=self.cardinalities,
            feature_names=self.feature_names,
            categorical_names=list(self.categorical),
        )

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable fitted state."""
        return {
            "version": 1,
            "numeric": self.numeric,
            "categorical": self.categorical,
            "mean": self.mean_,
            "std": self.std_,
            "levels": self.levels_,
            "min": self.min_,
            "max": self.max_,
        }

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> ClinicalPreprocessor:
        """Rebuild a fitted preprocessor from :meth:`state_dict`."""
        self = cls(state["numeric"], state["categorical"])
        self.mean_ = [float(v) for v in state["mean"]]
        self.std_ = [float(v) for v in state["std"]]
        self.levels_ = {str(k): [str(v) for v in lv] for k, lv in state["levels"].items()}
        # training ranges: absent from states saved before they were recorded
        for key in ("min", "max"):
            values = state.get(key)
            setattr(
                self, f"{key}_", None if values is None else [_float_or_none(v) for v in values]
            )
        self.fitted = True
        return self
