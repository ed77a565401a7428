"""The Optuna objective: one trial = one call of :func:`multimodal.train` with inner K-fold CV.

The value of a trial is the mean validation C-index (or the metrics named in the tuning file)
over the inner folds, which are drawn from the patients given to the study only -- in nested
cross-validation, the training part of an outer fold.

Pruning
-------
After every epoch, :func:`multimodal.train` passes an :class:`~multimodal.training.trainer.EpochInfo`
to its callbacks. The tuner reports ``best_c_index`` -- the best smoothed early-stopping C-index
of the current inner fold so far, i.e. the quality of the model that fold would keep -- at step
``fold * max_epochs + epoch``, from epoch ``n_warmup_steps + 1`` of each fold on (median pruner). Every trial of a study uses the same inner folds, so values at one
step are comparable across trials; early-stopped folds simply report fewer steps. A trial is
pruned when the pruner (median or Hyperband) finds it behind the others at the same step.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from multimodal.exceptions import TuningError
from multimodal.runfolder import RunFolder
from multimodal.training.trainer import EpochInfo, train
from multimodal.tuning.space import TuneSpec

__all__ = ["Objective", "PruningCallback", "TrialFailedError", "trial_folder", "worker_id"]

log = logging.getLogger(__name__)


class TrialFailedError(TuningError):
    """A trial trained but produced no usable value (e.g. a NaN C-index)."""


def worker_id(thread: int = 0) -> str:
    """``host:pid`` (``host:pid/t<k>`` for extra threads): which process ran a trial."""
    wid = f"{socket.gethostname()}:{os.getpid()}"
    return f"{wid}/t{thread}" if thread else wid


def trial_folder(run_dir: Path, trial: Any) -> Path:
    """``RUN_DIR/trials/<n>``. A retried trial inherits the user attributes of the trial it
    repeats, ``trial_dir`` included, so it trains in that folder and resumes from its last epoch
    checkpoint (when the retry runs on the same machine)."""
    return Path(run_dir) / "trials" / str(trial.user_attrs.get("trial_dir", trial.number))


class PruningCallback:
    """Reports each epoch's early-stopping C-index to Optuna and raises ``TrialPruned``.

    Parameters
    ----------
    trial : the running ``optuna.Trial``.
    stride : steps per inner fold (the largest number of epochs a fold can train).
    enabled : report and prune (False: only count epochs, e.g. in multi-objective studies,
        which Optuna cannot prune).
    warmup : epochs at the start of *each* inner fold that are not reported: the first epochs'
        hold-out C-index is mostly noise, in every fold.
    """

    def __init__(self, trial: Any, stride: int, enabled: bool = True, warmup: int = 0) -> None:
        self.trial = trial
        self.stride = int(stride)
        self.enabled = enabled
        self.warmup = int(warmup)
        self.epochs = 0

    def __call__(self, info: EpochInfo) -> None:
        import optuna

        self.epochs += 1
        value = float(info.best_c_index)
        if not self.enabled or info.epoch <= self.warmup or not math.isfinite(value):
            return
        self.trial.report(value, step=info.fold * self.stride + info.epoch)
        if self.trial.should_prune():
            self.trial.set_user_attr("pruned_at", {"fold": info.fold, "epoch": info.epoch})
            raise optuna.TrialPruned(
                f"pruned at inner fold {info.fold}, epoch {info.epoch} "
                f"(early-stopping C-index {value:.4f})"
            )


class Objective:
    """Callable objective for ``study.optimize``.

    Parameters
    ----------
    spec : the tuning file.
    cohort : the patients to tune on (a :class:`multimodal.Cohort`); the inner folds split them.
    run_dir : the study's run folder; trial ``n`` trains in ``run_dir/trials/<n>``.
    thread : index of the worker thread in this process (for the ``worker`` user attribute).
    on_start : called when a trial starts (the study loop uses it to release its trial slot).
    """

    def __init__(
        self,
        spec: TuneSpec,
        cohort: Any,
        run_dir: Path,
        *,
        thread: int = 0,
        on_start: Callable[[], None] | None = None,
    ) -> None:
        self.spec = spec
        self.cohort = cohort
        self.run_dir = Path(run_dir)
        self.thread = thread
        self.on_start = on_start
        self.stride = spec.max_epochs()
        self.prune = spec.pruner.name != "none" and len(spec.objective.metrics) == 1

    def __call__(self, trial: Any) -> float | tuple[float, ...]:
        import optuna

        if self.on_start is not None:
            self.on_start()
        rerun = "trial_dir" in trial.user_attrs  # inherited from the trial this one repeats
        folder = trial_folder(self.run_dir, trial)
        trial.set_user_attr("trial_dir", folder.name)  # before "worker": a re-run needs both
        trial.set_user_attr("interrupted", False)
        trial.set_user_attr("worker", worker_id(self.thread))
        params = {path: p.suggest(trial, path) for path, p in self.spec.search.items()}
        warmup = self.spec.pruner.n_warmup_steps if self.spec.pruner.name == "median" else 0
        reporter = PruningCallback(trial, self.stride, enabled=self.prune, warmup=warmup)
        start = time.perf_counter()
        finished = False
        try:
            # a re-run continues from the checkpoints of the trial it repeats; a new trial starts
            # from scratch, whatever an earlier study left in its folder
            cfg = self.spec.trial_config(params, resume=rerun)
            result = train(cfg, cohort=self.cohort, out=folder, callbacks=[reporter])
            values = self._values(trial, result.metrics)
            finished = True
            return values
        except optuna.TrialPruned:
            finished = True
            raise
        except Exception as exc:
            finished = True
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        except BaseException:  # KeyboardInterrupt: the study loop retries this trial on resume
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            trial.set_user_attr("seconds", round(time.perf_counter() - start, 3))
            trial.set_user_attr("epochs", reporter.epochs)
            if finished:
                self._clean(folder)

    def _values(self, trial: Any, metrics: dict[str, Any]) -> float | tuple[float, ...]:
        keep = ("c_index", "c_index_std", "uno_c", "ibs", "td_auc")
        trial.set_user_attr("metrics", {k: metrics.get(k) for k in keep})
        values = []
        for name in self.spec.objective.metrics:
            v = metrics.get(name)
            if v is None or not math.isfinite(float(v)):
                raise TrialFailedError(
                    f"validation {name} is {v} (mean over {self.spec.objective.inner_folds} inner "
                    "folds): the model produced no usable risk (diverged, or a fold has no events "
                    "in the metric's time range)"
                )
            values.append(float(v))
        return values[0] if len(values) == 1 else tuple(values)

    def _clean(self, folder: Path) -> None:
        """Checkpoints are only needed to resume an unfinished trial; weights only on request."""
        heavy = [RunFolder.CHECKPOINTS] + ([] if self.spec.study.keep_models else [RunFolder.MODEL])
        for name in heavy:
            shutil.rmtree(folder / name, ignore_errors=True)
