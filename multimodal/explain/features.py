"""Feature attributions for tabular modalities: genomic features and clinical covariates.

- Genomic features and numeric clinical covariates: integrated gradients (captum) of the risk with
  respect to the preprocessed input, from the training mean (zero after the fold's z-scoring) to
  the patient's value. Completeness: a patient's attributions sum to ``risk(x) - risk(baseline)``
  up to the integral's discretisation. Genomic attributions are also summed per group (pathway,
  ``rna``/``mut``/``cnv``, ...) from the cohort's group table.
- Categorical clinical covariates have no path to integrate along, so each gets its expected
  occlusion effect: ``risk(x) - sum_v p_v risk(x with the covariate set to level v)``, with ``p_v``
  the level frequencies among the explained patients (for a model linear in the one-hot levels
  this equals integrated gradients from the mean one-hot vector).

Only patients who have the modality get rows. Every number is averaged over the fold models;
a feature that a fold's preprocessing did not select counts 0 for that fold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.explain._forward import (
    FoldInputs,
    encode,
    head_outputs,
    present_matrix,
    risk_of,
    take,
)

__all__ = ["clinical_attributions", "feature_attributions", "genomic_attributions"]

#: Rows (patients x integration steps) per captum forward pass.
_ROWS_PER_PASS = 4096


def _mask_rows(fi: FoldInputs, rows: np.ndarray) -> dict[str, torch.Tensor]:
    present = present_matrix(fi.data, fi.model.modalities)[rows]
    return {m: torch.from_numpy(present[:, j].copy()) for j, m in enumerate(fi.model.modalities)}


def _integrated_gradients(
    fi: FoldInputs,
    rows: np.ndarray,
    emb: dict[str, Any],
    x: torch.Tensor,
    build: Callable[[torch.Tensor, np.ndarray], dict[str, Any]],
    n_steps: int,
) -> np.ndarray:
    """IG of the fold model's risk w.r.t. ``x`` (len(rows), F) from a zero baseline.

    ``build(scaled_x, tiled_rows)`` returns the live model inputs for the scaled rows.
    """

    def forward(xx: torch.Tensor) -> torch.Tensor:
        rep = xx.shape[0] // len(chunk)
        tiled = np.tile(chunk, rep)  # the integration steps are stacked step-major
        e = {m: take(v, np.tile(np.arange(len(chunk)), rep)) for m, v in chunk_emb.items()}
        out = head_outputs(fi, tiled, _mask_rows(fi, tiled), e, live=build(xx, tiled))
        return risk_of(fi.model, out)

    per = max(1, _ROWS_PER_PASS // n_steps)
    parts = []
    for start in range(0, len(rows), per):
        chunk = rows[start : start + per]
        chunk_emb = {m: take(v, chunk) for m, v in emb.items()}
        xc = x[start : start + per].to(fi.device).float()
        parts.append(integrated_gradients(forward, xc, n_steps).detach().cpu().numpy())
    return np.concatenate(parts) if parts else np.zeros((0, x.shape[1]))


def integrated_gradients(
    forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, n_steps: int
) -> torch.Tensor:
    """Integrated gradients of ``forward`` (rows -> one output per row) at ``x`` (B, F) from a
    zero baseline, by Gauss-Legendre quadrature over the path (``n_steps`` nodes).

    ``forward`` receives the ``n_steps`` scaled copies of ``x`` stacked step-major, (n_steps * B,
    F). The attributions of a row sum to ``forward(x) - forward(0)`` up to the quadrature error.
    The same rule as captum's ``IntegratedGradients`` (its default ``gausslegendre``), without
    importing captum, which pulls in matplotlib: a third of a second on the dashboard's first
    patient page.
    """
    nodes, weights = np.polynomial.legendre.leggauss(int(n_steps))
    alphas = torch.as_tensor(0.5 * (nodes + 1.0), dtype=x.dtype, device=x.device)
    step = torch.as_tensor(0.5 * weights, dtype=x.dtype, device=x.device)
    scaled = (alphas.view(-1, 1, 1) * x.unsqueeze(0)).reshape(-1, x.shape[1]).detach()
    scaled.requires_grad_(True)
    with torch.enable_grad():
        (grads,) = torch.autograd.grad(forward(scaled).sum(), scaled)
    path = (grads.view(len(alphas), *x.shape) * step.view(-1, 1, 1)).sum(0)
    return path * x


COLUMNS = ["patient_id", "modality", "feature", "group", "value", "attribution"]


def _long(
    fi: FoldInputs, rows: np.ndarray, attr: np.ndarray, names: list[str], group: str
) -> pd.DataFrame:
    """(patients x features) attributions of one fold -> long rows."""
    wide = pd.DataFrame(attr, index=[fi.data.ids[r] for r in rows], columns=list(names))
    frame = (
        wide.rename_axis(index="patient_id", columns="feature")
        .stack(future_stack=True)
        .rename("attribution")
    )
    return frame.reset_index().assign(group=group)


def _fold_mean(parts: list[pd.DataFrame], n_folds: int, m: str, cohort: Any) -> pd.DataFrame:
    """Mean over the fold models (a feature a fold did not select counts 0) + raw values."""
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    frame = (
        pd.concat(parts)
        .groupby(["patient_id", "feature", "group"], sort=False)["attribution"]
        .sum()
        .div(n_folds)
        .reset_index()
    )
    frame.insert(1, "modality", m)
    source = getattr(cohort, "sources", {}).get(m)
    table = source.table if source is not None else pd.DataFrame()
    table = table[~table.index.duplicated()] if table.index.name == "patient_id" else table
    cols = [c for c in frame["feature"].unique() if c in table.columns]
    if cols:
        raw = (
            table[cols].rename_axis(index="patient_id", columns="feature").stack(future_stack=True)
        )
        raw = raw.rename("value").reset_index()
        frame = frame.merge(raw, on=["patient_id", "feature"], how="left")
    else:
        frame["value"] = np.nan
    return frame[COLUMNS]


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def genomic_attributions(folds: list[FoldInputs], cohort: Any, n_steps: int = 32) -> pd.DataFrame:
    """Integrated gradients of every genomic feature, per patient (rows: patient x feature).

    Returns
    -------
    DataFrame ``patient_id, modality, feature, group, value, attribution``; ``value`` is the raw
    value in the cohort table, ``group`` the feature's group ("" when it has none).
    """
    model = folds[0].model
    mods = [m for m in model.modalities if model.specs[m].kind == "genomics"]
    out = []
    for m in mods:
        parts = []
        group_of: dict[str, str] = {}
        for fi in folds:
            store = fi.data.stores[m]
            if store.values.dim() != 2:
                continue
            spec = store.spec
            names = list(
                spec.feature_names or [f"feature_{j}" for j in range(store.values.shape[1])]
            )
            for g, idx in zip(spec.group_names or [], spec.groups or [], strict=False):
                for j in idx:
                    group_of.setdefault(names[j], g)
            rows = np.flatnonzero(store.present)
            emb = encode(fi.model, fi.data, fi.device, [x for x in fi.model.modalities if x != m])

            def build(xx: torch.Tensor, tiled: np.ndarray, m: str = m) -> dict[str, Any]:
                return {m: xx}

            attr = _integrated_gradients(fi, rows, emb, store.values[rows], build, n_steps)
            parts.append(_long(fi, rows, attr, names, ""))
        frame = _fold_mean(parts, len(folds), m, cohort)
        frame["group"] = frame["feature"].map(group_of).fillna("")
        out.append(frame)
    return _concat(out)


def _categorical_effects(
    fi: FoldInputs, m: str, rows: np.ndarray, emb: dict[str, Any], cards: list[int]
) -> np.ndarray:
    """(len(rows), q) expected-occlusion effects of the categorical covariates."""
    x = fi.data.stores[m].batch(rows)
    cat = x["categorical"]
    mask = _mask_rows(fi, rows)
    e = {k: take(v, rows) for k, v in emb.items()}

    def risk_with(c: torch.Tensor) -> np.ndarray:
        live = {m: {k: (c if k == "categorical" else v).to(fi.device) for k, v in x.items()}}
        with torch.no_grad():
            return risk_of(fi.model, head_outputs(fi, rows, mask, e, live=live)).cpu().numpy()

    base = risk_with(cat)
    out = np.zeros((len(rows), len(cards)))
    for j in range(len(cards)):
        levels, counts = np.unique(cat[:, j].numpy(), return_counts=True)
        keep = levels > 0  # level 0 = unknown / unseen: not a reference value
        levels, counts = levels[keep], counts[keep]
        if not len(levels):
            continue
        expected = np.zeros(len(rows))
        for lv, cnt in zip(levels, counts / counts.sum(), strict=True):
            c = cat.clone()
            c[:, j] = int(lv)
            expected += cnt * risk_with(c)
        out[:, j] = base - expected
    return out


def clinical_attributions(folds: list[FoldInputs], cohort: Any, n_steps: int = 32) -> pd.DataFrame:
    """Attributions of the clinical covariates (numeric: IG; categorical: expected occlusion).

    Returns
    -------
    DataFrame ``patient_id, modality, feature, group, value, attribution`` (``group`` is
    ``"numeric"`` or ``"categorical"``).
    """
    model = folds[0].model
    mods = [m for m in model.modalities if model.specs[m].kind == "clinical"]
    out = []
    for m in mods:
        parts = []
        for fi in folds:
            store = fi.data.stores[m]
            prep = fi.fold.pipelines[m].prep
            rows = np.flatnonzero(store.present)
            emb = encode(fi.model, fi.data, fi.device, [x for x in fi.model.modalities if x != m])
            if prep.numeric:

                def build(
                    xx: torch.Tensor, tiled: np.ndarray, m: str = m, store=store
                ) -> dict[str, Any]:
                    d = {k: v.to(xx.device) for k, v in store.batch(tiled).items()}
                    d["numeric"] = xx
                    return {m: d}

                x = store.batch(rows)["numeric"]
                attr = _integrated_gradients(fi, rows, emb, x, build, n_steps)
                parts.append(_long(fi, rows, attr, prep.numeric, "numeric"))
            if prep.categorical:
                eff = _categorical_effects(fi, m, rows, emb, list(prep.cardinalities))
                parts.append(_long(fi, rows, eff, prep.categorical, "categorical"))
        out.append(_fold_mean(parts, len(folds), m, cohort))
    return _concat(out)


def feature_attributions(folds: list[FoldInputs], cohort: Any, n_steps: int = 32) -> pd.DataFrame:
    """Genomic and clinical attributions in one table (see the module docstring)."""
    return _concat(
        [
            genomic_attributions(folds, cohort, n_steps),
            clinical_attributions(folds, cohort, n_steps),
        ]
    )
