"""What the run report states, read from the run folder (JSON, CSV, YAML only) and its cohort.

:func:`gather` reads the files once; the computed parts (bootstrap CIs, calibration, risk
groups, subgroups, robustness) are added by :func:`multimodal.reporting.build.build_report`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import MultimodalError
from multimodal.robustness import find_run_cohort, time_unit_of
from multimodal.runfolder import RunFolder

__all__ = ["ENDPOINT_TEXT", "RunFacts", "coverage_table", "gather", "reverse_km_median"]

log = logging.getLogger(__name__)

#: What each endpoint predicts, in words (the primary outcome of ``risk`` and ``surv_<t>``).
ENDPOINT_TEXT: dict[str, str] = {
    "os": "overall survival: time from baseline to death from any cause",
    "pfs": "progression-free survival: time to progression or death, whichever comes first",
    "dss": "disease-specific survival: time to death from the cancer",
    "multitask": "overall and progression-free survival, modelled jointly (primary: overall survival)",
    "competing": "progression with death without progression as a competing event",
    "multistate": "illness-death model: progression, death after progression, death without it",
}


@dataclass
class RunFacts:
    """The run folder's files and the cohort the run was trained on.

    Attributes
    ----------
    run_dir : the run folder.
    config : resolved config (``config.yaml`` without ``_meta``).
    meta : ``_meta`` (provenance).
    metrics : ``metrics.json``.
    predictions : ``predictions.csv`` (``risk`` centred per fold on its mean training risk).
    val : the out-of-fold rows (``split == "val"``): each patient once.
    fold_meta : fold -> ``model.json``.
    cohort, cohort_path : the cohort, or None when it was not found (sections that need it say
        so).
    time_unit : the cohort's time unit (``unit_stated``: the manifest says it).
    notes : problems met while reading (shown in the report).
    """

    run_dir: Path
    config: dict[str, Any]
    meta: dict[str, Any]
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    val: pd.DataFrame
    fold_meta: dict[int, dict[str, Any]]
    cohort: Any = None
    cohort_path: Path | None = None
    time_unit: str = "months"
    unit_stated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def endpoint(self) -> str:
        return str(self.metrics.get("endpoint") or self.config.get("endpoint") or "os")

    @property
    def modalities(self) -> list[str]:
        return list(self.meta.get("modalities") or self.metrics.get("modalities") or [])

    @property
    def folds(self) -> list[dict[str, Any]]:
        return list(self.metrics.get("folds") or [])

    def section(self, key: str) -> dict[str, Any]:
        """A config block (``data``, ``train``, ...) as a dict."""
        return dict(self.config.get(key) or {})

    def modality_kind(self, m: str) -> str:
        for meta in self.fold_meta.values():
            spec = (meta.get("specs") or {}).get(m)
            if spec:
                return str(spec.get("kind", ""))
        source = getattr(self.cohort, "sources", {}).get(m)
        return str(getattr(source, "kind", ""))


def gather(run_dir: str | Path, cohort: Any = None) -> RunFacts:
    """Read the run folder and find its cohort (``cohort``: a ``Cohort``, a path, or None to
    find it as :func:`multimodal.robustness.find_run_cohort` does)."""
    from multimodal.cohort_analysis import as_predictions

    folder = RunFolder(run_dir).require()
    raw = folder.read_config_raw()
    meta = raw.pop("_meta", None) or {}
    predictions = as_predictions(folder.path)
    facts = RunFacts(
        run_dir=folder.path,
        config=raw,
        meta=meta,
        metrics=folder.read_metrics(),
        predictions=predictions,
        val=predictions[predictions["split"] == "val"].reset_index(drop=True),
        fold_meta={k: folder.read_fold_meta(k) for k in folder.finished_folds()},
    )
    facts.cohort, facts.cohort_path = _cohort(facts, cohort)
    if facts.cohort is not None:
        unit = getattr(facts.cohort, "time_unit", None)
        facts.unit_stated = bool(unit) or getattr(facts.cohort, "manifest", None) is None
        facts.time_unit = time_unit_of(facts.cohort)
    return facts


def _cohort(facts: RunFacts, cohort: Any) -> tuple[Any, Path | None]:
    from multimodal.data.cohort import Cohort

    if cohort is not None and not isinstance(cohort, (str, Path)):
        root = getattr(cohort, "root", None)
        return cohort, Path(str(root)) if root else None
    path = find_run_cohort(facts.run_dir, cohort)
    if path is None:
        facts.notes.append(
            "The run's cohort was not found (config data.cohort, _meta.cohort_path, or a cohort/ "
            "folder next to the run): coverage, subgroups and robustness are left out. Pass "
            "--cohort PATH."
        )
        return None, None
    try:
        return Cohort.load_for_run(path, facts.config), path
    except MultimodalError as exc:
        facts.notes.append(f"The cohort {path} could not be loaded ({exc}).")
        return None, path


def reverse_km_median(time: np.ndarray, event: np.ndarray) -> float:
    """Median follow-up by the reverse Kaplan-Meier method (censoring as the event)."""
    from multimodal.survival import kaplan_meier

    t, s = kaplan_meier(np.asarray(time, float), ~np.asarray(event, bool))
    below = np.flatnonzero(s <= 0.5)
    return float(t[below[0]]) if len(below) else float("nan")


def coverage_table(facts: RunFacts) -> pd.DataFrame:
    """Per modality of the run, over the run's patients: ``modality, kind, patients, percent,
    events`` (an empty report counts as missing, as the text pipeline treats it), plus a row
    for the patients with every modality."""
    ids = facts.val["patient_id"].astype(str)
    event = facts.val["event"].to_numpy(bool)
    cohort = facts.cohort
    rows, every = [], np.ones(len(ids), bool)
    for m in facts.modalities:
        source = cohort.sources.get(m) if cohort is not None else None
        if source is None:
            continue
        if source.kind == "text":
            texts = source.texts().fillna("").astype(str).str.strip()
            have = set(texts.index[texts.str.len() > 0].astype(str))
        else:
            have = set(map(str, source.patient_ids))
        present = ids.isin(have).to_numpy()
        every &= present
        rows.append(_coverage_row(m, source.kind, present, event))
    if rows:
        rows.append(_coverage_row("every modality", "", every, event))
    return pd.DataFrame(rows)


def _coverage_row(m: str, kind: str, present: np.ndarray, event: np.ndarray) -> dict[str, Any]:
    n = max(len(present), 1)
    return {
        "modality": m,
        "kind": kind,
        "patients": int(present.sum()),
        "percent": 100.0 * present.sum() / n,
        "events": int((present & event).sum()),
    }
