"""Survival core: losses, heads, survival curves, metrics and calibration.

Import from the submodules (``multimodal.survival.losses``, ``.discrete``, ``.heads``, ``.curves``,
``.metrics``, ``.calibration``; progression endpoints: ``.competing``, ``.multistate``,
``.progression_heads``); the most used names are re-exported here.
"""

from multimodal.survival.calibration import calibration_at_horizon, d_calibration
from multimodal.survival.curves import breslow_baseline, kaplan_meier
from multimodal.survival.discrete import (
    deephit_loss,
    discretize,
    logistic_hazard_nll,
    make_time_grid,
    pmf_nll,
)
from multimodal.survival.heads import HEADS
from multimodal.survival.losses import CoxPartialLikelihoodLoss, cox_nll, track_loss_stats
from multimodal.survival.metrics import (
    bootstrap_ci,
    brier_score,
    compare_c_index,
    harrell_c,
    integrated_brier_score,
    td_auc,
    uno_c,
)

__all__ = [
    "HEADS",
    "CoxPartialLikelihoodLoss",
    "bootstrap_ci",
    "breslow_baseline",
    "brier_score",
    "calibration_at_horizon",
    "compare_c_index",
    "cox_nll",
    "d_calibration",
    "deephit_loss",
    "discretize",
    "harrell_c",
    "integrated_brier_score",
    "kaplan_meier",
    "logistic_hazard_nll",
    "make_time_grid",
    "pmf_nll",
    "td_auc",
    "track_loss_stats",
    "uno_c",
]
