"""The training loop of one model: epochs, early stopping, and checkpoints.

:func:`fit` trains with an event-balanced sampler; ``train.accumulate`` micro-batches form one Cox
risk set (gathered across DDP ranks). With a hold-out it keeps the state with the best smoothed
hold-out C-index; the untrained model -- the fitted linear members with the deep residual at zero
-- is a candidate too, as epoch 0. Without a hold-out a fit runs all its epochs and computes no
C-index unless ``train.train_c_index`` asks for the fit patients' one. The training state is
checkpointed (:mod:`multimodal.training.resume`) every ``train.checkpoint_every`` epochs (``auto``:
once a minute at most) and at the fit's last epoch, so an interrupted fold resumes exactly from the
last saved epoch. The loop runs under ``train.threads`` (:mod:`multimodal.training.threads`:
``auto`` gives a small CPU model one thread).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal import console
from multimodal.models.inference import autocast, head_outputs
from multimodal.survival.losses import track_loss_stats
from multimodal.training import distributed as dist_utils
from multimodal.training.resume import TrainingState, check_resumable, config_fingerprint
from multimodal.training.samplers import EventBalancedBatchSampler, RandomBatchSampler
from multimodal.training.threads import training_threads

__all__ = ["AUTO_CHECKPOINT_SECONDS", "EpochInfo", "fit", "snapshot", "targets"]

log = logging.getLogger(__name__)

#: ``train.checkpoint_every: auto`` saves after the first epoch that ends at least this many
#: seconds after the previous save (or the fit's start), and at the fit's last epoch.
AUTO_CHECKPOINT_SECONDS = 60.0


@dataclass
class EpochInfo:
    """Passed to callbacks after every epoch (raise to stop, e.g. Optuna pruning)."""

    fold: int
    epoch: int
    train_loss: float
    es_c_index: float
    best_c_index: float
    seconds: float = float("nan")
    """Wall time of the epoch: its optimiser steps, hold-out scoring and checkpoint."""


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state, kept as the best so far."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def targets(model: torch.nn.Module, data: Any, device: Any = None) -> dict[str, torch.Tensor]:
    """The head's targets (``head.targets``) for every patient of ``data``, as tensors."""
    return {
        n: torch.as_tensor(v, device=device) for n, v in data.targets(model.head.targets).items()
    }


def fit(
    cfg: Any,
    model: torch.nn.Module,
    fit_data: Any,
    es_data: Any | None,
    device: torch.device,
    ckpt_path: Path,
    fold: int,
    callbacks: list | None,
    epochs: int | None = None,
    keep_start: bool = False,
) -> pd.DataFrame:
    """Train ``model`` with checkpoints (resumable); returns the history.

    The training state is saved every ``train.checkpoint_every`` epochs and at the last epoch
    (the last of ``epochs`` or the one after which early stopping stops); a resumed fit repeats
    the epochs after the last save and gives exactly the uninterrupted result. The loop runs
    under :func:`multimodal.training.threads.training_threads` for this model's size.

    With ``es_data``: early stopping on the hold-out C-index averaged over the last
    ``train.es_smoothing`` epochs; the best state is kept. Without it: exactly ``epochs`` epochs,
    the last state is kept. ``keep_start``: the untrained model (fitted linear members, deep
    residual at zero) is a candidate too, as epoch 0: training must beat it on the hold-out by
    more than ``train.es_min_delta`` to replace it.
    """
    n_parameters = sum(p.numel() for p in model.parameters())
    with training_threads(cfg.train.threads, n_parameters, on_cpu=device.type == "cpu"):
        return _fit(
            cfg, model, fit_data, es_data, device, ckpt_path, fold, callbacks, epochs, keep_start
        )


def _fit(cfg, model, fit_data, es_data, device, ckpt_path, fold, callbacks, epochs, keep_start):
    tc = cfg.train
    n_epochs = tc.epochs if epochs is None else epochs
    opt = torch.optim.AdamW(
        _param_groups(model, tc.lr, cfg.members.clinical_lr), lr=tc.lr, weight_decay=tc.weight_decay
    )
    rng = np.random.default_rng(tc.seed + 7919 * fold)
    net = model
    if dist_utils.world_size() > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    state = TrainingState.load(ckpt_path) if tc.resume else None
    fingerprint = config_fingerprint(cfg)
    if state is not None:
        check_resumable(ckpt_path, state.config_fingerprint, fingerprint)
    history: list[dict[str, Any]] = []
    best = {"score": -math.inf, "epoch": 0, "state": None, "bad": 0}
    start = 0
    if state is not None:
        history, best, start = state.restore(model, opt, rng)
        log.info("fold %d: resuming after epoch %d", fold, start)
    elif keep_start and es_data is not None:
        score0, _ = _early_stopping_score(cfg, model, es_data, device, [])
        if np.isfinite(score0):
            best = {"score": score0, "epoch": 0, "bad": 0, "state": snapshot(model)}
    if tc.event_balanced:
        sampler = EventBalancedBatchSampler(
            fit_data.event, tc.batch_size, rng, tc.min_events_per_batch
        )
    else:
        sampler = RandomBatchSampler(len(fit_data), tc.batch_size, rng)
    bar = _progress(tc, fold, start, n_epochs, refit=es_data is None)
    checkpoint = _CheckpointClock(tc.checkpoint_every)
    for epoch in range(start, n_epochs):
        if es_data is not None and best["bad"] >= tc.patience:
            break
        began = time.perf_counter()
        with track_loss_stats() as stats:
            loss = _train_epoch(cfg, net, model, opt, sampler, fit_data, device)
        score, smoothed = _early_stopping_score(cfg, model, es_data, device, history)
        if es_data is None:
            best["epoch"] = epoch + 1
        elif np.isfinite(smoothed) and smoothed > best["score"] + max(tc.es_min_delta, 1e-6):
            best = {"score": smoothed, "epoch": epoch + 1, "bad": 0, "state": snapshot(model)}
        else:
            best["bad"] += 1
        row = {
            "epoch": epoch + 1,
            "train_loss": loss,
            "es_c_index": score,
            "es_c_index_smoothed": smoothed,
            "no_event_batches": stats.no_event_batches,
            "best_epoch": best["epoch"],
        }
        if tc.train_c_index:
            row["train_c_index"] = _c_index(cfg, model, fit_data, device)
        history.append(row)
        last = epoch + 1 == n_epochs or (es_data is not None and best["bad"] >= tc.patience)
        if dist_utils.is_main() and checkpoint.due(epoch + 1, last):
            TrainingState.capture(model, opt, rng, history, best, epoch + 1, fingerprint).save(
                ckpt_path
            )
            checkpoint.saved()
        bar.set_postfix(_figures(loss, score, best["score"]))
        bar.update(1)
        seconds = time.perf_counter() - began
        for cb in callbacks or []:
            cb(EpochInfo(fold, epoch + 1, loss, score, best["score"], seconds))
    bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return pd.DataFrame(history)


def _param_groups(model: Any, lr: float, clinical_lr: float | None) -> list[dict[str, Any]]:
    """One group, or two when the clinical member has its own learning rate."""
    clinical = model.members[model.clinical_modality] if model.clinical_modality else None
    if clinical is None or clinical_lr is None:
        return [{"params": list(model.parameters())}]
    lin_ids = {id(p) for p in clinical.parameters()}
    rest = [p for p in model.parameters() if id(p) not in lin_ids]
    return [{"params": rest}, {"params": list(clinical.parameters()), "lr": clinical_lr}]


class _CheckpointClock:
    """When the training state is saved: every ``every`` epochs, or (``auto``) after the first
    epoch ending :data:`AUTO_CHECKPOINT_SECONDS` after the previous save; always at the last."""

    def __init__(self, every: int | str) -> None:
        self.every = every
        self.last_save = time.monotonic()

    def due(self, epoch: int, last: bool) -> bool:
        if last:
            return True
        if self.every == "auto":
            return time.monotonic() - self.last_save >= AUTO_CHECKPOINT_SECONDS
        return epoch % int(self.every) == 0

    def saved(self) -> None:
        self.last_save = time.monotonic()


def _c_index(cfg, model, data, device) -> float:
    """The head's C-index (``head.score``) of ``model`` on every patient of ``data``."""
    outputs = head_outputs(model, data, device, cfg.train.precision)
    return float(model.head.score(outputs, **targets(model, data)))


def _early_stopping_score(cfg, model, es_data, device, history) -> tuple[float, float]:
    """(hold-out C-index of this epoch, its mean with the previous ``es_smoothing - 1`` epochs)."""
    if es_data is None:
        return float("nan"), float("nan")
    score = _c_index(cfg, model, es_data, device)
    k = cfg.train.es_smoothing
    recent = [h["es_c_index"] for h in history[-(k - 1) :]] if k > 1 else []
    if not np.isfinite(score):
        return score, float("nan")
    return score, float(np.nanmean([*recent, score]))


def _progress(tc: Any, fold: int, start: int, total: int, refit: bool = False) -> Any:
    """The epochs' progress display (:func:`multimodal.console.progress`; rank 0 only)."""
    return console.progress(
        total,
        f"fold {fold} refit" if refit else f"fold {fold}",
        unit="epoch",
        initial=start,
        enabled=bool(tc.progress) and dist_utils.is_main(),
    )


def _figures(loss: float, score: float, best: float) -> dict[str, str]:
    """The figures shown beside the epoch count; those that do not exist (no hold-out in a refit,
    no best score yet) are left out rather than shown as nan or -inf."""
    figures = {"loss": loss, "hold-out C": score, "best": best}
    return {k: f"{v:.4f}" for k, v in figures.items() if math.isfinite(v)}


def _augment(batch: Any, model: Any) -> None:
    """Training-time image augmentation on the batch tensors: random flips and mild noise."""
    for m, spec in model.specs.items():
        if spec.kind != "imaging":
            continue
        x = batch.inputs[m]
        for d in range(2, x.dim()):
            flip = torch.rand(x.shape[0]) < 0.5
            if flip.any():
                x[flip] = x[flip].flip(d)
        batch.inputs[m] = x + 0.05 * torch.randn_like(x)


def _train_epoch(cfg, net, model, opt, sampler, data, device) -> float:
    """One epoch; ``accumulate`` micro-batches form one risk set and one optimiser step."""
    net.train()
    tc = cfg.train
    batches = sampler.epoch()
    ws, rk = dist_utils.world_size(), dist_utils.rank()
    losses = []
    for s in range(0, len(batches), tc.accumulate):
        outs, tgt = [], {name: [] for name in model.head.targets}
        for idx in batches[s : s + tc.accumulate]:
            idx = np.array_split(idx, ws)[rk] if ws > 1 else idx
            batch = data.batch(idx)
            _augment(batch, model)
            batch = batch.to(device)
            with autocast(device, tc.precision):
                outs.append(net(batch).float())
            for name, values in tgt.items():
                values.append(getattr(batch, name))
        out = dist_utils.gather_cat(torch.cat(outs), with_grad=True)
        loss = model.head.loss(
            out, **{n: dist_utils.gather_cat(torch.cat(v)) for n, v in tgt.items()}
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")
