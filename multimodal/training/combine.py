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
from multimodal.console import warn_once
from multimodal.exceptions import ConfigError, DataError
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
    fallback : the second stage lost to the clinical covariates alone on held-out training
        patients and every member weight was set to 0 (``members.stack_fallback``).
    """

    combine: str
    penalties: dict[str, float] = field(default_factory=dict)
    weights: dict[str, list[float]] = field(default_factory=dict)
    loss: float = float("nan")
    fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "penalties": self.penalties,
            "weights": self.weights,
            "loss": self.loss,
            "fallback": self.fallback,
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
    trees: _TreeProblem | None = None
    fallback: bool = False  # set by the stacked combiner (members.stack_fallback)
    sparse: dict[str, float] = field(default_factory=dict)
    """Blocks fitted with an elastic-net penalty (block -> l1 ratio) instead of a ridge one:
    the cumulative products of ``members.interaction_form: cumulative`` (or ``both``)."""

    def fit(
        self,
        rows: torch.Tensor,
        penalties: dict[str, float],
        free: tuple[str, ...] | None = None,
        init: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], float]:
        est = PenalizedCox(
            penalties,
            default_penalty=self.ridge,
            n_outputs=self.n_outputs,
            loss=self.loss_fn,
        ).fit(self.designs, rows=rows, free=free, init=init)
        return est.coef_, est.loss_

    def output(self, coef: dict[str, torch.Tensor]) -> torch.Tensor:
        return blocks_output(self.designs, coef)


@dataclass
class _TreeProblem:
    """The tree members' fitting problem on the same training patients.

    The trees' design comes from the model's own :meth:`TreeTerms.design` (the one inference
    uses), with the columns and linear directions of each fit passed in; ``arrays`` are numpy
    copies of the inputs for choosing those columns.
    """

    terms: Any  # multimodal.models.tree_terms.TreeTerms
    clinical: torch.Tensor
    inputs: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]
    time: np.ndarray
    event: np.ndarray
    n_features: int
    options: dict[str, dict[str, Any]]
    seed: int
    selection: str = "cox_score"
    scales: dict[str, np.ndarray | None] = field(default_factory=dict)

    def design(
        self, rows: np.ndarray, columns: dict[str, np.ndarray], scores: dict[str, np.ndarray]
    ) -> np.ndarray:
        """:meth:`TreeTerms.design` of ``rows`` with these chosen columns and directions."""
        device = self.clinical.device
        idx = torch.as_tensor(rows, device=device)
        with torch.no_grad():
            design = self.terms.design(
                self.clinical[idx],
                {m: x[idx] for m, x in self.inputs.items()},
                {m: present[idx] for m, present in self.mask.items()},
                columns={m: torch.as_tensor(c, device=device) for m, c in columns.items()},
                scores={m: torch.as_tensor(w, device=device) for m, w in scores.items()},
            )
        return design.cpu().numpy()

    def fit(self, kind: str, rows: np.ndarray, scores: dict[str, np.ndarray]) -> tuple:
        """One ensemble of ``kind`` on ``rows``, its features chosen on ``rows`` alone; ``scores``
        are the linear members' directions fitted on the same rows."""
        from multimodal.models.tree_terms import select_columns, select_columns_by_variance
        from multimodal.models.trees import fit_tree_ensemble

        t, e = self.time[rows], self.event[rows]

        def choose(m: str, x: np.ndarray, present: np.ndarray) -> np.ndarray:
            if self.selection == "variance":
                return select_columns_by_variance(x, present, self.n_features, self.scales.get(m))
            return select_columns(x, present, t, e, self.n_features)

        columns = {m: choose(m, x[rows], present[rows]) for m, (x, present) in self.arrays.items()}
        design = self.design(rows, columns, scores)
        ensemble = fit_tree_ensemble(
            kind, design, t, e, seed=self.seed, options=self.options.get(kind)
        )
        return ensemble, columns, scores

    def predict(self, fitted: tuple, rows: np.ndarray) -> np.ndarray:
        ensemble, columns, scores = fitted
        return ensemble.predict_numpy(self.design(rows, columns, scores))


def _tree_problem(model: Any, batch: Any, designs: dict, members: MembersConfig, seed: int):
    """The tree members' problem, or None when the model has none."""
    terms = getattr(model, "trees", None)
    if terms is None:
        return None
    x_c, present_c = designs[model.clinical_modality]
    inputs = {m: batch.inputs[m].reshape(len(present_c), -1) for m in terms.inputs}
    mask = {m: batch.mask[m] for m in terms.inputs}
    return _TreeProblem(
        terms=terms,
        clinical=x_c * present_c[:, None],  # as the model's forward hides a missing clinical
        inputs=inputs,
        mask=mask,
        arrays={
            m: (
                inputs[m].double().cpu().numpy(),
                mask[m].cpu().numpy().astype(np.float64),
            )
            for m in terms.inputs
        },
        time=batch.time.cpu().numpy().astype(np.float64),
        event=batch.event.cpu().numpy().astype(bool),
        n_features=int(members.tree_features),
        options=dict(members.tree_options),
        seed=seed,
        selection=members.tree_selection,
        scales={m: _raw_scales(model, m, inputs[m].shape[1]) for m in terms.inputs},
    )


def _raw_scales(model: Any, modality: str, width: int) -> np.ndarray | None:
    """The raw-unit standard deviation of each column of ``modality`` (its spec's ``scales``),
    or None when the spec has none of that width (the inputs are then ranked as they come)."""
    spec = (getattr(model, "specs", None) or {}).get(modality)
    scales = getattr(spec, "scales", None)
    if scales is None or len(scales) != width:
        return None
    return np.asarray(scales, dtype=np.float64)


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
    ``members.clinical_penalty`` null (the members then start at zero). The principal components
    of ``members.interactions`` are fitted on ``data`` in every case: they need no outcome, and
    members trained with the deep residual need them as much as fitted ones.
    """
    head = model.head
    if not model.members:
        return None
    batch = data.batch(np.arange(len(data))).to(device)
    for m, lm in model.members.items():  # effect modifiers' components: training patients only
        lm.fit_components(batch.inputs[m], batch.mask[m])
    if members.clinical_penalty is None or not getattr(head, "partial_likelihood", False):
        return None
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
    if not multi:
        problem.trees = _tree_problem(model, batch, designs, members, seed)
    problem.sparse = {
        block: float(members.interaction_l1_ratio)
        for lm in model.members.values()
        for block in getattr(lm, "sparse_blocks", ())
        if block in designs
    }
    twins: dict[str, str] = {}  # members.elastic_net_beside: elastic-net twin -> its block
    net_blocks = _elastic_net_blocks(designs, members.elastic_net)
    for block, ratio in net_blocks.items():
        name = f"{block}{NET_TWIN}" if members.elastic_net_beside else block
        if name != block:
            twins[name] = block
            designs[name] = designs[block]  # the same columns, another fit
        problem.sparse[name] = ratio
    absent = sorted(m for m in members.elastic_net if m not in model.members)
    if absent:
        warn_once(
            log,
            f"members.elastic_net names {absent}, which this run's model has no linear member "
            "of (the cohort lacks the modality): nothing to fit along an elastic-net path",
        )
    has_trees = problem.trees is not None
    strategy = members.combine if len(model.members) > 1 or has_trees else "joint"
    if net_blocks and (multi or strategy != "stacked"):  # the model refuses a multi head first
        raise ConfigError(
            f"members.elastic_net {dict(members.elastic_net)}: the elastic-net paths are fitted "
            "by the stacked combiner for one Cox risk beside the clinical covariates; this run "
            + (
                f"has a head with {problem.n_outputs} outputs"
                if multi
                else "has no clinical member beside them"
            )
            + ". Remove members.elastic_net (the members then take ridge penalties)"
        )
    coef, penalties, weights = COMBINERS.get(strategy)(problem, members, seed)
    for twin, block in twins.items():  # the model holds one direction per block: their sum
        coef[block] = coef[block] + coef.pop(twin)
        del designs[twin]
    trees = coef.pop(_TREES, None)
    with torch.no_grad():
        out = problem.output(coef)
        if trees is not None:
            out = out + torch.as_tensor(trees["train_output"], dtype=out.dtype, device=out.device)
        loss = float(loss_fn(out, problem.everyone))
    fit = LinearFit(
        strategy, {problem.clinical: problem.ridge, **penalties}, weights, loss, problem.fallback
    )
    return fit if _install(model, coef, fit, trees) else None


def _install(
    model: Any, coef: dict[str, torch.Tensor], fit: LinearFit, trees: dict | None = None
) -> bool:
    """Copy the fitted coefficients (and tree members) into the model; zero the head on the
    fused representation."""
    if not np.isfinite(fit.loss) or not all(bool(torch.isfinite(w).all()) for w in coef.values()):
        for lm in model.members.values():
            torch.nn.init.zeros_(lm.linear.weight)
        log.warning("the linear members' fit diverged; they start at zero")
        return False
    with torch.no_grad():
        for lm in model.members.values():  # each block's coefficients at its columns
            lm.set_block_weights(coef)
    if trees is not None:
        _install_trees(model.trees, trees)
    for m, lm in model.members.items():  # held at the penalised fit from here on
        if m != model.clinical_modality:
            lm.linear.weight.requires_grad_(False)
    head_linear = getattr(model.head, "linear", None)
    if isinstance(head_linear, torch.nn.Linear):
        with torch.no_grad():
            head_linear.weight.zero_()
    log.debug("linear members: %s", fit.to_dict())
    return True


#: Suffix of a block's elastic-net twin among the stacked members (``members.elastic_net_beside``:
#: ``genomics/net`` beside the ridge ``genomics``).
NET_TWIN = "/net"

#: Key of the tree members' fit in a combiner's coefficient dict (never a modality name).
_TREES = "__trees__"


def _install_trees(terms: Any, trees: dict) -> None:
    """Put the fitted ensembles, their chosen columns and stacking weights into ``terms``."""
    device = terms.weight.device
    for m, cols in trees["columns"].items():
        terms.columns[m].index = torch.as_tensor(cols, dtype=torch.long, device=device)
    for m, w in trees["scores"].items():
        terms.scores[m].weight = torch.as_tensor(w, dtype=torch.float64, device=device)
    for kind in terms.kinds:
        ensemble, center, spread = trees["ensembles"][kind]
        if ensemble is not None:  # a kind whose fit failed stays empty, with weight 0
            terms.ensembles[kind].set_ensemble(ensemble, center, spread)
    terms.ensembles.to(device)
    terms.weight = torch.as_tensor(
        [trees["weights"][k] for k in terms.kinds], dtype=torch.float32, device=device
    )


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
       An elastic-net block (``members.interaction_form: cumulative`` or ``both``) gets its own path of
       penalties instead, from the one that keeps it at zero down (:func:`_elastic_net_path`).
    2. The penalty whose out-of-fold scores fit best beside the clinical covariates (a Cox model
       on both; each penalty has the same one extra coefficient) is kept.
    3. Each tree member (``members.trees``) is fitted on ``folds - 1`` folds (its features chosen
       on them alone) and scores the held-out fold; its scores are standardised.
    4. A Cox model on the clinical covariates and every member's out-of-fold scores weighs them
       (weights kept >= 0 with ``members.stack_nonnegative``); each linear member's coefficients
       are its penalised fit on every training patient, times that weight; each tree member is
       refitted on every training patient and its standardised score counts with its weight.

    5. With ``members.stack_fallback``, that second stage is cross-validated against the
       clinical covariates alone (:func:`_clinical_wins`); where it does not predict held-out
       patients better, every member weight is 0.

    With ``members.stack_repeats`` R > 1, steps 1-4 run on R splits of the training patients
    (seeds ``seed + r * 1009``; repeat 0 is the single split of R = 1): each penalty is judged by
    its mean second-stage loss over the repeats, and the second stage is fitted on each repeat's
    scores and its coefficients averaged.
    """
    clinical, everyone = problem.clinical, problem.everyone
    x_c, present_c = problem.designs[clinical]
    n_out = problem.n_outputs
    # repeat 0 is the single split every fit used before members.stack_repeats existed
    repeats = [
        stratified_splits(
            problem.event, folds, seed + _REPEAT_SEED_STEP * r, everyone.device, problem.groups
        )
        for r in range(members.stack_repeats)
    ]

    def second_stage(scores: dict[str, torch.Tensor], penalty: float = 0.0, rows=everyone):
        """Clinical coefficients and one weight per (member, output) on ``scores``, fitted on
        ``rows``; the loss. ``penalty``: ridge on the weights in SD units of each score. With
        ``members.stack_nonnegative`` a negative weight is set to 0 and the rest refitted."""
        names = list(scores)
        keep = torch.ones(len(names), n_out, device=x_c.device)
        while True:
            w_c, gamma, loss = _second_stage_fit(
                problem, x_c, present_c, scores, keep, penalty, rows
            )
            negative = (gamma < 0) & (keep > 0)
            if not members.stack_nonnegative or not bool(negative.any()):
                break
            keep = keep * (~negative).to(keep.dtype)
        gamma = gamma * keep
        return w_c, dict(zip(names, gamma)), loss

    candidates = [lam for lam in members.penalties if lam < max(members.penalties)]
    candidates = candidates or list(members.penalties)
    oof: dict[str, list[torch.Tensor]] = {}  # per member, its out-of-fold scores per repeat
    chosen: dict[str, float] = {}
    split_directions: dict[str, list[list[torch.Tensor]]] = {}  # per repeat, per split
    full_fits: dict[str, dict[float, torch.Tensor]] = {}  # elastic-net blocks: every patient
    too_few: dict[str, int] = {}
    diverged: list[str] = []  # elastic-net blocks whose path diverged
    for m in problem.designs:
        if m == clinical:
            continue
        present = problem.designs[m][1]
        events = int(((present > 0).cpu().numpy() & problem.event.astype(bool)).sum())
        if events < members.min_events:
            too_few[m] = events
            continue
        if m in problem.sparse:  # an elastic-net path (the cumulative products)
            net = _elastic_net_path(problem, m, repeats)
            if net is None:  # diverged, or all zero: left out, weight 0
                diverged.append(m)
                continue
            path, full_fits[m] = net
            member_candidates = list(path)
        else:
            path, member_candidates = _ridge_path(problem, m, repeats, candidates)
        chosen[m] = min(  # the mean second-stage loss over the repeats; ties: the first
            member_candidates,
            key=lambda lam, m=m, path=path: float(
                np.mean([second_stage({m: sc})[2] for sc, _ in path[lam]])
            ),
        )
        if members.penalty_choice == "nested":
            oof[m] = [
                _nested_scores(path, member_candidates, split, r, m, second_stage)
                for r, split in enumerate(repeats)
            ]
        else:
            oof[m] = [sc for sc, _ in path[chosen[m]]]
        split_directions[m] = [per_split for _, per_split in path[chosen[m]]]
    directions = {
        m: full_fits[m][chosen[m]]
        if m in full_fits
        else problem.fit(everyone, {m: chosen[m]}, free=(clinical, m))[0][m]
        for m in chosen
    }
    tree_fits = {}
    if problem.trees is not None:
        scored = [m for m in members.tree_scores if m in problem.trees.inputs and m in chosen]
        tree_fits = _tree_members(
            problem.trees,
            repeats,
            [
                [{m: _vector(split_directions[m][r][j]) for m in scored} for j in range(len(sp))]
                for r, sp in enumerate(repeats)
            ],
            {m: _vector(directions[m]) for m in scored},
        )
    for kind, fitted in tree_fits.items():
        oof[f"{TREE_PREFIX}{kind}"] = [
            torch.as_tensor(raw[:, None], dtype=x_c.dtype, device=x_c.device)
            for raw in fitted["oof"]
        ]
    # one dict of out-of-fold scores per repeat
    oof_by_repeat = [{name: per[r] for name, per in oof.items()} for r in range(len(repeats))]
    weak = _screen_members(problem, oof_by_repeat, second_stage, members.stack_min_lr)
    _count_for_nothing(oof_by_repeat, weak)  # no evidence beside the clinical covariates
    stack_penalty = members.stack_penalty
    if stack_penalty == "auto":
        stack_penalty = _choose_stack_penalty(problem, oof_by_repeat, second_stage, members, seed)
    if members.stack_fallback and _clinical_wins(
        problem, oof_by_repeat, second_stage, members, seed, float(stack_penalty)
    ):
        problem.fallback = True
        _count_for_nothing(oof_by_repeat, oof)  # the clinical Cox model: every member weight 0
    # the second stage on each repeat's scores; its coefficients averaged over the repeats
    stages = [second_stage(scores, float(stack_penalty)) for scores in oof_by_repeat]
    w_c = torch.stack([st[0] for st in stages]).mean(0)
    gamma = {name: torch.stack([st[1][name] for st in stages]).mean(0) for name in oof}
    coef = {clinical: w_c}
    for m, direction in directions.items():
        coef[m] = gamma[m][:, None] * direction
    if problem.trees is not None:
        coef[_TREES] = _tree_coef(problem.trees, tree_fits, gamma)
    weights = {m: [round(float(g), 4) for g in gamma[m]] for m in gamma}
    # per fold, in model.json; the run summarises them once (members_summary)
    log.debug(
        "stacked members: penalties %s by %d-fold out-of-fold scores (%d repeats), weights %s",
        chosen,
        len(repeats[0]),
        len(repeats),
        weights,
    )
    for m, events in too_few.items():  # left out: too few events to weigh their scores
        log.info(
            "stacked members: %s left out (%d training patients with it had an event; "
            "members.min_events is %d)",
            m,
            events,
            members.min_events,
        )
    for m in [*too_few, *diverged]:
        x, _ = problem.designs[m]
        coef[m] = torch.zeros(n_out, x.shape[1], dtype=x.dtype, device=x.device)
        if m in too_few:  # a diverged elastic-net block has no penalty to record
            chosen[m] = float(max(members.penalties))
        weights[m] = [0.0] * n_out
    if members.stack_penalty == "auto":
        chosen[STACK_PENALTY] = float(stack_penalty)
    return coef, chosen, weights


def _nested_scores(
    path: _Path, candidates: list[float], split: list[tuple], r: int, m: str, second_stage
) -> torch.Tensor:
    """``members.penalty_choice: nested``: block ``m``'s out-of-fold scores on repeat ``r``
    (inner ``split``), each inner fold's from the penalty whose scores fit best (the second
    stage beside the clinical covariates) on the other inner folds' patients alone; ties go to
    the first of ``candidates``, as the pooled choice's do."""
    scores = path[candidates[0]][r][0].clone()
    picks = []
    for rows_fit, rows_held in split:
        best = min(candidates, key=lambda lam: second_stage({m: path[lam][r][0]}, rows=rows_fit)[2])
        scores[rows_held] = path[best][r][0][rows_held]
        picks.append(best)
    log.debug("stacked members: %s's penalty per inner fold (repeat %d): %s", m, r, picks)
    return scores


def _elastic_net_blocks(designs: dict, ratios: dict[str, float]) -> dict[str, float]:
    """``members.elastic_net`` as block -> l1 ratio: a modality's main block and each of its
    ``column_blocks`` (``<modality>:<suffix>``), never its interaction products."""
    return {
        block: float(ratio)
        for m, ratio in ratios.items()
        for block in designs
        if block == m or block.startswith(f"{m}:")
    }


#: A penalty path: penalty -> per repeat, (out-of-fold scores (n, n_outputs), each split's
#: (n_outputs, p) direction).
_Path = dict[float, list[tuple[torch.Tensor, list[torch.Tensor]]]]


def _ridge_path(problem: _Problem, m: str, repeats: list[list[tuple]], candidates: list[float]):
    """Out-of-fold scores of block ``m`` beside the clinical covariates for each ridge penalty,
    from the largest penalty down, each fit warm-started from the one before on the same split:
    the same optima, reached in fewer iterations. Returns the path and the penalties to judge,
    in the order of ``candidates``."""
    clinical, everyone = problem.clinical, problem.everyone
    x, present = problem.designs[m]
    path: _Path = {}
    previous = [[None] * len(split) for split in repeats]
    for lam in sorted(set(candidates), reverse=True):
        path[lam] = []
        for r, split in enumerate(repeats):
            scores = torch.zeros(len(everyone), problem.n_outputs, device=x.device)
            per_split = []
            for j, (rows_fit, rows_held) in enumerate(split):
                coef, _ = problem.fit(rows_fit, {m: lam}, free=(clinical, m), init=previous[r][j])
                scores[rows_held] = ((x @ coef[m].T) * present[:, None])[rows_held]
                per_split.append(coef[m])
                previous[r][j] = coef
            path[lam].append((scores, per_split))
    return path, list(candidates)


#: Elastic-net paths: penalties per path, the smallest as a fraction of the largest (the one that
#: keeps every coefficient at zero), and the clinical covariates' relative penalty factor (small:
#: they are there to adjust for, as the ridge paths leave them nearly free).
_NET_ALPHAS, _NET_MIN_RATIOS, _NET_CLINICAL_FACTOR = 20, (0.02, 0.05, 0.1, 0.2, 0.5), 0.01


def _elastic_net_path(
    problem: _Problem, m: str, repeats: list[list[tuple]]
) -> tuple[_Path, dict[float, torch.Tensor]] | None:
    """Out-of-fold scores of block ``m`` (single-risk Cox heads) beside the clinical covariates
    along an elastic-net path (scikit-survival's ``CoxnetSurvivalAnalysis``, l1 ratio
    ``problem.sparse[m]``): one path of penalties, set on every training patient, is fitted on
    every split, so each penalty's out-of-fold scores come from fits under that penalty alone.
    The grid comes from the block alone; beside the clinical columns, sksurv rescales the penalty
    factors to sum to the number of columns, so the block's penalty is the grid's times
    ``(n_c + p) / (0.01 n_c + p)`` (1.003 for 3,000 products beside 10 clinical columns). A block
    that is zero for every training patient (no one past the first level has the modality) is
    left out.
    Returns the path and, per penalty, the direction fitted on every training patient. Where a
    path diverges (a penalty too small for the patients), the path stops at a larger fraction
    of the largest penalty; where it diverges even at the largest fraction tried, the block is
    left out (None, with a warning)."""
    from sksurv.linear_model import CoxnetSurvivalAnalysis
    from sksurv.util import Surv

    x_c, present_c = problem.designs[problem.clinical]
    x, present = problem.designs[m]
    design = torch.cat([x_c * present_c[:, None], x * present[:, None]], dim=1)
    design_np = design.double().cpu().numpy()
    n_c = x_c.shape[1]
    factor = np.r_[np.full(n_c, _NET_CLINICAL_FACTOR), np.ones(x.shape[1])]
    time, event = problem.time.astype(np.float64), problem.event.astype(bool)

    def fit(rows: np.ndarray, min_ratio: float, alphas: np.ndarray | None = None, alone=False):
        est = CoxnetSurvivalAnalysis(
            l1_ratio=problem.sparse[m],
            n_alphas=_NET_ALPHAS,
            alpha_min_ratio=min_ratio,
            alphas=alphas,
            penalty_factor=None if alone else factor,
            max_iter=100_000,
        )
        y = Surv.from_arrays(event=event[rows], time=time[rows])
        return est.fit(design_np[rows, n_c:] if alone else design_np[rows], y)

    def as_coef(est, k: int) -> torch.Tensor:
        # a path that stopped early (the fit saturated) holds its last solution for the rest
        w = np.asarray(est.coef_[n_c:, min(k, est.coef_.shape[1] - 1)], dtype=np.float64)
        return torch.as_tensor(w[None, :], dtype=x.dtype, device=x.device)

    everyone = problem.everyone.cpu().numpy()
    if not np.any(design_np[:, n_c:]):
        log.info("stacked members: %s left out: it is zero for every training patient", m)
        return None
    failure: Exception | None = None
    for min_ratio in _NET_MIN_RATIOS:
        try:
            # the grid from the block alone: beside lightly penalised clinical covariates,
            # sksurv's largest penalty would be set by them (their gradient / their factor)
            alphas = np.asarray(fit(everyone, min_ratio, alone=True).alphas_, dtype=np.float64)
            full = fit(everyone, min_ratio, alphas)
            path: _Path = {float(a): [] for a in alphas}
            for split in repeats:
                scores = torch.zeros(len(everyone), len(alphas), dtype=x.dtype, device=x.device)
                per_split: list[list[torch.Tensor]] = [[] for _ in alphas]
                for rows_fit, rows_held in split:
                    est = fit(rows_fit.cpu().numpy(), min_ratio, alphas)
                    held = x[rows_held] * present[rows_held, None]  # only they are scored
                    for k in range(len(alphas)):
                        w = as_coef(est, k)
                        scores[rows_held, k] = (held @ w.T)[:, 0]
                        per_split[k].append(w)
                for k, a in enumerate(alphas):
                    path[float(a)].append((scores[:, k : k + 1].clone(), per_split[k]))
            return path, {float(a): as_coef(full, k) for k, a in enumerate(alphas)}
        except ArithmeticError as exc:  # sksurv: "weights are too large"
            failure = exc
            log.debug("elastic-net path of %s diverged at ratio %g: %s", m, min_ratio, exc)
    log.warning(
        "stacked members: %s left out: its elastic-net path diverged on the training patients "
        "even with its smallest penalty at %g of the largest (%s)",
        m,
        _NET_MIN_RATIOS[-1],
        failure,
    )
    return None


def _count_for_nothing(oof: list[dict], names) -> None:
    """Zero the out-of-fold scores of ``names`` in every repeat's dict of ``oof``: the second
    stage then gives those members weight 0."""
    for scores in oof:
        for name in names:
            scores[name] = torch.zeros_like(scores[name])


def _screen_members(problem, oof: list[dict], second_stage, threshold: float) -> dict[str, float]:
    """Members whose out-of-fold scores alone, beside the clinical covariates, improve the Cox
    partial log-likelihood of the training patients by a likelihood-ratio statistic (its mean
    over the repeats ``oof``, one dict of scores per repeat) below ``threshold``
    (``members.stack_min_lr``; 0: none; single-output Cox heads only): name -> statistic. Each
    is logged."""
    if threshold <= 0 or not oof or not oof[0] or problem.multi:
        return {}
    events = float(np.asarray(problem.event, bool).sum())
    base = second_stage({})[2]
    weak = {}
    for name in oof[0]:
        gains = [base - second_stage({name: scores[name]})[2] for scores in oof]
        statistic = 2.0 * float(np.mean(gains)) * events
        if statistic < threshold:
            weak[name] = statistic
            log.info(
                "stacked members: %s left out (its out-of-fold scores add a likelihood-ratio "
                "statistic of %.2f to the clinical covariates; members.stack_min_lr is %g)",
                name,
                statistic,
                threshold,
            )
    return weak


def _clinical_wins(
    problem, oof: list[dict], second_stage, members: MembersConfig, seed: int, penalty: float
) -> bool:
    """``members.stack_fallback``: whether the second stage on the members' out-of-fold scores
    (``oof``: one dict per repeat) predicts held-out training patients no better than the
    clinical covariates alone. Each repeat's scores are split into ``members.penalty_folds`` folds
    (seed ``seed + 2 + r * step``: other partitions than the members' own); on each, both second
    stages are fitted on the other folds, and the mean held-out Harrell's C decides (ties: the
    clinical model). Single-output heads only (False otherwise); logged either way."""
    if problem.multi or not oof or not oof[0]:
        return False
    c_stack, c_clinical = [], []
    for r, scores in enumerate(oof):
        splits = stratified_splits(
            problem.event,
            members.penalty_folds,
            seed + 2 + _REPEAT_SEED_STEP * r,
            problem.everyone.device,
            problem.groups,
        )
        both = _held_out_outputs(problem, scores, splits, second_stage, penalty)
        alone = _held_out_outputs(problem, {}, splits, second_stage, 0.0)
        for (_, rows_held, out_both), (_, _, out_alone) in zip(both, alone, strict=True):
            held = rows_held.cpu().numpy()
            try:  # a fold whose events all come last has no comparable pair: skipped
                pair = [
                    harrell_c(
                        problem.time[held], problem.event[held], o[rows_held, 0].cpu().numpy()
                    )
                    for o in (out_both, out_alone)
                ]
            except DataError:
                continue
            c_stack.append(pair[0])
            c_clinical.append(pair[1])
    if not c_stack:
        return False
    gain = float(np.mean(c_stack) - np.mean(c_clinical))
    log.info(
        "stacked members: held-out C of the second stage %.4f, of the clinical covariates alone "
        "%.4f (%d folds x %d repeats)%s",
        float(np.mean(c_stack)),
        float(np.mean(c_clinical)),
        members.penalty_folds,
        len(oof),
        "; every member weight set to 0 (members.stack_fallback)" if gain <= 0 else "",
    )
    return gain <= 0


#: Seed offset between the repeats of the stacked members' inner splits
#: (``members.stack_repeats``; repeat r splits with ``seed + r * step``).
_REPEAT_SEED_STEP = 1009

#: Prefix of a tree member's name among the stacked weights (``tree:boosting``).
TREE_PREFIX = "tree:"

#: Key of the second stage's own penalty among a fold's penalties (``members.stack_penalty``).
STACK_PENALTY = "stack"


def _choose_stack_penalty(
    problem, oof: list[dict], second_stage, members: MembersConfig, seed: int
):
    """The ``members.stack_penalties`` entry whose second stage, fitted on ``penalty_folds - 1``
    folds of the out-of-fold scores (``oof``: one dict per repeat, their scores summed over),
    best predicts the held-out fold: the largest
    cross-validated partial log-likelihood (Verweij & van Houwelingen 1993: the log-likelihood
    of every training patient minus that of the fit rows, both at the fit rows' estimate; it
    keeps each held-out patient's full risk set). A head with several outputs is scored by its
    loss on the held-out rows. Ties go to the larger penalty."""
    candidates = sorted(set(members.stack_penalties))
    if not oof or not oof[0] or len(candidates) == 1:  # stack_penalties has >= 1 entry
        return candidates[-1]
    # another seed than the members' own splits: the weights are judged on other partitions
    splits = stratified_splits(
        problem.event, members.penalty_folds, seed + 1, problem.everyone.device, problem.groups
    )
    event = torch.as_tensor(problem.event, dtype=torch.float32, device=problem.everyone.device)
    score = {}
    for lam in candidates:
        total = 0.0
        for scores in oof:
            for rows_fit, rows_held, out in _held_out_outputs(
                problem, scores, splits, second_stage, lam
            ):
                if problem.multi:
                    total -= float(problem.loss_fn(out, rows_held))
                    continue
                ll_all = -float(problem.loss_fn(out, problem.everyone)) * float(event.sum())
                ll_fit = -float(problem.loss_fn(out, rows_fit)) * float(event[rows_fit].sum())
                total += ll_all - ll_fit
        score[lam] = total
    top = max(score.values())
    best = max(lam for lam, s in score.items() if s >= top - 1e-9)
    log.debug("stacked second stage: penalty %g by %d-fold CV (%s)", best, len(splits), score)
    return best


def _second_stage_fit(
    problem, x_c, present_c, scores: dict[str, torch.Tensor], keep, penalty=0.0, rows=None
):
    """A Cox model on the clinical design and ``scores`` (members, n, n_out) with the weights
    outside ``keep`` held at 0, fitted on ``rows`` (default every training patient), its weights
    ridge-penalised by ``penalty`` in units of each score's standard deviation: (clinical
    coefficients, weights (members, n_out), unpenalised loss on ``rows``)."""
    n_out = problem.n_outputs
    rows = problem.everyone if rows is None else rows
    w_c = torch.zeros(n_out, x_c.shape[1], device=x_c.device, requires_grad=True)
    gamma = torch.zeros(len(scores), n_out, device=x_c.device, requires_grad=True)
    stacked = (  # (members, n, n_out)
        torch.stack(list(scores.values())) if scores else x_c.new_zeros(0, len(x_c), n_out)
    )
    # each score's SD over the training patients: the penalty acts on standardised weights
    # (no member: no weight to penalise)
    scale = stacked.std(dim=1).clamp_min(1e-8) if scores else x_c.new_zeros(0, n_out)
    opt = torch.optim.LBFGS([w_c, gamma], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def out() -> torch.Tensor:
        return _second_stage_output(x_c, present_c, stacked, w_c, gamma * keep)

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = (
            problem.loss_fn(out(), rows)
            + problem.ridge * w_c.pow(2).sum()
            + 1e-4 * gamma.pow(2).sum()
            + penalty * (gamma * scale).pow(2).sum()
        )
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        loss = float(problem.loss_fn(out(), rows))
        return w_c.detach(), (gamma * keep).detach(), loss


def _held_out_outputs(problem, scores: dict[str, torch.Tensor], splits, second_stage, penalty):
    """Per split ``(rows_fit, rows_held)`` of ``splits``: ``(rows_fit, rows_held, output)``, the
    output (n, n_out) on every training patient of the second stage fitted on ``rows_fit`` alone,
    with the members' out-of-fold ``scores`` (none: the clinical covariates alone) and the
    weights' ``penalty``."""
    x_c, present_c = problem.designs[problem.clinical]
    stacked = (
        torch.stack(list(scores.values()))
        if scores
        else x_c.new_zeros(0, len(x_c), problem.n_outputs)
    )
    for rows_fit, rows_held in splits:
        w_c, gamma, _ = second_stage(scores, penalty, rows_fit)
        weights = (
            torch.stack(list(gamma.values())) if gamma else x_c.new_zeros(0, problem.n_outputs)
        )
        with torch.no_grad():
            out = _second_stage_output(x_c, present_c, stacked, w_c, weights)
        yield rows_fit, rows_held, out


def _second_stage_output(x_c, present_c, stacked, w_c, gamma) -> torch.Tensor:
    """(n, n_out) risk of the second stage: the clinical design times its coefficients (zero
    where the clinical covariates are missing) plus each member's scores ``stacked`` (members,
    n, n_out) times its weight ``gamma`` (members, n_out)."""
    return (x_c @ w_c.T) * present_c[:, None] + (stacked * gamma[:, None, :]).sum(0)


def _vector(direction: torch.Tensor) -> np.ndarray:
    """A single-output linear member's (1, p) coefficients as a float64 vector."""
    return direction.detach().reshape(-1).cpu().numpy().astype(np.float64)


def _tree_members(
    trees: _TreeProblem,
    repeats: list[list[tuple]],
    split_scores: list[list[dict[str, np.ndarray]]],
    scores: dict[str, np.ndarray],
) -> dict[str, dict[str, Any]]:
    """Per tree kind: out-of-fold scores on each repeat's splits (``repeats``; each repeat's
    scores standardised by their own mean and SD) and the ensemble fitted on every training
    patient, standardised by the repeats' mean centre and SD. ``split_scores`` (per repeat and
    split) and ``scores`` (every patient) are the linear directions whose risk scores the trees
    also see, fitted on the same patients as the trees. A kind whose fit fails is left out."""
    n = len(trees.time)
    everyone = np.arange(n)
    fits: dict[str, dict[str, Any]] = {}
    for kind in trees.terms.kinds:
        raws = [np.zeros(n) for _ in repeats]
        try:
            for raw, splits, per_split in zip(raws, repeats, split_scores, strict=True):
                for (rows_fit, rows_held), sc in zip(splits, per_split, strict=True):
                    fit_rows, held = rows_fit.cpu().numpy(), rows_held.cpu().numpy()
                    raw[held] = trees.predict(trees.fit(kind, fit_rows, sc), held)
            full = trees.fit(kind, everyone, scores)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:
            log.warning("tree member %r left out: its fit failed (%s)", kind, exc)
            continue
        centers = [float(raw.mean()) for raw in raws]
        spreads = [float(raw.std()) for raw in raws]
        if not all(np.isfinite(sd) and sd >= 1e-12 for sd in spreads):
            log.warning("tree member %r left out: its out-of-fold scores do not vary", kind)
            continue
        center, spread = float(np.mean(centers)), float(np.mean(spreads))
        fits[kind] = {
            "oof": [(raw - c) / sd for raw, c, sd in zip(raws, centers, spreads, strict=True)],
            "full": full,
            "center": center,
            "spread": spread,
            "train": (trees.predict(full, everyone) - center) / spread,
        }
    return fits


def _tree_coef(trees: _TreeProblem, fits: dict, gamma: dict[str, torch.Tensor]) -> dict:
    """What :func:`_install_trees` puts into the model (an unfitted kind gets weight 0)."""
    weights = {
        k: float(gamma[f"{TREE_PREFIX}{k}"][0]) if k in fits else 0.0 for k in trees.terms.kinds
    }
    if fits:
        _, columns, scores = next(iter(fits.values()))["full"]
    else:
        columns, scores = {m: [] for m in trees.inputs}, {}
    train_output = np.zeros(len(trees.time))
    ensembles = {}
    for k in trees.terms.kinds:
        if k in fits:
            f = fits[k]
            ensembles[k] = (f["full"][0], f["center"], f["spread"])
            train_output += weights[k] * f["train"]
        else:
            ensembles[k] = (None, 0.0, 1.0)
    return {
        "columns": columns,
        "scores": scores,
        "ensembles": ensembles,
        "weights": weights,
        "train_output": train_output[:, None],
    }


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
        names = list(
            dict.fromkeys(m for f in done for m in [*f["penalties"], *(f.get("weights") or {})])
        )
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
    fallbacks = sum(bool(f.get("fallback")) for f in done)
    if fallbacks:
        parts.append(
            f"clinical covariates alone in {fallbacks} of {n} folds (members.stack_fallback)"
        )
    if deep_kept is None:
        parts.append("no deep residual")
    else:
        parts.append(f"deep residual kept in {sum(map(bool, deep_kept))} of {len(deep_kept)} folds")
    return "; ".join(parts)
