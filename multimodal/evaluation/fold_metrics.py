"""Validation metrics of one cross-validation fold, from its prediction frame.

Only arrays in, numbers out: any model's predictions (ours, a baseline's) can be scored here.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from multimodal.survival.endpoints import get_endpoint, primary_metrics

__all__ = ["evaluate_fold"]


def evaluate_fold(
    preds: pd.DataFrame, times: list[float], n_boot: int = 0, seed: int = 0, endpoint: str = "os"
) -> dict[str, Any]:
    """Validation metrics of one fold from its prediction frame (train rows give the IPCW weights).

    The metrics of the primary endpoint (``c_index``, ``uno_c``, ``td_auc``, ``ibs``: from
    ``time``/``event``/``risk``/``surv_<t>``, :func:`~multimodal.survival.endpoints.primary_metrics`)
    are followed by the endpoint's own per-outcome and per-cause ones
    (:meth:`~multimodal.survival.endpoints.Endpoint.fold_metrics`; for ``competing`` the primary
    ``ibs`` is the IPCW integrated Brier score of the progression CIF).
    """
    out = primary_metrics(preds, times, n_boot, seed)
    out.update(get_endpoint(endpoint).fold_metrics(preds, times))
    return out
