"""Start the linear clinical path at the clinical Cox model's coefficients.

On real cohorts, and on the synthetic one, the clinical covariates alone give a strong Cox model.
Trained jointly from zero, the linear clinical path of :class:`MultimodalSurvivalModel` moves
slowly while the deep branches fit noise quickly, so early stopping halts training before the
clinical coefficients have converged and the fused model ends up *worse* than a clinical Cox
model. Fitting the clinical path first (a ridge-penalised Cox fit on the training patients, by
L-BFGS) and only then training the rest makes the deep branches learn what the other modalities
add beyond the clinical covariates; early stopping then decides how much of that to keep.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from multimodal.survival.losses import cox_nll

__all__ = ["warm_start_clinical"]

log = logging.getLogger(__name__)


def warm_start_clinical(
    model, data, device, ridge: float = 1e-2, max_iter: int = 200, ties: str = "efron"
) -> float | None:
    """Fit ``model.clinical_linear`` alone by penalised Cox partial likelihood on ``data``.

    Parameters
    ----------
    model : a :class:`~multimodal.models.model.MultimodalSurvivalModel` with a linear clinical
        path and a Cox head (other heads are left untouched).
    data : the training patients (:class:`~multimodal.training.preprocess.FoldData`); never
        validation patients.
    device : where the model lives.
    ridge : L2 penalty on the coefficients, added to the mean negative log partial likelihood.
        It also resolves the one-hot columns' redundancy (every level has a column).
    max_iter : L-BFGS iterations.
    ties : Cox ties method.

    Returns
    -------
    The final penalised loss, or None when nothing was fitted (no clinical path, not a Cox head,
    no events).
    """
    if getattr(model, "clinical_modality", None) is None or model.head.__class__.__name__ != (
        "CoxHead"
    ):
        return None
    m = model.clinical_modality
    batch = data.batch(np.arange(len(data))).to(device)
    present = batch.mask[m].float()
    if float((batch.event.float() * present).sum()) < 1:
        return None
    with torch.no_grad():
        design = model._clinical_design(batch.inputs[m]).float()
    layer = model.clinical_linear
    opt = torch.optim.LBFGS(
        layer.parameters(), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        risk = layer(design).squeeze(-1) * present
        loss = cox_nll(risk, batch.time, batch.event, ties=ties)
        loss = loss + ridge * layer.weight.pow(2).sum()
        loss.backward()
        return loss

    loss = float(opt.step(closure))
    if not np.isfinite(loss):
        torch.nn.init.zeros_(layer.weight)
        log.warning("clinical warm start diverged; the linear clinical path starts at zero")
        return None
    log.debug("clinical warm start: penalised loss %.4f", loss)
    return loss
