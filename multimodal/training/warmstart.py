"""Start the linear clinical path at the clinical Cox model's coefficients.

On real cohorts, and on the synthetic one, the clinical covariates alone give a strong Cox model.
Trained jointly from zero, the linear clinical path of :class:`MultimodalSurvivalModel` moves
slowly while the deep branches fit noise quickly, so early stopping halts training before the
clinical coefficients have converged and the fused model ends up *worse* than a clinical Cox
model. Fitting the clinical path first (a ridge-penalised Cox fit on the training patients, by
L-BFGS), with the head's weights on the fused representation set to zero, and only then training
the rest makes the deep branches learn what the other modalities add beyond the clinical
covariates; early stopping then decides how much of that to keep.

With ``fusion.linear_modalities`` (genomics, pooled report embeddings, frozen image embeddings),
the linear part is a ridge-penalised Cox model on the clinical covariates *and* those features;
each modality's penalty is chosen by cross-validation on the training patients only
(:func:`choose_penalty`), or, with ``train.linear_combine: stacked``, each modality is fitted beside
the clinical covariates alone and a second Cox model on the modalities' out-of-fold scores weighs
them (:func:`_stack`). Those coefficients are then held fixed.
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
    combine: str = "joint",
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
    combine : ``"joint"``: one penalised Cox model over the clinical covariates and every linear
        modality, each modality's penalty chosen in turn by CV. ``"stacked"``: each modality's
        direction comes from its own penalised Cox model with the clinical covariates, and a
        second Cox model on the clinical covariates and the modalities' *out-of-fold* scores sets
        how much each counts (:func:`_stack`). A penalty small enough to find the right direction
        in a few hundred dimensions also inflates the scores; the joint fit can only trade one for
        the other, the second stage re-weighs them on scores the first never saw.

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

    def fit(
        rows: torch.Tensor, lams: dict[str, float], only: tuple[str, ...] | None = None
    ) -> tuple[dict[str, torch.Tensor], float]:
        """Penalised fit on ``rows``; with ``only``, the other linear modalities stay at zero."""
        weights = {m: torch.zeros_like(layer.weight) for m, layer in layers.items()}
        free = [w for m, w in weights.items() if only is None or m in only]
        for w in free:
            w.requires_grad_(True)
        opt = torch.optim.LBFGS(free, lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(linear_out(weights), rows)
            for m, w in weights.items():
                if w.requires_grad:
                    loss = loss + lams.get(m, ridge) * w.pow(2).sum()
            loss.backward()
            return loss

        loss = float(opt.step(closure).detach())
        return {m: w.detach() for m, w in weights.items()}, loss

    everyone = torch.arange(len(data), device=batch.time.device)
    if combine == "stacked" and len(model.omics_linear):
        weights, loss = _stack(
            fit,
            linear_out,
            loss_fn,
            designs,
            model,
            batch.event.cpu().numpy(),
            everyone,
            penalties,
            ridge,
            seed,
            max_iter,
        )
        return _install(model, layers, weights, loss)
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
    log.debug("linear warm start: penalties %s", lams)
    return _install(model, layers, weights, loss)


def _install(model, layers, weights, loss: float) -> float | None:
    """Copy the fitted linear weights into ``model``; zero the head on the fused representation."""
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
    log.debug("linear warm start: penalised loss %.4f", loss)
    return loss


def _stack(
    fit,
    linear_out,
    loss_fn,
    designs,
    model,
    event,
    everyone,
    penalties,
    ridge,
    seed,
    max_iter,
    folds: int = 5,
):
    """Stacked linear paths (``combine="stacked"`` of :func:`warm_start_clinical`).

    1. For each linear modality and each penalty but the largest ("off"), a penalised Cox model on
       the clinical covariates and that modality is fitted on ``folds - 1`` folds of the training
       patients and scores the held-out fold: out-of-fold scores for every patient.
    2. The penalty whose out-of-fold scores fit best beside the clinical covariates (a Cox model
       on both, all training patients; each penalty has the same one extra coefficient) is kept.
    3. A Cox model on the clinical covariates and every modality's out-of-fold scores weighs them;
       each modality's direction is then its penalised fit on every training patient, times that
       weight.

    Returns the weights of every linear layer and the unpenalised loss of the combined model.
    """
    clinical = model.clinical_modality
    x_c, present_c = designs[clinical]
    n_out = model.clinical_linear.weight.shape[0]
    splits = _stratified_splits(event, folds, seed, everyone.device)
    k = len(splits)

    def contribution(m: str, w: torch.Tensor) -> torch.Tensor:
        x, present = designs[m]
        return (x @ w.T) * present[:, None]

    def second_stage(scores: dict[str, torch.Tensor]):
        """Clinical weights and one weight per (modality, output) on ``scores``; and the loss."""
        w_c = torch.zeros(n_out, x_c.shape[1], device=x_c.device, requires_grad=True)
        gamma = torch.zeros(len(scores), n_out, device=x_c.device, requires_grad=True)
        stacked = torch.stack(list(scores.values()))  # (modalities, n, n_out)
        opt = torch.optim.LBFGS(
            [w_c, gamma], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
        )

        def out() -> torch.Tensor:
            return (x_c @ w_c.T) * present_c[:, None] + (stacked * gamma[:, None, :]).sum(0)

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(out(), everyone) + ridge * w_c.pow(2).sum() + 1e-4 * gamma.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            return w_c.detach(), dict(zip(scores, gamma.detach())), float(loss_fn(out(), everyone))

    candidates = [lam for lam in penalties if lam < max(penalties)] or list(penalties)
    oof: dict[str, torch.Tensor] = {}
    chosen: dict[str, float] = {}
    for m in model.omics_linear:
        best = None
        for lam in candidates:
            scores = torch.zeros(len(everyone), n_out, device=x_c.device)
            for rows_fit, rows_held in splits:
                w, _ = fit(rows_fit, {m: lam}, only=(clinical, m))
                scores[rows_held] = contribution(m, w[m])[rows_held]
            loss = second_stage({m: scores})[2]
            if best is None or loss < best[0]:
                best = (loss, lam, scores)
        _, chosen[m], oof[m] = best
    w_c, gamma, _ = second_stage(oof)
    weights = {clinical: w_c}
    for m in model.omics_linear:
        direction = fit(everyone, {m: chosen[m]}, only=(clinical, m))[0][m]
        weights[m] = gamma[m][:, None] * direction
    log.info(
        "stacked linear paths: penalties %s by %d-fold out-of-fold scores, their weights %s",
        chosen,
        k,
        {m: [round(float(g), 3) for g in gamma[m]] for m in gamma},
    )
    with torch.no_grad():
        loss = float(loss_fn(linear_out(weights), everyone))
    return weights, loss


def _stratified_splits(event, folds: int, seed: int, device=None) -> list[tuple]:
    """(fit rows, held-out rows) index tensors of up to ``folds`` folds stratified by ``event``
    (fewer when there are fewer events or censored patients than folds; at least 2)."""
    from sklearn.model_selection import StratifiedKFold

    event = np.asarray(event).astype(int)
    n_events = int(event.sum())
    k = max(2, min(folds, n_events, int(len(event) - n_events) or folds))
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return [
        (torch.as_tensor(a, device=device), torch.as_tensor(b, device=device))
        for a, b in splitter.split(np.zeros(len(event)), event)
    ]


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
    splits = _stratified_splits(event, folds, seed, device)
    k = len(splits)
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
