"""Out-of-distribution flags: inputs unlike anything the model was trained on.

A prediction for such a patient is an extrapolation; the dashboard shows the flags next to it.
Checked against the training data:

- clinical numeric values outside the training range widened by a margin, or more than
  ``z_limit`` training standard deviations from the training mean;
- clinical categories the model never saw;
- genomic values more than ``gene_z_limit`` training standard deviations from the mean (flagged
  when more than ``gene_share`` of the model's genes are);
- a modality missing although every training patient had it (the model never saw it missing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["OODFlag", "TrainingProfile", "check_patient", "training_profile"]


@dataclass(frozen=True)
class OODFlag:
    """One reason to distrust a prediction. ``modality``/``feature`` locate it; ``message`` says
    what was found against what the model saw."""

    modality: str
    feature: str
    message: str


@dataclass
class TrainingProfile:
    """What the training data looked like.

    Attributes
    ----------
    numeric : clinical column -> (min, max, mean, sd) over training patients.
    levels : clinical column -> categories seen in training.
    genes : DataFrame indexed by gene with mean, sd (training, averaged over folds).
    missing_rate : modality -> share of training patients without it (absent when unknown).
    clinical_modality, genomics_modality : names of those modalities in the model (or None).
    """

    numeric: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)
    levels: dict[str, list[str]] = field(default_factory=dict)
    genes: pd.DataFrame = field(default_factory=pd.DataFrame)
    missing_rate: dict[str, float] = field(default_factory=dict)
    clinical_modality: str | None = None
    genomics_modality: str | None = None


def training_profile(
    model: Any, cohort: Any = None, train_ids: list[str] | None = None
) -> TrainingProfile:
    """Profile of the training data from the fold models' fitted preprocessing and, when given,
    the training cohort (ranges of clinical values, missing rate of each modality)."""
    prof = TrainingProfile()
    for fm in model.folds:
        for m, pipe in fm.pipelines.items():
            prep = getattr(pipe, "prep", None)
            kind = getattr(pipe, "kind", "")
            if kind == "clinical" and prep is not None:
                prof.clinical_modality = m
                for col, mean, sd in zip(prep.numeric, prep.mean_, prep.std_):
                    lo, hi, _, _ = prof.numeric.get(col, (np.inf, -np.inf, 0, 0))
                    prof.numeric[col] = (lo, hi, float(mean), float(sd))
                for col, lv in prep.levels_.items():
                    prof.levels[col] = sorted(set(prof.levels.get(col, [])) | set(map(str, lv)))
            if kind == "genomics" and prep is not None and prof.genes.empty:
                prof.genomics_modality = m
                prof.genes = pd.DataFrame(
                    {"mean": np.asarray(prep.mean_, float), "sd": np.asarray(prep.std_, float)},
                    index=pd.Index(list(prep.feature_names_), name="gene"),
                )
    if cohort is None:
        return prof
    ids = pd.Index(train_ids if train_ids is not None else cohort.patients.index).astype(str)
    ids = ids[ids.isin(cohort.patients.index)]
    avail = cohort.availability().reindex(ids)
    for m in model.modalities:
        if m in avail:
            prof.missing_rate[m] = float(1.0 - avail[m].mean()) if len(ids) else float("nan")
        else:
            prof.missing_rate[m] = 1.0
    if prof.clinical_modality in cohort.sources:
        table = cohort.sources[prof.clinical_modality].table.reindex(ids)
        for col, (_, _, mean, sd) in list(prof.numeric.items()):
            if col in table:
                v = table[col].astype(float).dropna()
                if len(v):
                    prof.numeric[col] = (float(v.min()), float(v.max()), mean, sd)
    return prof


def check_patient(
    profile: TrainingProfile,
    clinical: dict[str, Any] | None = None,
    genomics: pd.Series | None = None,
    present: set[str] | None = None,
    z_limit: float = 4.0,
    margin: float = 0.1,
    gene_z_limit: float = 5.0,
    gene_share: float = 0.05,
) -> list[OODFlag]:
    """Flags for one patient.

    Parameters
    ----------
    profile : from :func:`training_profile`.
    clinical : column -> value (numbers or categories; None/NaN = missing).
    genomics : gene -> value (raw, as in the cohort's genomics table).
    present : modalities the patient has (None = do not check missingness).
    """
    flags: list[OODFlag] = []
    cm = profile.clinical_modality or "clinical"
    for col, value in (clinical or {}).items():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            continue
        if isinstance(value, str) and not value.strip():
            continue  # an empty form field = unknown
        if col in profile.numeric:
            lo, hi, mean, sd = profile.numeric[col]
            try:
                v = float(value)
            except (TypeError, ValueError):
                flags.append(OODFlag(cm, col, f"{col} = {value!r} is not a number"))
                continue
            span = (hi - lo) if np.isfinite(hi - lo) else 0.0
            outside_range = np.isfinite(lo) and not (lo - margin * span <= v <= hi + margin * span)
            z = abs(v - mean) / sd if sd > 0 else 0.0
            if outside_range or z > z_limit:
                where = (
                    f"training range {lo:.4g} to {hi:.4g}"
                    if np.isfinite(lo)
                    else f"training mean {mean:.4g} ± {sd:.3g} sd"
                )
                flags.append(OODFlag(cm, col, f"{col} = {v:.4g} is far outside the {where}"))
        elif col in profile.levels and str(value) not in profile.levels[col]:
            flags.append(
                OODFlag(
                    cm,
                    col,
                    f"{col} = {value!r} was never seen in training (seen: {', '.join(profile.levels[col])})",
                )
            )
    if genomics is not None and not profile.genes.empty:
        g = pd.to_numeric(genomics.reindex(profile.genes.index), errors="coerce")
        sd = profile.genes["sd"].where(profile.genes["sd"] > 0, 1.0)
        z = ((g - profile.genes["mean"]) / sd).abs()
        extreme = z[z > gene_z_limit].sort_values(ascending=False)
        known = int(g.notna().sum())
        if known == 0:
            flags.append(
                OODFlag(
                    profile.genomics_modality or "genomics",
                    "",
                    "none of the model's genes are in the genomics data",
                )
            )
        elif len(extreme) > gene_share * known:
            top = ", ".join(f"{k} (z={v:.1f})" for k, v in extreme.head(5).items())
            flags.append(
                OODFlag(
                    profile.genomics_modality or "genomics",
                    "",
                    f"{len(extreme)} of {known} genes are more than {gene_z_limit:g} sd from the training mean: {top}",
                )
            )
    if present is not None:
        for m, rate in profile.missing_rate.items():
            if m not in present and rate == 0.0:
                flags.append(
                    OODFlag(
                        m,
                        "",
                        f"{m} is missing, but every training patient had it: the model never saw it missing",
                    )
                )
    return flags
