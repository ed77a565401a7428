"""multimodal: multimodal survival and progression modelling for oncology.

Public entry points (imported lazily so that ``import multimodal`` stays fast):

- :class:`multimodal.Cohort` -- patients, outcomes and modality sources with coverage and folds.
- :func:`multimodal.train` -- train a fusion model from a config; returns a ``TrainResult``.
- :func:`multimodal.load_run` -- rebuild a trained model from its run folder; ``.explain(cohort)``.
- :mod:`multimodal.cohort_analysis` -- risk groups, Kaplan-Meier, subgroup audit, external validation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from multimodal._version import __version__

__all__ = ["Cohort", "__version__", "load_run", "train"]

_LAZY = {
    "Cohort": ("multimodal.data.cohort", "Cohort"),
    "train": ("multimodal.training.trainer", "train"),
    "load_run": ("multimodal.models.run", "load_run"),
}

if TYPE_CHECKING:  # pragma: no cover
    from multimodal.data.cohort import Cohort
    from multimodal.models.run import load_run
    from multimodal.training.trainer import train


#: Subpackages reachable as attributes (``multimodal.cohort_analysis.risk_groups``), imported lazily.
_SUBPACKAGES = ("cohort_analysis", "explain")


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        import importlib

        return importlib.import_module(f"multimodal.{name}")
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'multimodal' has no attribute {name!r}")
