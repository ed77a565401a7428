"""Evaluation: classical baselines and fold/published-result comparison tables."""

from multimodal.evaluation.baselines import (
    BASELINE_MODELS,
    BaselineOptions,
    run_baselines,
    run_baselines_on_cohort,
)
from multimodal.evaluation.compare import (
    cindex_by_group,
    format_mean_std,
    load_mcat_oof_predictions,
    load_published_mcat,
    summarize_folds,
)

__all__ = [
    "BASELINE_MODELS",
    "BaselineOptions",
    "cindex_by_group",
    "format_mean_std",
    "load_mcat_oof_predictions",
    "load_published_mcat",
    "run_baselines",
    "run_baselines_on_cohort",
    "summarize_folds",
]
