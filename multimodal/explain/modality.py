"""Per-modality contributions: leave-one-modality-out and exact Shapley values over modalities.

The value of a coalition S of modalities for a patient is the model's prediction when it sees only
the modalities in S (and the patient has): the others are hidden with the model's modality mask,
exactly as if they were missing from the data. With M <= 5 or so modalities the 2^M coalitions are
cheap -- encoders run once per fold, only fusion and head run per coalition -- so Shapley values
are computed exactly, not sampled.

- ``loo_delta[m] = v(all) - v(all without m)``: what the model loses when m is hidden.
- ``shapley[m]``: the Shapley value of m; ``sum_m shapley[m] = v(all) - v(none)`` (efficiency),
  where ``v(none)`` is the model's output for a patient with no data at all.
- A modality the patient lacks gets exactly 0 for both.
- Budget: with more than ``max_shapley_modalities`` modalities only the M + 2 coalitions that
  leave-one-out needs (all, none, all but one) are evaluated and ``shapley`` is NaN.

A hidden modality loses every share it has in the prediction: its part of the deep fusion and its
linear member's term (:meth:`~multimodal.models.model.MultimodalSurvivalModel.combine`), so the
contributions account for every member of the model.

Values are the ensemble's: risk centred per fold model and averaged over the fold models (Shapley
values are linear in the value function, so this equals the mean of the per-fold values). At a
horizon t the value is S(t) averaged over the fold models, so ``shapley_surv_<t>`` is in survival
probability units: a negative value means the modality lowers predicted survival.
"""

from __future__ import annotations

from math import factorial

import numpy as np
import pandas as pd
import torch

from multimodal.explain._forward import (
    BATCH,
    FoldInputs,
    encode,
    head_outputs,
    present_matrix,
    risk_of,
    survival_of,
    take,
)

__all__ = ["coalition_values", "leave_one_out", "modality_contributions", "shapley_values"]


def _bits(n_modalities: int) -> np.ndarray:
    """(2^M, M) bool: row c says which modalities coalition c contains (bit j = modality j)."""
    c = np.arange(2**n_modalities)[:, None]
    return ((c >> np.arange(n_modalities)[None, :]) & 1).astype(bool)


def shapley_values(values: np.ndarray) -> np.ndarray:
    """Exact Shapley values from the values of every coalition.

    Parameters
    ----------
    values : array (n, 2^M, ...) -- ``values[:, c]`` is the value of coalition ``c`` whose bit j
        says whether player j is in it.

    Returns
    -------
    array (n, M, ...): ``phi[:, j] = sum_{S not containing j} |S|!(M-|S|-1)!/M! (v(S+j) - v(S))``.
    """
    n_coal = values.shape[1]
    m = int(np.log2(n_coal))
    if 2**m != n_coal:
        raise ValueError(f"values has {n_coal} coalitions; expected a power of 2 (2^M)")
    bits = _bits(m)
    size = bits.sum(1)
    out = np.zeros((values.shape[0], m, *values.shape[2:]))
    for j in range(m):
        without = np.flatnonzero(~bits[:, j])
        w = np.array([factorial(s) * factorial(m - s - 1) / factorial(m) for s in size[without]])
        gain = values[:, without + (1 << j)] - values[:, without]
        out[:, j] = np.tensordot(w, np.moveaxis(gain, 1, 0), axes=1)
    return out


def leave_one_out(values: np.ndarray) -> np.ndarray:
    """(n, M, ...) ``v(all) - v(all without j)`` from the coalition values (n, 2^M, ...)."""
    m = int(np.log2(values.shape[1]))
    full = 2**m - 1
    return np.stack([values[:, full] - values[:, full ^ (1 << j)] for j in range(m)], axis=1)


def _loo_bits(n_modalities: int) -> np.ndarray:
    """(M + 2, M) bool coalitions for leave-one-out: none, all, then all but modality j."""
    full = np.ones((1, n_modalities), bool)
    return np.concatenate([~full, full, ~np.eye(n_modalities, dtype=bool)])


@torch.no_grad()
def coalition_values(
    fi: FoldInputs, horizons: list[float], coalitions: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Risk (n, C) and S(horizons) (n, C, H) of one fold model for each coalition.

    Parameters
    ----------
    fi : the fold model and its preprocessed patients.
    horizons : times of the survival values (may be empty).
    coalitions : (C, M) bool, row c = the modalities coalition c shows the model (column j =
        ``model.modalities[j]``); default every coalition, bit j of c = modality j (C = 2^M).

    Risks are centred on the fold model's mean training risk (as in the ensemble's predictions).
    """
    model, data = fi.model, fi.data
    mods = model.modalities
    present = present_matrix(data, mods)
    bits = _bits(len(mods)) if coalitions is None else np.asarray(coalitions, bool)
    emb = encode(model, data, fi.device)
    n = len(data)
    risk = np.zeros((n, len(bits)))
    surv = np.zeros((n, len(bits), len(horizons)))
    for rows in data.batches(BATCH):
        e = {m: take(v, rows) for m, v in emb.items()}
        for c, member in enumerate(bits):
            seen = present[rows] & member[None, :]
            mask = {m: torch.from_numpy(seen[:, j].copy()) for j, m in enumerate(mods)}
            out = head_outputs(fi, rows, mask, e)
            risk[rows, c] = risk_of(model, out).cpu().numpy() - fi.fold.risk_center
            if horizons:
                surv[rows, c] = survival_of(model, out, horizons)
    return risk, surv


def _attributions(values: np.ndarray, exact: bool) -> tuple[np.ndarray, np.ndarray]:
    """(loo, shapley), each (n, M, ...), from the values of :func:`_bits` coalitions (``exact``)
    or of :func:`_loo_bits` coalitions (Shapley values NaN)."""
    if exact:
        return leave_one_out(values), shapley_values(values)
    loo = values[:, 1:2] - values[:, 2:]
    return loo, np.full(loo.shape, np.nan)


def modality_contributions(
    folds: list[FoldInputs], horizons: list[float], max_shapley_modalities: int | None = None
) -> pd.DataFrame:
    """Tidy table of per-patient modality contributions, averaged over the fold models.

    Parameters
    ----------
    folds : the fold models and their preprocessed patients.
    horizons : times of the survival-level contributions (may be empty).
    max_shapley_modalities : exact Shapley values (2^M coalitions) when the model has at most this
        many modalities, else leave-one-out only (M + 2 coalitions; ``shapley`` is NaN).
        None = always exact.

    Returns
    -------
    DataFrame, one row per (patient, modality): ``patient_id, modality, present, loo_delta,
    shapley, risk`` (all modalities seen), ``risk_no_data`` (none seen) and, per horizon t,
    ``loo_surv_<t>``, ``shapley_surv_<t>``, ``surv_<t>``, ``surv_no_data_<t>``.
    """
    mods = folds[0].model.modalities
    exact = max_shapley_modalities is None or len(mods) <= max_shapley_modalities
    bits = _bits(len(mods)) if exact else _loo_bits(len(mods))
    per_fold = [coalition_values(fi, horizons, bits) for fi in folds]
    risk = np.mean([r for r, _ in per_fold], axis=0)
    surv = np.mean([s for _, s in per_fold], axis=0) if horizons else None
    ids = folds[0].data.ids
    present = present_matrix(folds[0].data, mods)
    full = int(np.flatnonzero(bits.all(1))[0])  # the coalition of every modality
    none = int(np.flatnonzero(~bits.any(1))[0])
    loo, phi = _attributions(risk, exact)
    frame = pd.DataFrame(
        {
            "patient_id": np.repeat(ids, len(mods)),
            "modality": np.tile(mods, len(ids)),
            "present": present.reshape(-1),
            "loo_delta": loo.reshape(-1),
            "shapley": phi.reshape(-1),
            "risk": np.repeat(risk[:, full], len(mods)),
            "risk_no_data": np.repeat(risk[:, none], len(mods)),
        }
    )
    if surv is not None:
        loo, phi = _attributions(surv, exact)
        for h, t in enumerate(horizons):
            frame[f"loo_surv_{t:g}"] = loo[:, :, h].reshape(-1)
            frame[f"shapley_surv_{t:g}"] = phi[:, :, h].reshape(-1)
            frame[f"surv_{t:g}"] = np.repeat(surv[:, full, h], len(mods))
            frame[f"surv_no_data_{t:g}"] = np.repeat(surv[:, none, h], len(mods))
    return frame
