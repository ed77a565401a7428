"""What :func:`multimodal.tuning.tune` returns: :class:`TuneResult` and the trial counts.

Both :mod:`~multimodal.tuning.study` (runs the study, calls the report) and
:mod:`~multimodal.tuning.report` (writes the outputs, builds the result) use these types; they
live here, below both, so that the report does not import the study back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrialCounts", "TuneResult", "count_trials"]


@dataclass
class TrialCounts:
    """Trials of a study by state; ``failed`` excludes trials that were re-run (``retried``)."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    retried: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def used(self) -> int:
        """Trials that count against ``n_trials``: finished, running or queued."""
        return self.finished + self.running + self.waiting


def count_trials(trials: list[Any]) -> TrialCounts:
    """Count ``FrozenTrial`` objects by state, a failed-and-retried trial not counting as failed."""
    from optuna.trial import TrialState

    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    c = TrialCounts(retried=len(retried))
    for t in trials:
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.PRUNED:
            c.pruned += 1
        elif t.state == TrialState.FAIL and t.number not in retried:
            c.failed += 1
        elif t.state == TrialState.RUNNING:
            c.running += 1
        elif t.state == TrialState.WAITING:
            c.waiting += 1
    return c


@dataclass
class TuneResult:
    """What :func:`tune` returns; everything is also written to ``run_dir``."""

    run_dir: Path
    study: Any
    counts: TrialCounts
    best_config: Any = None
    """The best trial's :class:`multimodal.config.Config` (None when no trial completed)."""
    best_value: float | list[float] | None = None
    summary: dict[str, Any] = field(default_factory=dict)
