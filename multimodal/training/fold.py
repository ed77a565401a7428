"""Training and evaluation of one cross-validation fold (used by :func:`multimodal.train`)."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.model_selection import train_test_split

from multimodal.models.model import MultimodalSurvivalModel
from multimodal.training import checkpoint as ckpt
from multimodal.training import distributed as dist_utils
from multimodal.training.endpoints import PROGRESSION_ENDPOINTS
from multimodal.training.preprocess import (
    PIPELINES,
    FoldData,
    ModalityPipeline,
    PreprocessContext,
    build_fold_data,
)
from multimodal.training.samplers import EventBalancedBatchSampler, RandomBatchSampler
from multimodal.training.warmstart import warm_start_clinical

__all__ = ["FoldOutcome", "evaluate_fold", "predict_frame", "run_fold", "seed_everything"]

log = logging.getLogger(__name__)


@dataclass
class FoldOutcome:
    index: int
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame
    eval_times: list[float]


def config_fingerprint(cfg) -> str:
    """Hash of everything in the config that changes results (not resume/progress/which folds)."""
    import hashlib

    d = cfg.to_dict()
    ignored = (
        ("train", "resume"),
        ("train", "progress"),
        ("data", "fold_indices"),
        ("data", "cohort"),
        ("data", "cache_dir"),
        ("eval", "bootstrap"),
    )
    for section, key in ignored:
        d.get(section, {}).pop(key, None)
    d.pop("out", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _check_resumable(path: Path, found: str | None, expected: str) -> None:
    from multimodal.exceptions import ConfigError

    if found is not None and found != expected:
        raise ConfigError(
            f"{path} was written with a different config; resuming would mix two experiments. "
            "Use a new --out folder, delete that one, or restore the original config "
            "(train.resume=false retrains from scratch into the same folder)."
        )


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 - seeds third-party code using the legacy global RNG
    torch.manual_seed(seed)


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "32"
    if precision == "32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def _early_stopping_split(
    event: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(event))
    if fraction <= 0 or len(event) < 20 or event.sum() < 4 or (~event).sum() < 4:
        if fraction > 0:
            log.warning(
                "too few patients or events for an early-stopping hold-out (%d patients, %d events):"
                " early stopping uses the training patients themselves",
                len(event),
                int(event.sum()),
            )
        return idx, idx[:0]
    fit, es = train_test_split(idx, test_size=fraction, stratify=event, random_state=seed)
    return np.sort(fit), np.sort(es)


@torch.no_grad()
def _outputs(
    model: torch.nn.Module, data: FoldData, device: torch.device, precision: str
) -> torch.Tensor:
    """Head outputs for every patient of ``data``, float32, on ``device`` (where the head lives)."""
    model.eval()
    outs = []
    for idx in data.batches(256):
        with _autocast(device, precision):
            outs.append(model(data.batch(idx).to(device)).float())
    return torch.cat(outs) if outs else torch.zeros(0, device=device)


def head_risk(model: torch.nn.Module, outputs: torch.Tensor) -> np.ndarray:
    """(n,) risk as numpy, whatever the device."""
    return model.head.risk(outputs).detach().float().cpu().numpy().astype(float)


def head_survival(model: torch.nn.Module, outputs: torch.Tensor, times) -> np.ndarray:
    """(n, len(times)) S(t) as numpy; ``times`` are moved to the outputs' device."""
    t = torch.as_tensor(np.asarray(times, dtype=np.float32), device=outputs.device)
    return model.head.survival(outputs, t).detach().float().cpu().numpy()


def _fit_pipelines(
    cfg, cohort, modalities, enc_cfgs, ctx, train_ids
) -> dict[str, ModalityPipeline]:
    pipes = {}
    for m in modalities:
        kind = cohort.sources[m].kind
        pipes[m] = PIPELINES.get(kind)(ctx, enc_cfgs[m].name).fit(cohort.sources[m], train_ids)
    return pipes


def run_fold(
    cfg,
    cohort,
    fold,
    modalities,
    enc_cfgs,
    ctx: PreprocessContext,
    times,
    device,
    run_dir: Path,
    callbacks,
) -> FoldOutcome:
    """Train fold ``fold`` (or reload it when a finished result is in the run folder)."""
    k = fold.index
    model_dir = run_dir / "model" / f"fold_{k}"
    done = model_dir / "fold.json"
    fingerprint = config_fingerprint(cfg)
    if cfg.train.resume and done.is_file():
        log.info("fold %d: finished earlier, reusing %s", k, model_dir)
        meta = json.loads(done.read_text())
        _check_resumable(done, meta.get("config_fingerprint"), fingerprint)
        return FoldOutcome(
            k,
            meta["metrics"],
            pd.read_csv(model_dir / "predictions.csv", dtype={"patient_id": str}),
            pd.read_csv(model_dir / "history.csv"),
            meta["eval_times"],
        )
    seed = cfg.train.seed + 1000 * k
    seed_everything(seed)
    train_ids, val_ids = list(fold.train_ids), list(fold.val_ids)
    pipes = _fit_pipelines(cfg, cohort, modalities, enc_cfgs, ctx, train_ids)
    train_data = build_fold_data(cohort, train_ids, pipes, cfg.endpoint)
    val_data = build_fold_data(cohort, val_ids, pipes, cfg.endpoint)
    fit_idx, es_idx = _early_stopping_split(
        train_data.event, cfg.data.early_stopping_fraction, seed
    )
    fit_data = train_data.subset(fit_idx)
    es_data = train_data.subset(es_idx) if len(es_idx) else fit_data
    cuts = None
    if _needs_cuts(cfg):
        from multimodal.survival.discrete import make_time_grid

        cuts = [
            float(c) for c in make_time_grid(fit_data.time, fit_data.event, n_bins=cfg.head.n_bins)
        ]
    clinical = next((m for m in modalities if cohort.sources[m].kind == "clinical"), None)

    def new_model(model_seed: int, data: FoldData) -> tuple[MultimodalSurvivalModel, bool]:
        """A fresh model, warm-started on ``data``; and whether its linear paths were fitted."""
        seed_everything(model_seed)  # preprocessing may have drawn random numbers (loading a model)
        net = MultimodalSurvivalModel(
            train_data.specs(),
            enc_cfgs,
            cfg.fusion,
            cfg.head,
            cuts=cuts,
            clinical_modality=clinical,
            endpoint=cfg.endpoint,
        ).to(device)
        fitted = None
        if cfg.train.clinical_warm_start is not None:
            fitted = warm_start_clinical(
                net,
                data,
                device,
                ridge=cfg.train.clinical_warm_start,
                penalties=tuple(cfg.train.linear_penalties),
                folds=cfg.train.linear_penalty_folds,
                tolerance=cfg.train.linear_penalty_tolerance,
                score=cfg.train.linear_penalty_score,
                combine=cfg.train.linear_combine,
                seed=model_seed,
            )
        return net, fitted is not None

    model, warm = new_model(seed, fit_data)
    ckpt_dir = run_dir / "checkpoints"
    history = _fit(
        cfg,
        model,
        fit_data,
        es_data,
        device,
        ckpt_dir / f"fold_{k}.pt",
        k,
        callbacks,
        keep_start=warm,
    )
    best_epoch = int(history["best_epoch"].iloc[-1]) if len(history) else 0
    if cfg.train.refit and len(es_idx) and (best_epoch > 0 or warm):
        # the hold-out chose the number of epochs (0: the penalised linear model alone); now learn
        # from every training patient
        model, _ = new_model(seed + 1, train_data)
        if best_epoch > 0:
            refit_ckpt = ckpt_dir / f"fold_{k}_refit.pt"
            _fit(cfg, model, train_data, None, device, refit_ckpt, k, None, epochs=best_epoch)
    base = model
    # Breslow baseline (Cox) on every training patient of the fold, never on validation patients
    base.head.fit_baseline(
        _outputs(base, train_data, device, cfg.train.precision).to(device),
        **_targets(base, train_data, device=device),
    )
    frame_args = (times, device, cfg.train.precision, cfg.endpoint, cfg.eval.horizons)
    preds = pd.concat(
        [
            predict_frame(base, train_data, *frame_args).assign(fold=k, split="train"),
            predict_frame(base, val_data, *frame_args).assign(fold=k, split="val"),
        ],
        ignore_index=True,
    )
    metrics = evaluate_fold(preds, times, cfg.eval.bootstrap, seed, cfg.endpoint)
    metrics.update(fold=k, n_train=len(train_ids), n_val=len(val_ids), best_epoch=best_epoch)
    history = history.drop(columns=["best_epoch"]).assign(fold=k)
    if dist_utils.is_main():
        meta = {
            "fold": k,
            "specs": base.describe()["specs"],
            "cuts": cuts,
            "risk_center": float(preds.loc[preds.split == "train", "risk"].mean()),
            "risk_centers": {
                c: float(preds.loc[preds.split == "train", c].mean())
                for c in preds.columns
                if c.startswith("risk_")
            },
            "clinical_modality": clinical,
            "modalities": modalities,
        }
        ckpt.save_weights(base, model_dir, meta)
        state = {
            m: {"kind": cohort.sources[m].kind, "encoder": enc_cfgs[m].name, "state": p.state()}
            for m, p in pipes.items()
        }
        ckpt.atomic_write_text(
            model_dir / "preprocess.json", json.dumps(state, default=_json_default)
        )
        preds.to_csv(model_dir / "predictions.csv", index=False)
        history.to_csv(model_dir / "history.csv", index=False)
        ckpt.atomic_write_text(
            done,
            json.dumps(
                {"metrics": metrics, "eval_times": list(times), "config_fingerprint": fingerprint},
                default=_json_default,
            ),
        )
    log.info(
        "fold %d: validation C-index %.4f (best epoch %d)",
        k,
        metrics["c_index"],
        metrics["best_epoch"],
    )
    return FoldOutcome(k, metrics, preds, history, list(times))


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _augment(batch, model, generator: torch.Generator | None = None) -> None:
    """Training-time image augmentation on the batch tensors: random flips and mild noise."""
    for m, spec in model.specs.items():
        if spec.kind != "imaging":
            continue
        x = batch.inputs[m]
        dims = list(range(2, x.dim()))
        for d in dims:
            flip = torch.rand(x.shape[0]) < 0.5
            if flip.any():
                x[flip] = x[flip].flip(d)
        batch.inputs[m] = x + 0.05 * torch.randn_like(x)


def _fit(
    cfg,
    model,
    fit_data: FoldData,
    es_data: FoldData | None,
    device,
    ckpt_path: Path,
    fold: int,
    callbacks,
    epochs: int | None = None,
    keep_start: bool = False,
) -> pd.DataFrame:
    """Train ``model`` with a checkpoint per epoch (resumable).

    With ``es_data``: early stopping on the hold-out C-index averaged over the last
    ``train.es_smoothing`` epochs; the best state is kept. Without it: exactly ``epochs`` epochs,
    the last state is kept. ``keep_start``: the untrained model (a warm-started penalised linear
    Cox model) is a candidate too, as epoch 0: training must beat it on the hold-out by more than
    ``train.es_min_delta`` to replace it, so the deep branches cannot make the model worse than
    its linear part by fitting noise.
    """
    from multimodal.survival.losses import LOSS_STATS
    from multimodal.training.trainer import EpochInfo  # circular at module level

    tc = cfg.train
    n_epochs = epochs or tc.epochs
    opt = torch.optim.AdamW(_param_groups(model, tc), lr=tc.lr, weight_decay=tc.weight_decay)
    rng = np.random.default_rng(tc.seed + 7919 * fold)
    net = model
    if dist_utils.world_size() > 1:
        net = torch.nn.parallel.DistributedDataParallel(model)
    state = ckpt.load_checkpoint(ckpt_path) if tc.resume else None
    fingerprint = config_fingerprint(cfg)
    if state is not None:
        _check_resumable(ckpt_path, state.get("config_fingerprint"), fingerprint)
    history: list[dict[str, Any]] = []
    best = {"score": -math.inf, "epoch": 0, "state": None, "bad": 0}
    start = 0
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        rng.bit_generator.state = state["rng"]
        torch.set_rng_state(state["torch_rng"])
        if torch.cuda.is_available() and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, best, start = state["history"], state["best"], state["epoch"]
        log.info("fold %d: resuming after epoch %d", fold, start)
    elif keep_start and es_data is not None:
        score0, _ = _early_stopping_score(cfg, model, es_data, device, [])
        if np.isfinite(score0):
            best = {"score": score0, "epoch": 0, "bad": 0, "state": _snapshot(model)}
    if tc.event_balanced:
        sampler = EventBalancedBatchSampler(
            fit_data.event, tc.batch_size, rng, tc.min_events_per_batch
        )
    else:
        sampler = RandomBatchSampler(len(fit_data), tc.batch_size, rng)
    bar = _progress(tc, fold, start, n_epochs)
    for epoch in range(start, n_epochs):
        if es_data is not None and best["bad"] >= tc.patience:
            break
        LOSS_STATS.reset()
        loss = _train_epoch(cfg, net, model, opt, sampler, fit_data, device)
        score, smoothed = _early_stopping_score(cfg, model, es_data, device, history)
        if es_data is None:
            best["epoch"] = epoch + 1
        elif np.isfinite(smoothed) and smoothed > best["score"] + max(tc.es_min_delta, 1e-6):
            best = {"score": smoothed, "epoch": epoch + 1, "bad": 0, "state": _snapshot(model)}
        else:
            best["bad"] += 1
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": loss,
                "es_c_index": score,
                "es_c_index_smoothed": smoothed,
                "no_event_batches": LOSS_STATS.no_event_batches,
                "best_epoch": best["epoch"],
            }
        )
        if dist_utils.is_main():
            ckpt.save_checkpoint(
                ckpt_path,
                {
                    "model": model.state_dict(),
                    "optimizer": opt.state_dict(),
                    "rng": rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all()
                    if torch.cuda.is_available()
                    else None,
                    "history": history,
                    "best": best,
                    "epoch": epoch + 1,
                    "config_fingerprint": fingerprint,
                },
            )
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4f}", c_index=f"{score:.4f}", best=f"{best['score']:.4f}")
        for cb in callbacks or []:
            cb(EpochInfo(fold, epoch + 1, loss, score, best["score"]))
    if bar is not None:
        bar.close()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    return pd.DataFrame(history)


def _snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the model's state, kept as the best so far."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def _param_groups(model, tc) -> list[dict[str, Any]]:
    linear = getattr(model, "clinical_linear", None) if model.clinical_modality else None
    if linear is None or tc.clinical_lr is None:
        return [{"params": list(model.parameters())}]
    lin_ids = {id(p) for p in linear.parameters()}
    rest = [p for p in model.parameters() if id(p) not in lin_ids]
    return [{"params": rest}, {"params": list(linear.parameters()), "lr": tc.clinical_lr}]


def _early_stopping_score(cfg, model, es_data, device, history) -> tuple[float, float]:
    """(hold-out C-index of this epoch, its mean with the previous ``es_smoothing - 1`` epochs)."""
    if es_data is None:
        return float("nan"), float("nan")
    outputs = _outputs(model, es_data, device, cfg.train.precision)
    score = float(model.head.score(outputs, **_targets(model, es_data)))
    k = cfg.train.es_smoothing
    recent = [h["es_c_index"] for h in history[-(k - 1) :]] if k > 1 else []
    if not np.isfinite(score):
        return score, float("nan")
    return score, float(np.nanmean([*recent, score]))


def _progress(tc, fold: int, start: int, total: int):
    if not tc.progress or not dist_utils.is_main():
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, desc=f"fold {fold}", leave=True)


def _train_epoch(cfg, net, model, opt, sampler, data: FoldData, device) -> float:
    """One epoch; ``accumulate`` micro-batches form one risk set and one optimiser step."""
    from multimodal.training.distributed import gather_cat

    net.train()
    tc = cfg.train
    batches = sampler.epoch()
    ws, rk = dist_utils.world_size(), dist_utils.rank()
    losses = []
    for s in range(0, len(batches), tc.accumulate):
        outs, targets = [], {name: [] for name in model.head.targets}
        for idx in batches[s : s + tc.accumulate]:
            idx = np.array_split(idx, ws)[rk] if ws > 1 else idx
            batch = data.batch(idx)
            _augment(batch, model)
            batch = batch.to(device)
            with _autocast(device, tc.precision):
                outs.append(net(batch).float())
            for name, values in targets.items():
                values.append(getattr(batch, name))
        out = gather_cat(torch.cat(outs), with_grad=True)
        loss = model.head.loss(out, **{n: gather_cat(torch.cat(v)) for n, v in targets.items()})
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses)) if losses else float("nan")


@torch.no_grad()
def predict_frame(
    model,
    data: FoldData,
    times: list[float],
    device,
    precision: str = "32",
    endpoint: str = "os",
    horizons: list[float] = (),
) -> pd.DataFrame:
    """patient_id, time, event, risk and S(t) at ``times`` for every patient of ``data``; for the
    progression endpoints also their outcomes, named risks and curves
    (:mod:`multimodal.training.endpoints`)."""
    out = _outputs(model, data, device, precision)
    if endpoint in PROGRESSION_ENDPOINTS:
        return _progression_frame(model, data, out, times, endpoint, horizons)
    risk = head_risk(model, out)
    surv = head_survival(model, out, times)
    frame = pd.DataFrame(
        {"patient_id": data.ids, "time": data.time, "event": data.event.astype(int), "risk": risk}
    )
    for j, t in enumerate(times):
        frame[f"surv_{t:g}"] = surv[:, j]
    return frame


def _progression_frame(model, data, out, times, endpoint, horizons) -> pd.DataFrame:
    from multimodal.training.endpoints import endpoint_predictions, outcome_frame

    risks, curves = endpoint_predictions(endpoint, model.head, out, list(times), list(horizons))
    frame = outcome_frame(endpoint, data)
    frame.insert(0, "patient_id", data.ids)
    columns = {k: frame[k].to_numpy() for k in frame.columns}
    columns.update(risks)
    for prefix, values in curves.items():
        grid = horizons if prefix == "p_progression" else times
        for j, t in enumerate(grid):
            columns[f"{prefix}_{t:g}"] = values[:, j]
    return pd.DataFrame(columns)


def _needs_cuts(cfg) -> bool:
    """True when the endpoint's head is a discrete-time head (it needs a time grid)."""
    from multimodal.survival.heads import HEADS, DiscreteTimeHead

    return issubclass(HEADS.get(cfg.head_name), DiscreteTimeHead)


def _targets(model, data: FoldData, device=None) -> dict[str, Any]:
    """The head's targets (``head.targets``) for every patient of ``data``, as tensors."""
    return {
        n: torch.as_tensor(v, device=device) for n, v in data.targets(model.head.targets).items()
    }


def evaluate_fold(
    preds: pd.DataFrame, times: list[float], n_boot: int = 0, seed: int = 0, endpoint: str = "os"
) -> dict[str, Any]:
    """Validation metrics of one fold from its prediction frame (train rows give the IPCW weights).

    For the progression endpoints the metrics of the primary endpoint (``c_index``, ``uno_c``,
    ``td_auc``, ``ibs``: from ``time``/``event``/``risk``/``surv_<t>``) are followed by the
    per-endpoint and per-cause ones (:func:`multimodal.training.endpoints.endpoint_metrics`); for
    ``competing`` the primary ``ibs`` is the IPCW integrated Brier score of the progression CIF.
    """
    out = _evaluate_primary(preds, times, n_boot, seed)
    if endpoint in PROGRESSION_ENDPOINTS:
        from multimodal.training.endpoints import endpoint_metrics

        out.update(endpoint_metrics(preds, times, endpoint))
        if endpoint == "competing":
            out["ibs"] = out.get("ibs_cif_progression")
    return out


def _evaluate_primary(
    preds: pd.DataFrame, times: list[float], n_boot: int = 0, seed: int = 0
) -> dict[str, Any]:
    from multimodal.survival import metrics as M

    tr, va = preds[preds.split == "train"], preds[preds.split == "val"]
    t, e, r = va.time.to_numpy(float), va.event.to_numpy(bool), va.risk.to_numpy(float)
    tt, te = tr.time.to_numpy(float), tr.event.to_numpy(bool)
    out: dict[str, Any] = {"c_index": float(M.harrell_c(t, e, r)), "n_events_val": int(e.sum())}
    # IPCW metrics only at times inside both the validation follow-up and the training range
    grid = np.array([x for x in times if t.min() <= x < min(t.max(), tt.max())])
    cols = [f"surv_{x:g}" for x in grid]
    for key, fn in (
        ("uno_c", lambda: M.uno_c(tt, te, t, e, r)),
        ("td_auc", lambda: M.td_auc(tt, te, t, e, r, grid)[1]),
        ("ibs", lambda: M.integrated_brier_score(tt, te, t, e, va[cols].to_numpy(), grid)),
    ):
        try:
            out[key] = float(fn()) if (key == "uno_c" or len(grid) >= 2) else None
        except Exception as exc:  # metric undefined on this fold (e.g. no events in range)
            log.warning("%s not computed: %s", key, exc)
            out[key] = None
    if n_boot:
        _, lo, hi = M.bootstrap_ci(M.harrell_c, t, e, r, n_boot=n_boot, seed=seed)
        out["c_index_ci"] = [float(lo), float(hi)]
    return out
