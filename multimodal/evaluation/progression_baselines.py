"""Classical baselines of the progression endpoints, on the same folds as the deep models.

- ``clinical_cox_os`` / ``clinical_cox_pfs``: ridge Cox on the clinical covariates
  (:mod:`multimodal.evaluation.baselines`' ``clinical_cox``) for overall survival and for PFS;
- ``cause_specific_cox``: one ridge Cox per cause of the first event (progression; death without
  progression), the other cause as censoring, on the clinical covariates; cause-specific Breslow
  baselines give each patient's CIF (:func:`multimodal.survival.competing.cumulative_incidence`);
- ``aalen_johansen``: the marginal CIF of the training fold, the same for every patient (no
  covariates): the reference for the CIF Brier score; its C-index is 0.5 by construction.

Metrics per validation fold: Harrell's C (``c_index_os``, ``c_index_pfs``), the cause-specific C of
progression and death (``c_index_progression``, ``c_index_death``; Wolbers' ``cr_c_index_*``), and
the IPCW integrated Brier score of the progression / death CIF (``ibs_cif_*``) at the evaluation
times inside the fold's follow-up. Everything is fitted on the training fold only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.evaluation.baselines import (
    BaselineOptions,
    _ClinicalEncoder,
    _drop_constant,
    _fit_clinical_cox,
    _positions,
    _split_columns,
    _surv_y,
    _unpack_fold,
)
from multimodal.survival.competing import (
    CAUSES,
    aalen_johansen,
    cause_specific_c_index,
    cif_integrated_brier_score,
    competing_c_index,
    cumulative_incidence,
    first_event,
)
from multimodal.survival.curves import breslow_baseline, step_values
from multimodal.survival.metrics import harrell_c

__all__ = ["PROGRESSION_BASELINES", "run_progression_baselines"]

PROGRESSION_BASELINES: tuple[str, ...] = (
    "clinical_cox_os",
    "clinical_cox_pfs",
    "cause_specific_cox",
    "aalen_johansen",
)


def _cause_specific_cox(xtr, xva, t_tr, k_tr, opts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validation (n, K) log-hazard ratios, the union grid (m,) and validation CIFs (n, K, m)."""
    risks, curves = [], []
    for c in range(1, len(CAUSES) + 1):
        y = _surv_y(t_tr, k_tr == c)
        lp_va, _, _ = _fit_clinical_cox(xtr, y, xva, opts)
        lp_tr, _, _ = _fit_clinical_cox(xtr, y, xtr, opts)
        risks.append(lp_va)
        curves.append((breslow_baseline(lp_tr, t_tr, k_tr == c), lp_va))
    grid = np.unique(np.concatenate([u for (u, _), _ in curves]))
    inc = []
    for (u, h), lp in curves:
        h_grid = step_values(u, h, grid)  # cumulative hazard on the union grid (a step function)
        d0 = np.diff(np.concatenate([[0.0], h_grid]))
        inc.append(d0[None, :] * np.exp(lp)[:, None])
    _, cif = cumulative_incidence(torch.from_numpy(np.stack(inc, axis=1)))
    return np.stack(risks, axis=1), grid, cif.numpy()


def run_progression_baselines(
    X_clinical: pd.DataFrame,
    time: Sequence[float],
    event: Sequence[bool],
    pfs_time: Sequence[float],
    pfs_event: Sequence[bool],
    folds: Sequence[Any],
    eval_times: Sequence[float],
    models: Sequence[str] = PROGRESSION_BASELINES,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
    options: BaselineOptions | None = None,
) -> pd.DataFrame:
    """Fit and score the progression baselines on each fold.

    Parameters
    ----------
    X_clinical : DataFrame indexed by patient id (no outcome columns).
    time, event : overall survival; pfs_time, pfs_event : PFS / PFI, aligned with ``X_clinical``.
    folds : ``Fold`` objects or ``(train_ids, val_ids)`` pairs.
    eval_times : candidate times of the CIF Brier score; each fold keeps those inside its
        validation follow-up (and below its largest training time).

    Returns
    -------
    DataFrame, one row per (model, fold): the metrics of the module docstring that apply.
    """
    opts = options or BaselineOptions()
    unknown = [m for m in models if m not in PROGRESSION_BASELINES]
    if unknown:
        raise ValueError(
            f"unknown progression baselines {unknown}; choose from {PROGRESSION_BASELINES}"
        )
    os_t, os_e = np.asarray(time, float), np.asarray(event, bool)
    pfs_t, pfs_e = np.asarray(pfs_time, float), np.asarray(pfs_event, bool)
    first_t, etype = first_event(os_t, os_e, pfs_t, pfs_e)
    num, cat = _split_columns(X_clinical, numeric, categorical)
    cand = np.asarray(eval_times, float)
    rows = []
    for i, fold in enumerate(folds):
        k, train_ids, val_ids = _unpack_fold(fold, i)
        tr = _positions(train_ids, X_clinical.index, "train")
        va = _positions(val_ids, X_clinical.index, "val")
        enc = _ClinicalEncoder(num, cat).fit(X_clinical.iloc[tr])
        xtr, xva = _drop_constant(
            enc.transform(X_clinical.iloc[tr]), enc.transform(X_clinical.iloc[va])
        )
        upper = min(first_t[va].max(), first_t[tr].max())
        grid = cand[(cand >= first_t[va].min()) & (cand < upper)]
        for name in models:
            row: dict[str, Any] = {"model": name, "fold": k}
            if name in ("clinical_cox_os", "clinical_cox_pfs"):
                t, e = (os_t, os_e) if name.endswith("os") else (pfs_t, pfs_e)
                risk, _, _ = _fit_clinical_cox(xtr, _surv_y(t[tr], e[tr]), xva, opts)
                row["c_index_" + name.rsplit("_", 1)[1]] = harrell_c(t[va], e[va], risk)
            else:
                if name == "cause_specific_cox":
                    risks, cgrid, cif = _cause_specific_cox(xtr, xva, first_t[tr], etype[tr], opts)
                else:
                    cgrid, marginal, _ = aalen_johansen(first_t[tr], etype[tr], len(CAUSES))
                    cif = np.broadcast_to(marginal, (va.size, *marginal.shape))
                    risks = np.zeros((va.size, len(CAUSES)))
                for c, cause in enumerate(CAUSES, start=1):
                    r = risks[:, c - 1]
                    row[f"c_index_{cause}"] = cause_specific_c_index(first_t[va], etype[va], r, c)
                    row[f"cr_c_index_{cause}"] = competing_c_index(first_t[va], etype[va], r, c)
                    row[f"ibs_cif_{cause}"] = (
                        cif_integrated_brier_score(
                            first_t[tr],
                            etype[tr],
                            first_t[va],
                            etype[va],
                            step_values(cgrid, cif[:, c - 1], grid),
                            grid,
                            c,
                        )
                        if grid.size >= 2
                        else np.nan
                    )
            rows.append(row)
    return pd.DataFrame(rows)
