"""One cross-validation fold: preprocessing, linear members, the deep residual, predictions.

:func:`run_fold` is what :func:`multimodal.train` runs per fold:

1. fit each modality's preprocessing on the fold's training patients;
2. hold out ``data.early_stopping_fraction`` of them for early stopping;
3. build the model and fit its linear members (:mod:`multimodal.training.combine`);
4. train the deep residual (:mod:`multimodal.training.loop`), keeping epoch 0 -- the linear model
   -- unless training beats it on the hold-out; refit on every training patient;
5. fit the baseline hazard on the training patients, predict every patient of the fold
   (:func:`multimodal.models.inference.predict_frame`), score the validation patients
   (:func:`multimodal.evaluation.fold_metrics.evaluate_fold`) and write the fold to the run folder.

A fold whose files are complete in the run folder is reused instead (after checking it was
written under the same config).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from multimodal import console
from multimodal.config import CUMULATIVE_FORMS
from multimodal.data.landmark import LANDMARK_COLUMN, PATIENT_COLUMN
from multimodal.evaluation.dynamic import landmark_fold_metrics
from multimodal.evaluation.fold_metrics import evaluate_fold
from multimodal.models.inference import head_outputs, predict_frame
from multimodal.models.members import level_order_problem
from multimodal.models.model import MultimodalSurvivalModel
from multimodal.runfolder import RunFolder
from multimodal.survival.endpoints import get_endpoint
from multimodal.survival.heads import HEADS, DiscreteTimeHead
from multimodal.training import distributed as dist_utils
from multimodal.training.combine import LinearFit, fit_linear_members
from multimodal.training.loop import fit, targets
from multimodal.training.preprocess import (
    PIPELINES,
    FoldData,
    ModalityPipeline,
    PreprocessContext,
    build_fold_data,
)
from multimodal.training.resume import check_resumable, config_fingerprint

__all__ = ["FoldOutcome", "early_stopping_split", "run_fold", "seed_everything"]

log = logging.getLogger(__name__)


@dataclass
class FoldOutcome:
    """A finished fold: validation metrics, predictions of its patients, training history."""

    index: int
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame
    eval_times: list[float]


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's legacy global and torch's RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy global RNG
    torch.manual_seed(seed)


def early_stopping_split(
    event: np.ndarray, fraction: float, seed: int, groups: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(fit rows, hold-out rows) of a training fold, stratified by event. Too few patients or
    events for a hold-out: every row fits and the hold-out is empty. ``groups`` (one label per
    row, e.g. the patient of each landmark row): a group's rows stay on one side."""
    idx = np.arange(len(event))
    if fraction <= 0 or len(event) < 20 or event.sum() < 4 or (~event).sum() < 4:
        if fraction > 0:
            console.warn_once(
                log,
                "too few patients or events for an early-stopping hold-out (%d patients, %d events):"
                " early stopping uses the training patients themselves",
                len(event),
                int(event.sum()),
                key="no-early-stopping-hold-out",
            )
        return idx, idx[:0]
    if groups is not None:
        # split the groups, stratified by whether the group has an event
        labels, inverse = np.unique(np.asarray(groups), return_inverse=True)
        has_event = np.zeros(len(labels), dtype=bool)
        np.logical_or.at(has_event, inverse, np.asarray(event, dtype=bool))
        _, es_groups = train_test_split(
            np.arange(len(labels)), test_size=fraction, stratify=has_event, random_state=seed
        )
        held = np.isin(inverse, es_groups)
        return idx[~held], idx[held]
    fit_rows, es_rows = train_test_split(idx, test_size=fraction, stratify=event, random_state=seed)
    return np.sort(fit_rows), np.sort(es_rows)


def _fit_pipelines(cohort, modalities, enc_cfgs, ctx, train_ids) -> dict[str, ModalityPipeline]:
    pipes = {}
    for m in modalities:
        kind = cohort.sources[m].kind
        pipes[m] = PIPELINES.get(kind)(ctx, enc_cfgs[m].name).fit(cohort.sources[m], train_ids)
    return pipes


def _check_level_order(members, levels: dict[str, list[str]]) -> None:
    """Warn (once per column) where ``members.interaction_form: cumulative`` or ``both`` would
    put thresholds ``[level >= k]`` on a column whose sorted levels (``levels``: the clinical
    preprocessing's, per categorical column) are not a clinical order."""
    if members.interaction_form not in CUMULATIVE_FORMS:
        return
    for column in dict.fromkeys(members.interactions.values()):
        known = levels.get(column) or []
        problem = level_order_problem(column, known) if len(known) >= 2 else None
        if problem:  # (one known level: no threshold, no products; model.py says so)
            console.warn_once(
                log,
                f"members.interaction_form: {members.interaction_form}: {problem}. The "
                f"cumulative products of {column!r} are fitted anyway; recode the column in the "
                "clinical table (ranked levels, and missing for levels such as 'X' or 'unknown') "
                "or use members.interaction_form: components.",
                key=f"level-order-{column}",
            )


def _time_grid(cfg, data: FoldData) -> list[float] | None:
    """The discrete-time head's interval cuts, from the fitting patients (None for Cox heads)."""
    if not issubclass(HEADS.get(cfg.head_name), DiscreteTimeHead):
        return None
    from multimodal.survival.discrete import make_time_grid

    return [float(c) for c in make_time_grid(data.time, data.event, n_bins=cfg.head.n_bins)]


def _reuse(folder: RunFolder, k: int, fingerprint: str) -> FoldOutcome:
    log.info("fold %d: finished earlier, reusing %s", k, folder.fold_dir(k))
    result = folder.read_fold_result(k)
    check_resumable(folder.fold_dir(k), result.get("config_fingerprint"), fingerprint)
    return _outcome_from_files(folder, k, result)


def _outcome_from_files(folder: RunFolder, k: int, result: dict[str, Any]) -> FoldOutcome:
    """Fold ``k`` as its files hold it (``result``: its ``fold.json``).

    A reused fold exists only in this form, so a freshly trained fold is read back the same way:
    the run-level tables are then the same bytes whichever folds an invocation trained (in
    memory the curves are float32 and the risks float64; a concatenation of both kinds would
    print the float32 values with float64 digits).
    """
    return FoldOutcome(
        k,
        result["metrics"],
        folder.read_fold_predictions(k),
        folder.read_fold_history(k),
        result["eval_times"],
    )


def run_fold(
    cfg,
    cohort,
    fold,
    modalities: list[str],
    enc_cfgs: dict[str, Any],
    ctx: PreprocessContext,
    times: list[float],
    device: torch.device,
    folder: RunFolder,
    callbacks: list | None,
) -> FoldOutcome:
    """Train fold ``fold`` (or reload it when a finished result is in the run folder)."""
    k = fold.index
    fingerprint = config_fingerprint(cfg)
    if cfg.train.resume and folder.is_fold_finished(k):
        return _reuse(folder, k, fingerprint)
    seed = cfg.train.seed + 1000 * k
    seed_everything(seed)
    train_ids, val_ids = list(fold.train_ids), list(fold.val_ids)
    pipes = _fit_pipelines(cohort, modalities, enc_cfgs, ctx, train_ids)
    train_data = build_fold_data(cohort, train_ids, pipes, cfg.endpoint)
    val_data = build_fold_data(cohort, val_ids, pipes, cfg.endpoint)
    fit_idx, es_idx = early_stopping_split(
        train_data.event, cfg.data.early_stopping_fraction, seed, train_data.groups
    )
    fit_data = train_data.subset(fit_idx)
    # no hold-out (early_stopping_fraction 0): no early stopping, every fit runs all its epochs
    es_data = train_data.subset(es_idx) if len(es_idx) else None
    cuts = _time_grid(cfg, fit_data)
    clinical = next((m for m in modalities if cohort.sources[m].kind == "clinical"), None)
    if clinical is not None:
        _check_level_order(cfg.members, pipes[clinical].prep.levels_)

    def new_model(
        model_seed: int, data: FoldData
    ) -> tuple[MultimodalSurvivalModel, LinearFit | None]:
        """A fresh model with its linear members fitted on ``data``."""
        seed_everything(model_seed)  # preprocessing may have drawn random numbers (loading a model)
        net = MultimodalSurvivalModel(
            train_data.specs(),
            enc_cfgs,
            cfg.fusion,
            cfg.head,
            members=cfg.members,
            cuts=cuts,
            clinical_modality=clinical,
            endpoint=cfg.endpoint,
        ).to(device)
        for note in net.skipped:
            console.warn_once(log, note)
        return net, fit_linear_members(net, data, device, cfg.members, seed=model_seed)

    model, linear = new_model(seed, fit_data)
    epochs = cfg.train.epochs if cfg.members.deep or linear is None else 0
    history = fit(
        cfg,
        model,
        fit_data,
        es_data,
        device,
        folder.checkpoint_path(k),
        k,
        callbacks,
        epochs=epochs,
        keep_start=linear is not None,
    )
    best_epoch = int(history["best_epoch"].iloc[-1]) if len(history) else 0
    if cfg.train.refit and len(es_idx) and (best_epoch > 0 or linear is not None):
        # the hold-out chose the number of epochs (0: the linear members alone); now learn from
        # every training patient
        model, linear = new_model(seed + 1, train_data)
        if best_epoch > 0:
            refit_ckpt = folder.checkpoint_path(k, refit=True)
            fit(cfg, model, train_data, None, device, refit_ckpt, k, None, epochs=best_epoch)
    # Breslow baseline (Cox) on every training patient of the fold, never on validation patients
    model.head.fit_baseline(
        head_outputs(model, train_data, device, cfg.train.precision).to(device),
        **targets(model, train_data, device=device),
    )
    frame_args = (times, device, cfg.train.precision, cfg.endpoint, cfg.eval.horizons)
    preds = pd.concat(
        [
            predict_frame(model, train_data, *frame_args).assign(fold=k, split="train"),
            predict_frame(model, val_data, *frame_args).assign(fold=k, split="val"),
        ],
        ignore_index=True,
    )
    metrics = evaluate_fold(preds, times, cfg.eval.bootstrap, seed, cfg.endpoint)
    if LANDMARK_COLUMN in cohort.patients:  # a landmark super-model: metrics per landmark
        lm = cfg.data.landmark
        rows = cohort.patients.reindex(preds["patient_id"])
        preds.insert(1, PATIENT_COLUMN, rows[PATIENT_COLUMN].to_numpy())
        preds.insert(2, LANDMARK_COLUMN, rows[LANDMARK_COLUMN].to_numpy())
        if not get_endpoint(cfg.endpoint).multi_output:  # per landmark: one time, event, risk
            metrics.update(landmark_fold_metrics(preds, lm.eval_times or lm.times, lm.horizon))
    metrics.update(fold=k, n_train=len(train_ids), n_val=len(val_ids), best_epoch=best_epoch)
    outcome = FoldOutcome(
        k,
        metrics,
        preds,
        history.drop(columns=["best_epoch"], errors="ignore").assign(fold=k),
        list(times),
    )
    if dist_utils.is_main():
        meta = {
            "run_id": folder.read_meta().get("run_id"),
            **_fold_meta(k, model, preds, cuts, modalities, linear),
        }
        _save_fold(folder, outcome, model, meta, pipes, cohort, enc_cfgs, fingerprint)
        outcome = _outcome_from_files(folder, k, folder.read_fold_result(k))
    log.info("fold %d: validation C-index %.4f (best epoch %d)", k, metrics["c_index"], best_epoch)
    return outcome


def _save_fold(
    folder: RunFolder,
    outcome: FoldOutcome,
    model: MultimodalSurvivalModel,
    meta: dict[str, Any],
    pipes: dict[str, ModalityPipeline],
    cohort: Any,
    enc_cfgs: dict[str, Any],
    fingerprint: str,
) -> None:
    """Write the finished fold: weights, ``model.json``, preprocessing, predictions, history and
    ``fold.json`` (last: the fold then counts as finished)."""
    folder.write_fold(
        outcome.index,
        state_dict=model.state_dict(),
        model_meta=meta,
        preprocess={
            m: {"kind": cohort.sources[m].kind, "encoder": enc_cfgs[m].name, "state": p.state()}
            for m, p in pipes.items()
        },
        predictions=outcome.predictions,
        history=outcome.history,
        result={
            "metrics": outcome.metrics,
            "eval_times": outcome.eval_times,
            "config_fingerprint": fingerprint,
        },
    )


def _fold_meta(
    k: int,
    model: MultimodalSurvivalModel,
    preds: pd.DataFrame,
    cuts: list[float] | None,
    modalities: list[str],
    linear: LinearFit | None,
) -> dict[str, Any]:
    """``model.json``: what rebuilds the fold's model (specs, cuts, members) and centres its risks."""
    train = preds[preds.split == "train"]
    return {
        "fold": k,
        "specs": model.describe()["specs"],
        "cuts": cuts,
        "risk_center": float(train["risk"].mean()),
        "risk_centers": {c: float(train[c].mean()) for c in preds.columns if c.startswith("risk_")},
        "clinical_modality": model.clinical_modality,
        "modalities": modalities,
        "members": list(model.members),
        "trees": list(model.trees.kinds) if model.trees is not None else [],
        "linear_fit": linear.to_dict() if linear is not None else None,
    }
