"""Optuna hyper-parameter tuning over the same :func:`multimodal.train` as the CLI.

    from multimodal.tuning import tune
    result = tune("configs/tune/demo.yaml", cohort="runs/cohort/cohort.yaml", out="runs/tune",
                  n_trials=40)
    result.best_config        # a Config; also written to runs/tune/best.yaml

See :mod:`multimodal.tuning.space` for the tuning-file format and docs/tuning.md for distributed
studies on PostgreSQL.
"""

from __future__ import annotations

from multimodal.exceptions import TuningError
from multimodal.tuning.space import ParamSpec, TuneSpec, load_tune_spec
from multimodal.tuning.study import TrialCounts, TuneResult, count_trials, tune

__all__ = [
    "ParamSpec",
    "TrialCounts",
    "TuneResult",
    "TuneSpec",
    "TuningError",
    "count_trials",
    "load_tune_spec",
    "tune",
]
