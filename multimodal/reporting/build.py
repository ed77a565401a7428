"""``build_report(RUN_DIR)``: the run report (model card) as one self-contained HTML page.

The page follows the TRIPOD+AI items listed in :data:`multimodal.reporting.tripod.TRIPOD_ITEMS`.
It is written to ``RUN_DIR/report.html`` by default (the dashboard links to it there). Reading
the run folder never runs code: config YAML (safe loader), JSON, CSV; with the cohort, the fold
models are rebuilt through :func:`multimodal.models.run.load_run` (safetensors weights) to predict
their validation patients at the report's horizons and under the robustness perturbations.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from multimodal._version import __version__
from multimodal.exceptions import MultimodalError
from multimodal.reporting.facts import RunFacts, coverage_table, gather
from multimodal.reporting.methods import (
    data_section,
    inputs_section,
    model_section,
    summary_section,
    validation_section,
)
from multimodal.reporting.page import Section, page
from multimodal.reporting.performance import (
    calibration_table,
    discrimination_table,
    fold_summary,
    main_horizon,
    report_horizons,
)
from multimodal.reporting.results import (
    Results,
    calibration_section,
    discrimination_section,
    limits_section,
    provenance_section,
    risk_groups_section,
    robustness_section,
    subgroups_section,
)
from multimodal.runfolder import atomic_write_text

__all__ = ["REPORT_FILE", "build_report", "compute_results", "report_sections"]

log = logging.getLogger(__name__)

#: File name of the report inside a run folder.
REPORT_FILE = "report.html"


def _attempt(results: Results, key: str, fn: Callable[[], Any]) -> Any:
    """``fn()``, or None with the reason kept in ``results.errors[key]`` (one failing part must
    not cost the whole report)."""
    try:
        return fn()
    except (MultimodalError, ValueError, KeyError, RuntimeError) as exc:
        log.warning("report: %s not computed: %s", key, exc)
        results.errors[key] = f"{type(exc).__name__}: {exc}"
        return None


def compute_results(
    facts: RunFacts, n_boot: int = 200, seed: int = 0, with_robustness: bool = True
) -> Results:
    """Everything the result sections show, each part computed on its own.

    With the cohort, the fold models predict their validation patients again at the report's
    round horizons (``predictions.csv`` has S(t) only at the run's evaluation times); without
    it, S(t) is interpolated from ``predictions.csv`` and no horizon after its last time is used.
    """
    val = facts.val
    times = val["time"].to_numpy(float)
    results = Results(horizons=[], n_boot=n_boot, seed=seed)
    trained = None
    if facts.cohort is not None:
        from multimodal.models.run import load_run

        trained = _attempt(results, "model", lambda: load_run(facts.run_dir))
    eval_times = [float(t) for t in facts.metrics.get("eval_times") or []]
    last = None if trained is not None else (max(eval_times) if eval_times else None)
    horizons = results.horizons = report_horizons(times, facts.time_unit, last=last)
    scored = val
    if trained is not None:
        from multimodal.robustness import out_of_fold_predictions

        exact = _attempt(
            results,
            "model",
            lambda: out_of_fold_predictions(trained, facts.cohort, horizons),
        )
        scored = exact if exact is not None else val
    results.exact_horizons = scored is not val
    results.discrimination = _attempt(
        results,
        "discrimination",
        lambda: discrimination_table(val, horizons, facts.time_unit, eval_times, n_boot, seed),
    )
    results.folds = fold_summary(facts.metrics)
    results.calibrations = (
        _attempt(
            results, "calibration", lambda: calibration_table(scored, horizons, facts.time_unit)
        )
        or []
    )
    _groups_and_subgroups(facts, results, scored)
    if facts.cohort is None or trained is None:
        reason = results.errors.get("model", "the cohort was not found")
        results.errors.setdefault("robustness", f"the fold models could not predict ({reason})")
    elif with_robustness:
        from multimodal.robustness import robustness

        results.robustness = _attempt(
            results, "robustness", lambda: robustness(trained, facts.cohort, seed=seed)
        )
    else:
        results.errors["robustness"] = "skipped (--no-robustness)"
    return results


def _groups_and_subgroups(facts: RunFacts, results: Results, scored: Any) -> None:
    """Kaplan-Meier by risk group (cut-points from the training patients of each fold) and the
    subgroup audit at the main horizon."""
    from multimodal.cohort_analysis import km_by_group, km_curves, risk_groups, subgroup_report

    middle = main_horizon(results.horizons, facts.time_unit)
    results.groups = _attempt(results, "risk_groups", lambda: risk_groups(facts.run_dir))
    if results.groups is not None:
        results.km_summary = _attempt(
            results, "risk_groups", lambda: km_by_group(results.groups, horizon=middle)
        )
        results.km_curves = _attempt(results, "risk_groups", lambda: km_curves(results.groups))
    if facts.cohort is None:
        results.errors["subgroups"] = "the cohort was not found"
        return
    results.subgroups = _attempt(
        results,
        "subgroups",
        lambda: subgroup_report(
            scored, facts.cohort, horizon=middle, n_boot=results.n_boot, seed=results.seed
        ),
    )


def report_sections(facts: RunFacts, results: Results) -> list[Section]:
    """The report's sections, in order."""
    created = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    coverage = coverage_table(facts) if facts.cohort is not None else _empty()
    return [
        summary_section(facts, results),
        data_section(facts, results.horizons),
        inputs_section(facts),
        model_section(facts),
        validation_section(facts),
        discrimination_section(facts, results),
        calibration_section(facts, results),
        risk_groups_section(facts, results),
        subgroups_section(facts, results),
        robustness_section(facts, results),
        limits_section(facts, results, coverage),
        provenance_section(facts, __version__, created),
    ]


def _empty():
    import pandas as pd

    return pd.DataFrame(columns=["modality", "percent"])


def _readable(path: Path) -> None:
    """Give the page the permissions of a newly created file (the atomic write made it
    owner-only): it is meant to be opened and shared."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    path.chmod(0o666 & ~umask)


def build_report(
    run_dir: str | Path,
    out: str | Path | None = None,
    cohort: Any = None,
    robustness: bool = True,
    n_boot: int = 200,
    seed: int = 0,
) -> Path:
    """Write the run report of ``run_dir`` as one self-contained HTML page.

    Parameters
    ----------
    run_dir : a run folder written by ``multimodal train``.
    out : the HTML file (default ``RUN_DIR/report.html``).
    cohort : the run's cohort (``Cohort`` or path); default: found from the run folder
        (``data.cohort``, ``_meta.cohort_path``, ``cohort/`` next to the run). Without it the
        coverage, subgroup and robustness sections say so.
    robustness : run the robustness check (:func:`multimodal.robustness.robustness`; the
        slowest part).
    n_boot : bootstrap resamples of the confidence intervals.
    seed : seed of the bootstrap and of the robustness perturbations.

    Returns
    -------
    The path written. The page needs no network: CSS inline, figures as base64 PNG.
    """
    facts = gather(run_dir, cohort)
    results = compute_results(facts, n_boot=n_boot, seed=seed, with_robustness=robustness)
    sections = report_sections(facts, results)
    target = Path(out) if out is not None else facts.run_dir / REPORT_FILE
    html_text = page(sections[0].title, sections)
    atomic_write_text(target, html_text)
    _readable(target)
    log.debug("report written to %s", target)
    return target
