"""Start the linear clinical path at the clinical Cox model's coefficients.

On real cohorts, and on the synthetic one, the clinical covariates alone give a strong Cox model.
Trained jointly from zero, the linear clinical path of :class:`MultimodalSurvivalModel` moves
slowly while the deep branches fit noise quickly, so early stopping halts training before the
clinical coefficients have converged and the fused model ends up *worse* than a clinical Cox
model. Fitting the clinical path first (a ridge-penalised Cox fit on the training patients, by
L-BFGS), with the head's weights on the fused representation set to zero, and only then training
the rest makes the deep branches learn what the other modalities add beyond the clinical
covariates; early stopping then decides how much of that to keep.

With ``fusion.linear_modalities`` (genomics, pooled report embeddings), the linear part is a
ridge-penalised Cox model on the clinical covariates *and* those features; each modality's penalty
is chosen by cross-validation on the training patients only (:func:`choose_penalty`) and those
coefficients are then held fixed.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from multimodal.survival.losses import cox_nll

__all__ = ["choose_penalty", "warm_start_clinical"]

log = logging.getLogger(__name__)


def warm_start_clinical(
    model,
    data,
    device,
    ridge: float = 1e-2,
    max_iter: int = 200,
    ties: str = "efron",
    penalties: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e4),
    folds: int = 3,
    seed: int = 0,
    tolerance: float = 0.005,
    score: str = "c_index",
) -> float | None:
    """Fit the model's linear paths alone by penalised Cox partial likelihood on ``data``.

    Parameters
    ----------
    model : a :class:`~multimodal.models.model.MultimodalSurvivalModel` with a linear clinical
        path and a Cox head, or a head with one Cox risk per task / cause / transition
        (``head.n_offsets > 1``, fitted with its own joint likelihood); other heads are left alone.
    data : the training patients (:class:`~multimodal.training.preprocess.FoldData`); never
        validation patients.
    device : where the model lives.
    ridge : L2 penalty on the clinical coefficients, added to the mean negative log partial
        likelihood. It also resolves the one-hot columns' redundancy (every level has a column).
    max_iter : L-BFGS iterations.
    ties : Cox ties method.
    penalties : candidate L2 penalties of each ``model.omics_linear`` term (genomics, text); the
        largest switches a term off. Each term's penalty is chosen in turn, the others held at
        their choice so far (the largest at first).
    folds : cross-validation folds, within ``data``, that choose among ``penalties``.
    seed : seed of those folds.
    tolerance : the largest penalty within this much of the best held-out score is taken.
    score : ``"c_index"`` (Harrell's C of the held-out patients) or ``"likelihood"`` (their mean
        Cox partial log-likelihood, risk sets within the held-out patients). Heads with several
        outputs always use their own likelihood.

    Returns
    -------
    The final penalised loss, or None when nothing was fitted (no clinical path, not a Cox head,
    no events).
    """
    multi = getattr(model.head, "n_offsets", 1) > 1
    if getattr(model, "clinical_modality", None) is None or not (
        multi or model.head.__class__.__name__ == "CoxHead"
    ):
        return None
    batch = data.batch(np.arange(len(data))).to(device)
    if float(batch.event.float().sum()) < 1:
        return None
    with torch.no_grad():
        designs = model.linear_design(batch)
    layers = {model.clinical_modality: model.clinical_linear, **dict(model.omics_linear.items())}
    targets = {name: getattr(batch, name) for name in getattr(model.head, "targets", ())}

    def loss_fn(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if multi:
            return model.head.loss(out[rows], **{k: v[rows] for k, v in targets.items()})
        return cox_nll(out[rows, 0], batch.time[rows], batch.event[rows], ties=ties)

    def linear_out(weights: dict[str, torch.Tensor]) -> torch.Tensor:
        out = 0.0
        for m, (x, present) in designs.items():
            out = out + (x @ weights[m].T) * present[:, None]
        return out

    def fit(rows: torch.Tensor, lams: dict[str, float]) -> tuple[dict[str, torch.Tensor], float]:
        weights = {m: torch.zeros_like(layer.weight) for m, layer in layers.items()}
        for w in weights.values():
            w.requires_grad_(True)
        opt = torch.optim.LBFGS(
            list(weights.values()), lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(linear_out(weights), rows)
            for m, w in weights.items():
                loss = loss + lams.get(m, ridge) * w.pow(2).sum()
            loss.backward()
            return loss

        loss = float(opt.step(closure).detach())
        return {m: w.detach() for m, w in weights.items()}, loss

    everyone = torch.arange(len(data), device=batch.time.device)
    # Each linear modality gets its own penalty, chosen in turn (the others held at their choice,
    # starting from the largest penalty: off) by cross-validation within the training patients.
    lams = {m: float(max(penalties)) for m in model.omics_linear}
    if len(model.omics_linear):
        from multimodal.survival.metrics import harrell_c

        time_np, event_np = batch.time.cpu().numpy(), batch.event.cpu().numpy()
        for name in model.omics_linear:

            def held_out(
                rows_fit: torch.Tensor, rows_held: torch.Tensor, penalty: float, name=name
            ) -> float:
                weights, _ = fit(rows_fit, {**lams, name: penalty})
                with torch.no_grad():
                    out = linear_out(weights)
                    if multi or score == "likelihood":
                        return -float(loss_fn(out, rows_held))
                    held = rows_held.cpu().numpy()
                    return float(
                        harrell_c(
                            time_np[held],
                            event_np[held].astype(bool),
                            out[rows_held, 0].cpu().numpy(),
                        )
                    )

            lams[name] = choose_penalty(
                held_out,
                event_np,
                penalties,
                folds=folds,
                seed=seed,
                device=everyone.device,
                tolerance=tolerance,
                label=name,
            )
    weights, loss = fit(everyone, lams)
    if not np.isfinite(loss):
        for layer in layers.values():
            torch.nn.init.zeros_(layer.weight)
        log.warning("linear warm start diverged; the linear paths start at zero")
        return None
    with torch.no_grad():
        for m, layer in layers.items():
            layer.weight.copy_(weights[m])
    for layer in model.omics_linear.values():  # held at the penalised fit from here on
        layer.weight.requires_grad_(False)
    # The other modalities start as a zero residual: at step 0 the model *is* the penalised linear
    # Cox model, and early stopping keeps only what the deep branches add beyond it.
    head_linear = getattr(model.head, "linear", None)
    if isinstance(head_linear, torch.nn.Linear):
        with torch.no_grad():
            head_linear.weight.zero_()
    log.debug("linear warm start: penalised loss %.4f (penalties %s)", loss, lams)
    return loss


def choose_penalty(
    score,
    event: np.ndarray,
    penalties,
    folds: int = 3,
    seed: int = 0,
    device=None,
    tolerance: float = 0.0,
    label: str = "linear paths",
):
    """The largest penalty whose mean held-out ``score(rows_fit, rows_held, penalty)`` is within
    ``tolerance`` of the best one (ties go to the larger penalty: the simpler model).

    Folds are stratified by ``event``.
    """
    from sklearn.model_selection import StratifiedKFold

    n_events = int(np.asarray(event).sum())
    k = max(2, min(folds, n_events, int(len(event) - n_events) or folds))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = [
        (torch.as_tensor(a, device=device), torch.as_tensor(b, device=device))
        for a, b in splitter.split(np.zeros(len(event)), np.asarray(event).astype(int))
    ]
    scores = {lam: float(np.nanmean([score(a, b, lam) for a, b in splits])) for lam in penalties}
    top = max(scores.values())
    # the largest penalty whose score is within `tolerance` of the best (a one-standard-error-like
    # rule: on a few hundred patients, smaller differences are noise and the simpler model wins)
    best = max(lam for lam, s in scores.items() if s >= top - tolerance)
    best_score = scores[best]
    log.info(
        "%s: ridge penalty %g chosen by %d-fold CV (held-out score %.4f)",
        label,
        best,
        k,
        best_score,
    )
    return best
