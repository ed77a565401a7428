"""The combiner: fit a model's linear members on the training patients, before the deep residual.

On real cohorts, and on the synthetic one, the clinical covariates alone give a strong Cox model.
Trained jointly from zero, a linear clinical term moves slowly while the deep branches fit noise
quickly, so early stopping would halt training before the clinical coefficients converge. So the
linear members (:class:`~multimodal.models.members.LinearMember`) are fitted first, by penalised
Cox partial likelihood (:class:`~multimodal.survival.penalized_cox.PenalizedCox`) on the training
patients only, and the head's weights on the fused representation are set to zero: at step 0 the
model *is* the penalised linear Cox model, and early stopping keeps only what the deep residual
adds beyond it.

How much each linear member counts is the combiner's choice (``members.combine``):

- ``joint``: one penalised Cox model over every member; each non-clinical member's penalty is
  chosen in turn by cross-validation inside the training patients (:func:`choose_penalty`).
- ``stacked``: each member's direction from its own penalised Cox model beside the clinical
  covariates; a second Cox model on the clinical covariates and the members' *out-of-fold* scores
  sets how much each counts (:func:`_stacked`).

Non-clinical members are then held fixed; the clinical member keeps training with the residual.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from multimodal.config import MembersConfig
from multimodal.registry import Registry
from multimodal.survival.losses import cox_nll
from multimodal.survival.metrics import harrell_c
from multimodal.survival.penalized_cox import PenalizedCox, blocks_output

__all__ = [
    "COMBINERS",
    "LinearFit",
    "choose_penalty",
    "fit_linear_members",
    "members_summary",
    "stratified_splits",
]

log = logging.getLogger(__name__)

#: ``members.combine`` name -> strategy ``(problem, members config, seed) -> (coef, penalties,
#: member weights)``.
COMBINERS: Registry[Callable[..., tuple[dict, dict, dict]]] = Registry("member combiner")


@dataclass
class LinearFit:
    """What :func:`fit_linear_members` fitted (saved with the fold, summarised in the report).

    Attributes
    ----------
    combine : the strategy (``joint`` or ``stacked``).
    penalties : member -> chosen ridge penalty (the clinical member: ``members.clinical_penalty``).
    weights : member -> weight per output column of the stacked second stage (``stacked`` only).
    loss : unpenalised training loss of the linear model.
    """

    combine: str
    penalties: dict[str, float] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    loss: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "penalties": self.penalties,
            "weights": self.weights,
            "loss": self.loss,
        }


@dataclass
class _Problem:
    """The linear members' fitting problem on one set of training patients."""

    designs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    time: np.ndarray
    event: np.ndarray
    clinical: str
    n_outputs: int
    multi: bool
    ridge: float
    everyone: torch.Tensor
    groups: np.ndarray | None = None

    def fit(
        self, rows: torch.Tensor, penalties: dict[str, float], free: tuple[str, ...] | None = None
    ) -> tuple[dict[str, torch.Tensor], float]:
        est = PenalizedCox(
            penalties,
            default_penalty=self.ridge,
            n_outputs=self.n_outputs,
            loss=self.loss_fn,
        ).fit(self.designs, rows=rows, free=free)
        return est.coef_, est.loss_

    def output(self, coef: dict[str, torch.Tensor]) -> torch.Tensor:
        return blocks_output(self.designs, coef)


def fit_linear_members(
    model: Any, data: Any, device: torch.device, members: MembersConfig, seed: int = 0
) -> LinearFit | None:
    """Fit ``model``'s linear members alone on ``data`` (training patients, never validation ones).

    Parameters
    ----------
    model : a :class:`~multimodal.models.model.MultimodalSurvivalModel`.
    data : the training patients (:class:`~multimodal.training.preprocess.FoldData`).
    device : where the model lives.
    members : the config's ``members`` block (penalties, folds, tolerance, score, combine).
    seed : seed of the penalty cross-validation folds.

    Returns
    -------
    LinearFit, or None when nothing was fitted: no linear member, a head without a partial
    likelihood (``head.partial_likelihood`` False: discrete-time heads), no event, or
    ``members.clinical_penalty`` null (the members then start at zero).
    """
    head = model.head
    if not model.members or members.clinical_penalty is None:
        return None
    if not getattr(head, "partial_likelihood", False):
        return None
    batch = data.batch(np.arange(len(data))).to(device)
    if float(batch.event.float().sum()) < 1:
        return None
    with torch.no_grad():
        designs = model.linear_designs(batch.inputs, batch.mask)
    multi = int(getattr(head, "n_offsets", 1)) > 1
    targets = {name: getattr(batch, name) for name in getattr(head, "targets", ())}

    def loss_fn(out: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        if multi:
            return head.loss(out[rows], **{k: v[rows] for k, v in targets.items()})
        return cox_nll(out[rows, 0], batch.time[rows], batch.event[rows], ties="efron")

    problem = _Problem(
        designs=designs,
        loss_fn=loss_fn,
        time=batch.time.cpu().numpy(),
        event=batch.event.cpu().numpy(),
        clinical=next(iter(model.members)),
        n_outputs=int(getattr(head, "n_offsets", 1)),
        multi=multi,
        ridge=float(members.clinical_penalty),
        everyone=torch.arange(len(data), device=batch.time.device),
        groups=getattr(data, "groups", None),
    )
    strategy = members.combine if len(model.members) > 1 else "joint"
    coef, penalties, weights = COMBINERS.get(strategy)(problem, members, seed)
    with torch.no_grad():
        loss = float(loss_fn(problem.output(coef), problem.everyone))
    fit = LinearFit(strategy, {problem.clinical: problem.ridge, **penalties}, weights, loss)
    return fit if _install(model, coef, fit) else None


def _install(model: Any, coef: dict[str, torch.Tensor], fit: LinearFit) -> bool:
    """Copy the fitted coefficients into the members; zero the head on the fused representation."""
    if not np.isfinite(fit.loss) or not all(bool(torch.isfinite(w).all()) for w in coef.values()):
        for lm in model.members.values():
            torch.nn.init.zeros_(lm.linear.weight)
        log.warning("the linear members' fit diverged; they start at zero")
        return False
    with torch.no_grad():
        for m, lm in model.members.items():
            lm.linear.weight.copy_(coef[m])
    for m, lm in model.members.items():  # held at the penalised fit from here on
        if m != model.clinical_modality:
            lm.linear.weight.requires_grad_(False)
    head_linear = getattr(model.head, "linear", None)
    if isinstance(head_linear, torch.nn.Linear):
        with torch.no_grad():
            head_linear.weight.zero_()
    log.debug("linear members: %s", fit.to_dict())
    return True


@COMBINERS.register("joint")
def _joint(problem: _Problem, members: MembersConfig, seed: int):
    """One penalised Cox model over every member; each non-clinical member's penalty chosen in
    turn (the others held at their choice so far, starting from the largest: off) by CV."""
    others = [m for m in problem.designs if m != problem.clinical]
    lams = {m: float(max(members.penalties)) for m in others}
    for name in others:

        def held_out(rows_fit: torch.Tensor, rows_held: torch.Tensor, penalty: float, name=name):
            coef, _ = problem.fit(rows_fit, {**lams, name: penalty})
            with torch.no_grad():
                out = problem.output(coef)
                if problem.multi or members.penalty_score == "likelihood":
                    return -float(problem.loss_fn(out, rows_held))
                held = rows_held.cpu().numpy()
                return float(
                    harrell_c(
                        problem.time[held],
                        problem.event[held].astype(bool),
                        out[rows_held, 0].cpu().numpy(),
                    )
                )

        lams[name] = choose_penalty(
            held_out,
            problem.event,
            members.penalties,
            folds=members.penalty_folds,
            seed=seed,
            device=problem.everyone.device,
            tolerance=members.penalty_tolerance,
            label=name,
            groups=problem.groups,
        )
    coef, _ = problem.fit(problem.everyone, lams)
    return coef, lams, {}


@COMBINERS.register("stacked")
def _stacked(problem: _Problem, members: MembersConfig, seed: int, folds: int = 5):
    """Stacked members.

    1. For each non-clinical member and each penalty but the largest ("off"), a penalised Cox
       model on the clinical covariates and that member is fitted on ``folds - 1`` folds of the
       training patients and scores the held-out fold: out-of-fold scores for every patient.
    2. The penalty whose out-of-fold scores fit best beside the clinical covariates (a Cox model
       on both; each penalty has the same one extra coefficient) is kept.
    3. A Cox model on the clinical covariates and every member's out-of-fold scores weighs them;
       each member's coefficients are its penalised fit on every training patient, times that
       weight.
    """
    clinical, everyone = problem.clinical, problem.everyone
    x_c, present_c = problem.designs[clinical]
    n_out = problem.n_outputs
    splits = stratified_splits(problem.event, folds, seed, everyone.device, problem.groups)

    def second_stage(scores: dict[str, torch.Tensor]):
        """Clinical coefficients and one weight per (member, output) on ``scores``; the loss."""
        w_c = torch.zeros(n_out, x_c.shape[1], device=x_c.device, requires_grad=True)
        gamma = torch.zeros(len(scores), n_out, device=x_c.device, requires_grad=True)
        stacked = torch.stack(list(scores.values()))  # (members, n, n_out)
        opt = torch.optim.LBFGS([w_c, gamma], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

        def out() -> torch.Tensor:
            return (x_c @ w_c.T) * present_c[:, None] + (stacked * gamma[:, None, :]).sum(0)

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = (
                problem.loss_fn(out(), everyone)
                + problem.ridge * w_c.pow(2).sum()
                + 1e-4 * gamma.pow(2).sum()
            )
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            loss = float(problem.loss_fn(out(), everyone))
            return w_c.detach(), dict(zip(scores, gamma.detach())), loss

    candidates = [lam for lam in members.penalties if lam < max(members.penalties)]
    candidates = candidates or list(members.penalties)
    oof: dict[str, torch.Tensor] = {}
    chosen: dict[str, float] = {}
    for m in problem.designs:
        if m == clinical:
            continue
        x, present = problem.designs[m]
        best = None
        for lam in candidates:
            scores = torch.zeros(len(everyone), n_out, device=x_c.device)
            for rows_fit, rows_held in splits:
                coef, _ = problem.fit(rows_fit, {m: lam}, free=(clinical, m))
                scores[rows_held] = ((x @ coef[m].T) * present[:, None])[rows_held]
            loss = second_stage({m: scores})[2]
            if best is None or loss < best[0]:
                best = (loss, lam, scores)
        _, chosen[m], oof[m] = best
    w_c, gamma, _ = second_stage(oof)
    coef = {clinical: w_c}
    for m in problem.designs:
        if m != clinical:
            direction = problem.fit(everyone, {m: chosen[m]}, free=(clinical, m))[0][m]
            coef[m] = gamma[m][:, None] * direction
    weights = {m: [round(float(g), 4) for g in gamma[m]] for m in gamma}
    # per fold, in model.json; the run summarises them once (members_summary)
    log.debug(
        "stacked members: penalties %s by %d-fold out-of-fold scores, weights %s",
        chosen,
        len(splits),
        weights,
    )
    return coef, chosen, weights


def stratified_splits(event, folds: int, seed: int, device=None, groups=None) -> list[tuple]:
    """(fit rows, held-out rows) index tensors of up to ``folds`` folds stratified by ``event``
    (fewer when there are fewer events or censored patients than folds; at least 2). ``groups``
    (a label per row, e.g. the patient of each landmark row) keeps a group's rows in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    event = np.asarray(event).astype(int)
    n_events = int(event.sum())
    k = max(2, min(folds, n_events, int(len(event) - n_events) or folds))
    if groups is not None:
        k = min(k, len(np.unique(groups)))
        splitter = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(event)), event, groups)
    else:
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        parts = splitter.split(np.zeros(len(event)), event)
    return [
        (torch.as_tensor(a, device=device), torch.as_tensor(b, device=device)) for a, b in parts
    ]


def choose_penalty(
    score,
    event: np.ndarray,
    penalties,
    folds: int = 3,
    seed: int = 0,
    device=None,
    tolerance: float = 0.0,
    label: str = "linear members",
    groups: np.ndarray | None = None,
) -> float:
    """The largest penalty whose mean held-out ``score(rows_fit, rows_held, penalty)`` is within
    ``tolerance`` of the best one (ties go to the larger penalty: the simpler model).

    Folds are stratified by ``event``. On a few hundred patients, smaller differences than the
    tolerance are noise, and the simpler model wins (a one-standard-error-like rule).
    """
    splits = stratified_splits(event, folds, seed, device, groups)
    scores = {lam: float(np.nanmean([score(a, b, lam) for a, b in splits])) for lam in penalties}
    top = max(scores.values())
    best = max(lam for lam, s in scores.items() if s >= top - tolerance)
    log.debug(
        "%s: ridge penalty %g chosen by %d-fold CV (held-out score %.4f)",
        label,
        best,
        len(splits),
        scores[best],
    )
    return best


def members_summary(
    fits: list[dict[str, Any] | None],
    deep_kept: list[bool] | None,
    off_penalty: float | None = None,
) -> str:
    """One plain sentence on what each fold's model kept, for the end of a run.

    Parameters
    ----------
    fits : per fold, :meth:`LinearFit.to_dict` as saved in ``model.json`` (None: no linear fit).
    deep_kept : per fold, whether the deep residual was kept (trained past epoch 0); None when the
        model has no deep residual.
    off_penalty : the penalty that switches a member off (the largest of ``members.penalties``);
        a ``joint`` member fitted with it counts as not kept.

    Returns
    -------
    ``Members kept (mean weight over 5 folds; ...): clinical 1.00, genomics 0.62, report 0.08; deep
    residual kept in 1 of 5 folds`` (``stacked``: the base member counts fully, the others by their
    second-stage weight, 1 = as fitted alone, 0 = ignored), or, for ``joint``, in how many folds
    each member is kept.
    """
    n = len(fits)
    done = [f for f in fits if f]
    parts = []
    if done:
        base = next(iter(done[0]["penalties"]))
        names = list(dict.fromkeys(m for f in done for m in f["penalties"]))
        of = f"{len(done)} folds" if len(done) == n else f"{len(done)} of {n} folds"
        if any(f["combine"] == "stacked" for f in done):
            weight = {
                m: float(np.mean([np.mean(f["weights"][m]) for f in done if m in f["weights"]]))
                for m in names
                if m != base and any(m in f["weights"] for f in done)
            }
            shown = [f"{base} 1.00", *(f"{m} {w:.2f}" for m, w in weight.items())]
            parts.append(
                f"Members kept (mean weight over {of}; 1 = as fitted alone, 0 = ignored): "
                + ", ".join(shown)
            )
        else:

            def kept(f: dict[str, Any], m: str) -> bool:
                lam = f["penalties"].get(m)
                return lam is not None and (m == base or off_penalty is None or lam < off_penalty)

            shown = [f"{m} in {sum(kept(f, m) for f in done)} of {n}" for m in names]
            parts.append(f"Members kept (folds where each counts): {', '.join(shown)}")
    elif deep_kept is not None:
        return "Members kept: the deep model alone (no linear members were fitted)"
    if deep_kept is None:
        parts.append("no deep residual")
    else:
        parts.append(f"deep residual kept in {sum(map(bool, deep_kept))} of {len(deep_kept)} folds")
    return "; ".join(parts)
