"""What a study leaves in its run folder, and the one line printed per trial.

``best.yaml`` (a complete config for ``multimodal train``), ``summary.json`` (counts, best trials,
parameter importances, throughput, what pruning saved), ``trials.csv`` (one row per trial) and
``history.png`` (objective value per trial with the running best).
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from multimodal.config import load_config
from multimodal.runfolder import atomic_write_text
from multimodal.tuning.result import TuneResult, count_trials
from multimodal.tuning.space import TuneSpec, set_dotted

__all__ = ["best_trial", "progress_line", "write_outputs"]

log = logging.getLogger(__name__)


def _metrics(study: Any) -> list[str]:
    return list(study.user_attrs.get("metrics") or ["value"])


def best_trial(study: Any) -> Any:
    """The best complete trial; in a multi-objective study, the Pareto-optimal trial with the best
    first metric. None when no trial completed."""
    from optuna.trial import TrialState

    if not any(t.state == TrialState.COMPLETE for t in study.get_trials(deepcopy=False)):
        return None
    if len(study.directions) == 1:
        return study.best_trial
    sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
    return max(study.best_trials, key=lambda t: sign * t.values[0])


def _fmt_values(study: Any, values: list[float]) -> str:
    if len(values) == 1:
        return f"value {values[0]:.4f}"
    return "  ".join(f"{m} {v:.4f}" for m, v in zip(_metrics(study), values))


def progress_line(study: Any, trial: Any, n_trials: int) -> str:
    """``trial 3  value 0.6340  best 0.6510 (trial 1)  12.3 s  [4/20]`` (pruned/failed alike)."""
    from optuna.trial import TrialState

    counts = count_trials(study.get_trials(deepcopy=False))
    seconds = trial.user_attrs.get("seconds")
    if trial.state == TrialState.COMPLETE:
        what = _fmt_values(study, list(trial.values))
    elif trial.state == TrialState.PRUNED:
        at = trial.user_attrs.get("pruned_at") or {}
        what = f"pruned at inner fold {at.get('fold')}, epoch {at.get('epoch')}"
    else:
        error = str(trial.user_attrs.get("error", "interrupted")).splitlines()[0]
        what = f"failed: {error[:160]}"
    best = best_trial(study)
    if best is None:
        best_s = "best -"
    elif len(study.directions) == 1:
        best_s = f"best {best.value:.4f} (trial {best.number})"
    else:
        best_s = f"pareto front {len(study.best_trials)} trials"
    took = f"  {seconds:.1f} s" if seconds is not None else ""
    return f"trial {trial.number}  {what}  {best_s}{took}  [{counts.finished}/{n_trials}]"


def best_config_dict(
    spec: TuneSpec, trial: Any, cohort_path: str | None, outer_fold: int | None
) -> dict[str, Any]:
    """The full config of ``trial`` for ``multimodal train``: the base config (its own folds,
    bootstrap, progress) with the trial's parameters; with ``outer_fold``, only that fold."""
    raw = spec.config_with(spec.decode(trial.params))
    if cohort_path:
        set_dotted(raw, "data.cohort", cohort_path)
    if outer_fold is not None:
        set_dotted(raw, "data.fold_indices", [outer_fold])
    return load_config(raw).to_dict()


def _busy_seconds(trials: list[Any]) -> float:
    """Wall-clock time during which at least one trial ran (union of trial intervals)."""
    spans = sorted(
        (t.datetime_start.timestamp(), t.datetime_complete.timestamp())
        for t in trials
        if t.datetime_start is not None and t.datetime_complete is not None
    )
    total, end = 0.0, -math.inf
    for a, b in spans:
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _timing(trials: list[Any], counts: Any) -> dict[str, Any]:
    from optuna.trial import TrialState

    def secs(state: Any) -> list[float]:
        return [
            float(t.user_attrs["seconds"])
            for t in trials
            if t.state == state and "seconds" in t.user_attrs
        ]

    def epochs(state: Any) -> list[int]:
        return [
            int(t.user_attrs["epochs"])
            for t in trials
            if t.state == state and "epochs" in t.user_attrs
        ]

    busy = _busy_seconds(trials)
    done, pruned = secs(TrialState.COMPLETE), secs(TrialState.PRUNED)
    out: dict[str, Any] = {
        "busy_seconds": round(busy, 1),
        "trials_per_hour": round(counts.finished / busy * 3600, 1) if busy > 0 else None,
        "mean_seconds_complete": round(float(np.mean(done)), 2) if done else None,
        "mean_seconds_pruned": round(float(np.mean(pruned)), 2) if pruned else None,
        "epochs_trained": int(sum(epochs(TrialState.COMPLETE)) + sum(epochs(TrialState.PRUNED))),
    }
    if done and pruned:
        # what the pruned trials would have cost had they run to the end, like an average
        # complete trial (an estimate: early stopping makes full trials differ in length)
        saved = max(0.0, len(pruned) * float(np.mean(done)) - sum(pruned))
        spent = sum(done) + sum(pruned)
        out["pruning_saved_seconds_estimate"] = round(saved, 1)
        out["pruning_saved_fraction_estimate"] = round(saved / (spent + saved), 3)
    return out


def _importances(study: Any, n_complete: int) -> tuple[dict[str, float] | None, str | None]:
    if n_complete < 2:
        return None, "needs at least 2 complete trials"
    import optuna

    target = None
    if len(study.directions) > 1:  # importances for the first metric, as "lower is better"
        sign = -1.0 if study.directions[0].name == "MAXIMIZE" else 1.0
        target = lambda t: sign * t.values[0]  # noqa: E731
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # the note about low target values
            imp = optuna.importance.get_param_importances(study, target=target)
    except Exception as exc:  # e.g. every complete trial has the same parameters
        return None, f"not computed: {type(exc).__name__}: {exc}"
    return {k: round(float(v), 4) for k, v in imp.items()}, None


def _trial_record(t: Any, metrics: list[str]) -> dict[str, Any]:
    return {
        "number": t.number,
        "values": dict(zip(metrics, t.values)) if t.values else None,
        "params": t.params,
        "metrics": t.user_attrs.get("metrics"),
        "seconds": t.user_attrs.get("seconds"),
        "worker": t.user_attrs.get("worker"),
    }


def _top(study: Any, complete: list[Any], k: int = 10) -> list[Any]:
    sign = 1 if study.directions[0].name == "MAXIMIZE" else -1
    return sorted(complete, key=lambda t: -sign * t.values[0])[:k]


def write_outputs(
    study: Any,
    spec: TuneSpec,
    run_dir: Path,
    *,
    storage: str,
    n_trials: int,
    outer_fold: int | None,
    tuned_on: str,
    cohort_path: str | None,
) -> TuneResult:
    """Write best.yaml, summary.json, trials.csv and history.png; return the :class:`TuneResult`."""
    from optuna.trial import TrialState

    run_dir = Path(run_dir)
    trials = study.get_trials(deepcopy=False)
    counts = count_trials(trials)
    metrics = _metrics(study)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    best = best_trial(study)
    importances, imp_note = _importances(study, len(complete))
    errors = sorted(
        {
            str(t.user_attrs["error"])
            for t in trials
            if t.state == TrialState.FAIL and "error" in t.user_attrs
        }
    )
    summary: dict[str, Any] = {
        "study": study.study_name,
        "storage": storage,
        "tuning_file": spec.source,
        "tuned_on": tuned_on,
        "outer_fold": outer_fold,
        "inner_folds": spec.objective.inner_folds,
        "metrics": metrics,
        "directions": [d.name.lower() for d in study.directions],
        "pruner": spec.pruner.name,
        "n_trials_requested": n_trials,
        "trials": {
            "complete": counts.complete,
            "pruned": counts.pruned,
            "failed": counts.failed,
            "retried": counts.retried,
            "running": counts.running,
            "waiting": counts.waiting,
        },
        "best": _trial_record(best, metrics) if best is not None else None,
        "pareto_front": [_trial_record(t, metrics) for t in study.best_trials]
        if len(study.directions) > 1 and complete
        else None,
        "top_trials": [_trial_record(t, metrics) for t in _top(study, complete)],
        "param_importances": importances,
        "param_importances_note": imp_note,
        "timing": _timing(trials, counts),
        "errors": errors[:20],
        "best_yaml": "best.yaml" if best is not None else None,
    }
    best_cfg = None
    if best is not None:
        cfg_dict = best_config_dict(spec, best, cohort_path, outer_fold)
        best_cfg = load_config(cfg_dict)
        header = (
            f"# Best configuration of study {study.study_name!r}: trial {best.number}, "
            f"{_fmt_values(study, list(best.values))} (mean over {spec.objective.inner_folds} inner "
            f"folds of {tuned_on}).\n"
            f"#   multimodal train --config {run_dir / 'best.yaml'} --out RUN_DIR\n"
        )
        atomic_write_text(run_dir / "best.yaml", header + yaml.safe_dump(cfg_dict, sort_keys=False))
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2, default=str))
    if trials:
        study.trials_dataframe().to_csv(run_dir / "trials.csv", index=False)
        _plot_history(study, trials, metrics, run_dir / "history.png")
    best_value = None
    if best is not None:
        best_value = best.values[0] if len(best.values) == 1 else list(best.values)
    return TuneResult(run_dir, study, counts, best_cfg, best_value, summary)


def _plot_history(study: Any, trials: list[Any], metrics: list[str], path: Path) -> None:
    """Objective per trial (pruned trials at their last reported value) and the running best."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from optuna.trial import TrialState

    fig = Figure(figsize=(7, 3.2 * len(metrics)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(metrics), 1, squeeze=False)[:, 0]
    for j, (ax, name) in enumerate(zip(axes, metrics)):
        maximize = study.directions[j].name == "MAXIMIZE"
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        xs = [t.number for t in done]
        ys = [t.values[j] for t in done]
        ax.scatter(xs, ys, s=18, color="tab:blue", label="complete", zorder=3)
        if xs:
            run = np.maximum.accumulate(ys) if maximize else np.minimum.accumulate(ys)
            ax.step(xs, run, where="post", color="tab:red", label="best so far")
        pruned = [t for t in trials if t.state == TrialState.PRUNED and t.intermediate_values]
        if pruned and j == 0:
            last = [t.intermediate_values[max(t.intermediate_values)] for t in pruned]
            ax.scatter(
                [t.number for t in pruned],
                last,
                marker="x",
                s=18,
                color="0.55",
                label="pruned (last hold-out value)",
            )
        failed = [t.number for t in trials if t.state == TrialState.FAIL]
        for n in failed:
            ax.axvline(n, color="tab:orange", alpha=0.25, lw=1)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    axes[-1].set_xlabel("trial")
    axes[0].set_title(f"study {study.study_name}: {len(trials)} trials")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
