"""``train(config) -> TrainResult``: cross-validated training of a multimodal survival model.

For each fold: preprocessing is fitted on the training patients; a share of them
(``data.early_stopping_fraction``) is held out for early stopping, so the reported validation fold
never influences training; the model is trained with an event-balanced sampler, checkpointed
(``train.checkpoint_every``; an interrupted run resumes exactly), then evaluated on the validation
fold. The CLI, the benchmark and the tuner all call this function.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal import console
from multimodal._version import __version__
from multimodal.config import Config, EncoderConfig, load_config
from multimodal.data.cohort import check_training_covariates
from multimodal.data.landmark import expand_folds
from multimodal.evaluation.report import run_metrics
from multimodal.exceptions import ConfigError, MissingModalityError
from multimodal.models.model import DEFAULT_ENCODERS
from multimodal.registry import did_you_mean
from multimodal.runfolder import RunFolder
from multimodal.survival.endpoints import get_endpoint
from multimodal.training import distributed as dist_utils
from multimodal.training.combine import members_summary
from multimodal.training.config_checks import check_registry_names
from multimodal.training.fold import FoldOutcome, run_fold
from multimodal.training.loop import EpochInfo
from multimodal.training.preprocess import PreprocessContext
from multimodal.training.provenance import data_fingerprint, git_sha
from multimodal.training.resume import config_fingerprint
from multimodal.training.threads import training_threads

__all__ = [
    "EpochInfo",
    "TrainResult",
    "cohort_folds",
    "landmarked_for_training",
    "select_device",
    "train",
    "trainable_cohort",
]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train` returns; everything is also written to ``run_dir``."""

    run_dir: Path
    config: Config
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    history: pd.DataFrame
    folds: list[FoldOutcome] = field(default_factory=list)

    @property
    def c_index(self) -> float:
        return float(self.metrics["c_index"])


def select_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, then MPS, then CPU."""
    if name != "auto":
        try:
            device = torch.device(name)
        except RuntimeError:
            raise ConfigError(
                f"train.device {name!r} is not a torch device; use auto, cpu, cuda, cuda:0 or mps"
            ) from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError(
                "train.device asks for CUDA but this machine has none; use auto or cpu"
            )
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _select_modalities(cfg: Config, cohort: Any) -> list[str]:
    available = list(cohort.modalities)
    wanted = cfg.data.modalities or available
    unknown = [m for m in wanted if m not in available]
    if unknown:
        hints = "".join(did_you_mean(m, available) for m in unknown)
        raise MissingModalityError(
            f"data.modalities names {unknown}, which the cohort does not have.{hints} "
            f"The cohort has: {available}"
        )
    unused = [m for m in cfg.encoders if m not in wanted]
    if unused:  # once per run: the demo's single-modality models would repeat it for each model
        console.warn_once(
            log,
            "encoders configured for modalities a model does not use are ignored (here: %s)",
            ", ".join(unused),
            key="unused-encoders",
            level=logging.INFO,
        )
    return list(wanted)


def _encoder_configs(cfg: Config, cohort: Any, modalities: list[str]) -> dict[str, Any]:
    out = {}
    for m in modalities:
        kind = cohort.sources[m].kind
        out[m] = cfg.encoders.get(m) or EncoderConfig(name=DEFAULT_ENCODERS[kind])
    return out


def cohort_folds(cfg: Config, cohort: Any) -> list[Any]:
    """The cross-validation folds the config asks for (``data.split``, ``data.folds``,
    ``data.group_by``, ``data.fold_indices``): what :func:`train` and the tuner run."""
    if cfg.data.split:
        split = Path(cfg.data.split)
        folds = (
            cohort.folds(split_dir=split) if split.is_dir() else cohort.folds(name=cfg.data.split)
        )
    else:
        folds = cohort.folds(k=cfg.data.folds, seed=cfg.train.seed, group_by=cfg.data.group_by)
    if cfg.data.fold_indices is not None:
        bad = [i for i in cfg.data.fold_indices if i not in {f.index for f in folds}]
        if bad:
            raise ConfigError(f"data.fold_indices {bad} do not exist (folds: 0..{len(folds) - 1})")
        folds = [f for f in folds if f.index in cfg.data.fold_indices]
    return folds


def landmarked_for_training(cfg: Config, cohort: Any) -> Any:
    """``cohort`` as training sees it: the stacked landmark rows when ``data.landmark`` is set
    (:func:`multimodal.data.landmark.landmark_cohort`), else ``cohort`` itself. A longitudinal
    modality without ``data.landmark`` is refused: measurements after time 0 tell a baseline
    model that the patient lived until then."""
    chosen = cfg.data.modalities or list(cohort.modalities)
    longitudinal = [
        m for m in chosen if m in cohort.sources and cohort.sources[m].kind == "longitudinal"
    ]
    lm = cfg.data.landmark
    if lm is None:
        if longitudinal:
            raise ConfigError(
                f"modality {longitudinal[0]!r} holds repeat measurements over time: set "
                "data.landmark (e.g. {times: [0, 1, 2, 3], horizon: 5} in the cohort's time unit) "
                "so that each prediction uses only what was measured up to its landmark, or leave "
                "the modality out with data.modalities"
            )
        return cohort
    from multimodal.data.landmark import landmark_cohort

    landmarked = landmark_cohort(
        cohort,
        lm.times,
        lm.horizon,
        stack=True,
        outcome_columns=get_endpoint(cfg.endpoint).required_columns,
    )
    log.info(
        "landmarking: %d rows from %d patients at landmarks %s, horizon %g",
        len(landmarked.patients),
        len(cohort.patients),
        lm.times,
        lm.horizon,
    )
    return landmarked


def _eval_times(cfg: Config, cohort: Any) -> list[float]:
    if cfg.eval.times:
        return sorted(float(t) for t in cfg.eval.times)
    tcol, ecol = get_endpoint(cfg.endpoint).grid_columns
    pt = cohort.patients
    ev = pt.loc[pt[ecol].astype(bool), tcol].dropna().to_numpy(dtype=float)
    if len(ev) == 0:
        raise ConfigError(f"the cohort has no observed events for endpoint {cfg.endpoint!r}")
    # A reporting grid shared by the folds so that predictions.csv has one set of columns. It is
    # taken from the whole cohort's event times: no model parameter depends on it, but it decides
    # where IBS and td-AUC are evaluated; set eval.times to fix it in advance.
    qs = np.linspace(0.1, 0.9, cfg.eval.n_times)
    grid = [float(round(t, 4)) for t in np.unique(np.quantile(ev, qs))]
    if cfg.data.landmark is not None:  # S(horizon | alive at the landmark): the dynamic Brier score
        grid = sorted({*grid, float(cfg.data.landmark.horizon)})
    return grid


def with_cohort_covariates(cfg: Config, cohort: Any) -> Config:
    """``cfg`` with ``data.clinical_*`` as ``cohort`` was read: a TCGA cohort loaded with other
    clinical covariates (``Cohort.load(folder, clinical_categorical=[...])`` passed to
    :func:`train`) puts them in the config, so that the run records them and ``predict``, the
    report and the dashboard read the folder alike. A config naming covariates the cohort was
    not read with is refused: the model would not get them."""
    from multimodal.data.tcga_tables import non_default_covariates

    loaded = getattr(cohort, "clinical_options", None)
    if loaded is None:  # a manifest or PBC2 cohort: it names its own covariates
        if cfg.data.cohort_options():
            raise ConfigError(
                f"data.clinical_numeric / data.clinical_categorical choose the covariates of a "
                f"TCGA folder; the cohort {getattr(cohort, 'name', '')!r} is not one (a manifest "
                "names its covariates in its clinical entry). Remove the two keys from the config."
            )
        return cfg
    wanted = non_default_covariates(cfg.data.cohort_options())
    if wanted == loaded:
        return cfg
    if wanted:
        raise ConfigError(
            f"the config's clinical covariates {wanted} are not those the cohort "
            f"{getattr(cohort, 'name', '')!r} was read with ({loaded or 'its own'}): load it "
            f"with Cohort.load(path, **cfg.data.cohort_options()), or pass its path "
            "(data.cohort / --cohort) and let train read it."
        )
    raw = cfg.to_dict()
    raw["data"].update(loaded)
    return load_config(raw)  # validated as any config


def trainable_cohort(cohort: Any, endpoint: str) -> Any:
    """``cohort`` without the patients that lack the endpoint's outcome columns (logged); a
    ConfigError when the patient table lacks a column altogether."""
    cols = list(get_endpoint(endpoint).required_columns)
    pt = cohort.patients
    lacking = [c for c in cols if c not in pt]
    if lacking:
        raise ConfigError(
            f"endpoint {endpoint!r} needs columns {cols} in the patient table; "
            f"{lacking} are missing"
        )
    ok = pt[cols].notna().all(axis=1)
    if not ok.all():
        log.warning("%d patients lack the %s endpoint and are left out", int((~ok).sum()), endpoint)
        cohort = cohort.subset(list(pt.index[ok]))
    return cohort


def _resolved_config(cfg: Config, cohort: Any, modalities: list[str], folds: list[Any]) -> dict:
    """The config as written to ``config.yaml``: the config itself plus ``_meta`` provenance."""
    resolved = cfg.to_dict()
    resolved["_meta"] = {
        "run_id": uuid.uuid4().hex[:12],
        "package_version": __version__,
        "git_sha": git_sha(),
        "torch_version": str(torch.__version__),
        "seed": cfg.train.seed,
        "modalities": modalities,
        "folds": sorted(int(f.index) for f in folds),
        "data_fingerprint": data_fingerprint(cohort, modalities),
        # where the cohort's files are when it came as an object (data.cohort is then empty):
        # the dashboard and `predict` users find it from here
        "cohort_path": str(Path(cohort.root).resolve())
        if getattr(cohort, "root", None) is not None
        else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return resolved


def _resume_problems(
    raw: dict[str, Any], old_meta: dict[str, Any], cfg: Config, meta: dict[str, Any]
) -> list[str]:
    """Why the run whose ``config.yaml`` holds ``raw`` (without ``_meta``) and ``old_meta`` must
    not be continued under ``cfg`` and this cohort (empty: it may). The resume key is the config
    fingerprint, the data fingerprint and the cohort path."""
    problems = []
    try:
        same_config = config_fingerprint(Config.model_validate(raw)) == config_fingerprint(cfg)
    except ValueError:  # a config this release cannot read
        same_config = False
    if not same_config:
        problems.append("the config differs from the one it was trained with")
    old_data = old_meta.get("data_fingerprint")
    if old_data is not None and old_data != meta["data_fingerprint"]:
        changed = sorted(
            k
            for k in set(old_data) | set(meta["data_fingerprint"])
            if old_data.get(k) != meta["data_fingerprint"].get(k)
        )
        problems.append(f"the cohort's data differ (changed tables: {', '.join(changed)})")
    old_path, new_path = old_meta.get("cohort_path"), meta["cohort_path"]
    if old_path and new_path and old_path != new_path:
        problems.append(f"it was trained on the cohort at {old_path}, not {new_path}")
    return problems


def _prepare_run_folder(folder: RunFolder, cfg: Config, resolved: dict, force: bool) -> None:
    """Check that ``folder`` may take this run, then write ``config.yaml``. Nothing is written
    before the checks pass. ``force`` or ``train.resume=false`` starts the run over."""
    meta = resolved["_meta"]
    if folder.is_run():
        if force or not cfg.train.resume:
            folder.clear_results()
        else:
            raw = folder.read_config_raw()
            old = raw.pop("_meta", None) or {}
            problems = _resume_problems(raw, old, cfg, meta)
            if problems:
                raise ConfigError(
                    f"{folder.path} holds a run that cannot be continued: {'; '.join(problems)}. "
                    "Nothing was changed. Use a new output folder (--out / out=), or start "
                    "over with --force / force=True (deletes that run's results)."
                )
            meta["run_id"] = old.get("run_id") or meta["run_id"]
            meta["created"] = old.get("created", meta["created"])
            meta["folds"] = sorted(set(old.get("folds") or []) | set(meta["folds"]))
    folder.write_config(resolved)


def train(
    config: Config | dict[str, Any] | str | Path,
    *,
    cohort: Any = None,
    out: str | Path | None = None,
    overrides: list[str] | None = None,
    callbacks: list[Callable[[EpochInfo], None]] | None = None,
    force: bool = False,
) -> TrainResult:
    """Train and cross-validate a multimodal survival model.

    Parameters
    ----------
    config : Config, dict or path of a YAML file.
    cohort : a loaded :class:`multimodal.Cohort` (default: load ``config.data.cohort``).
    out : run folder (default: ``config.out`` or ``runs/<timestamp>``).
    overrides : ``["train.epochs=2", ...]`` applied on top of ``config``.
    callbacks : called with an :class:`EpochInfo` after every epoch.
    force : start over in an existing run folder (its results are deleted). Without it, a run
        folder continues only under the same config, data and cohort path; otherwise a
        :class:`ConfigError` says so before anything is written.

    Returns
    -------
    TrainResult
        ``metrics["c_index"]`` is the mean validation C-index over the folds.

    Notes
    -----
    Training runs with ``train.threads`` intra-op threads (:mod:`multimodal.training.threads`);
    the previous count is restored when it returns.
    """
    console.start_run()  # each warning once per run
    cfg = load_config(config, overrides)
    check_registry_names(cfg)  # before any cohort loading or file writing
    if cohort is None:
        if not cfg.data.cohort:
            raise ConfigError(
                "no cohort: set data.cohort in the config, or pass --cohort / cohort="
            )
        from multimodal.data.cohort import Cohort

        cohort = Cohort.load(cfg.data.cohort, **cfg.data.cohort_options())
    cfg = with_cohort_covariates(cfg, cohort)
    cohort = trainable_cohort(cohort, cfg.endpoint)
    check_training_covariates(cohort)  # an age of 25000 or -5: refused before anything is written
    patients_cohort, cohort = cohort, landmarked_for_training(cfg, cohort)
    folder = RunFolder(out or cfg.out or Path("runs") / time.strftime("%Y%m%d-%H%M%S"))
    device = select_device(cfg.train.device)
    distributed = dist_utils.init_distributed(device)
    if cfg.train.batch_size < dist_utils.world_size():
        raise ConfigError(
            f"train.batch_size {cfg.train.batch_size} is smaller than the {dist_utils.world_size()} "
            "processes: every process needs patients in each batch"
        )
    modalities = _select_modalities(cfg, cohort)
    enc_cfgs = _encoder_configs(cfg, cohort, modalities)
    folds = cohort_folds(cfg, patients_cohort)
    if cohort is not patients_cohort:  # landmark rows follow their patient's fold
        folds = expand_folds(folds, cohort)
    times = _eval_times(cfg, cohort)
    if dist_utils.is_main():
        _prepare_run_folder(folder, cfg, _resolved_config(cfg, cohort, modalities, folds), force)
    ctx = PreprocessContext.from_config(cfg)
    log.info(
        "training %s on %d patients, modalities %s, %d folds, device %s%s",
        cfg.fusion.name,
        len(cohort.patients),
        modalities,
        len(folds),
        device,
        f", {dist_utils.world_size()} ranks" if distributed else "",
    )
    # train.threads for the whole run (restored afterwards); each fit caps it for its model's size
    with training_threads(cfg.train.threads):
        outcomes = [
            run_fold(cfg, cohort, fold, modalities, enc_cfgs, ctx, times, device, folder, callbacks)
            for fold in folds
        ]
    return _finish(folder, cfg, outcomes, modalities)


def _finish(
    folder: RunFolder, cfg: Config, outcomes: list[FoldOutcome], modalities: list[str]
) -> TrainResult:
    predictions = pd.concat([o.predictions for o in outcomes], ignore_index=True)
    history = pd.concat([o.history for o in outcomes], ignore_index=True)
    metrics: dict[str, Any] = {
        "endpoint": cfg.endpoint,
        "modalities": modalities,
        **run_metrics(cfg.endpoint, [o.metrics for o in outcomes]),
        "eval_times": outcomes[0].eval_times if outcomes else [],
    }
    if dist_utils.is_main():
        folder.write_predictions(predictions)
        folder.write_history(history)
        folder.write_metrics(metrics)
        log.info("%s", _members_summary(folder, cfg, outcomes))
    return TrainResult(folder.path, cfg, metrics, predictions, history, outcomes)


def _members_summary(folder: RunFolder, cfg: Config, outcomes: list[FoldOutcome]) -> str:
    """The run's members in one sentence, from each fold's ``model.json`` (reused folds too)."""
    fits = [folder.read_fold_meta(o.index).get("linear_fit") for o in outcomes]
    deep = [int(o.metrics.get("best_epoch") or 0) > 0 for o in outcomes]
    off = max(cfg.members.penalties) if cfg.members.penalties else None
    has_deep = cfg.members.deep or not all(fits)  # without linear members the deep model trains
    return members_summary(fits, deep if has_deep else None, off)
