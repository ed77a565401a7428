"""The main job on built-in data (``multimodal demo``).

1. synthesise a multimodal cohort (imaging, genomics, report text, clinical; 20% missing per modality),
2. validate it,
3. train the fusion model of ``configs/demo.yaml`` (shipped with the package) with cross-validation,
4. train one single-modality model per modality on the same folds,
5. compare every validation C-index with the C-index of the ground-truth risk on the same patients.

Everything lands in ``OUT/``: ``cohort/``, ``fusion/`` (the run folder the dashboard opens),
``only_<modality>/`` and ``summary.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal import console
from multimodal.exceptions import DataError
from multimodal.shipped import shipped_dir

__all__ = ["DemoSummary", "default_demo_config", "run_demo"]

log = logging.getLogger(__name__)


@dataclass
class DemoSummary:
    out: Path
    rows: list[dict[str, Any]] = field(default_factory=list)
    ground_truth_c_index: float = float("nan")
    reachable_c_index: float = float("nan")
    seconds: float = 0.0

    def table(self) -> str:
        lines = [f"{'model':<22} {'modalities':<34} {'C-index (mean ± sd over folds)':>30}"]
        for r in self.rows:
            # one fold (data.fold_indices): its SD is undefined, the mean stands alone
            spread = f"± {r['c_index_std']:.4f}" if len(r["folds"]) > 1 else "(1 fold)"
            lines.append(
                f"{r['model']:<22} {','.join(r['modalities']):<34} {r['c_index']:>22.4f} {spread}"
            )
        lines.append(
            f"{'ground truth risk':<22} {'(true log-hazard)':<34} {self.ground_truth_c_index:>22.4f}"
        )
        lines.append(
            f"{'reachable truth':<22} {'(given the modalities present)':<34} "
            f"{self.reachable_c_index:>22.4f}"
        )
        return "\n".join(lines)

    def headline(self) -> dict[str, Any]:
        """The key numbers; the comparison with single-modality models only when they ran."""
        fusion = next(r for r in self.rows if r["model"] == "fusion")
        singles = [r for r in self.rows if r["model"] != "fusion"]
        head: dict[str, Any] = {"fusion_c_index": round(fusion["c_index"], 4)}
        if singles:
            best_single = max(singles, key=lambda r: r["c_index"])
            head["best_single_modality"] = best_single["model"]
            head["best_single_c_index"] = round(best_single["c_index"], 4)
            head["fusion_beats_every_single_modality"] = all(
                fusion["c_index"] > r["c_index"] for r in singles
            )
        else:  # nothing was compared: claim nothing about single modalities
            head["single_modality_models"] = "not trained"
        return {
            **head,
            "ground_truth_c_index": round(self.ground_truth_c_index, 4),
            "gap_to_ground_truth": round(self.ground_truth_c_index - fusion["c_index"], 4),
            "reachable_c_index": round(self.reachable_c_index, 4),
            "seconds": round(self.seconds, 1),
            "run_folder": str(self.out / "fusion"),
        }


def _ground_truth_c(
    cohort_dir: Path, predictions: pd.DataFrame, cohort: Any
) -> tuple[float, float]:
    """Mean over validation folds of the C-index of (1) the true log-hazard and (2) its expected
    value given the modalities each patient actually has (the most any model could reach;
    :func:`multimodal.data.synth.reachable_risk`)."""
    from multimodal.data.synth import components_present, reachable_risk
    from multimodal.survival.metrics import harrell_c

    gt = pd.read_csv(cohort_dir / "ground_truth.csv", dtype={"patient_id": str})
    gt = gt.set_index("patient_id")
    avail = cohort.availability().reindex(gt.index).fillna(False)
    reachable = reachable_risk(gt, components_present(avail))
    full, part_c = [], []
    for _, part in predictions[predictions.split == "val"].groupby("fold"):
        g = gt.loc[part.patient_id]
        t, e = g.time.to_numpy(), g.event.to_numpy().astype(bool)
        full.append(harrell_c(t, e, g.true_risk.to_numpy()))
        part_c.append(harrell_c(t, e, reachable.loc[part.patient_id].to_numpy()))
    return float(np.mean(full)), float(np.mean(part_c))


def default_demo_config() -> Path:
    """``configs/demo.yaml`` as shipped with the package (found from any current directory)."""
    return shipped_dir("configs") / "demo.yaml"


def run_demo(
    out: Path,
    n_patients: int = 500,
    config: Path | str | None = None,
    compare: bool = True,
    overrides: list[str] | None = None,
    image_size: int = 64,
    seed: int = 0,
) -> DemoSummary:
    """Run the demo end to end; returns the comparison (also written to ``OUT/summary.json``).

    ``config`` defaults to :func:`default_demo_config`. It is loaded and its encoder, fusion and
    head names checked (with ``overrides``) before anything is synthesised or written. The demo is
    one run for :func:`multimodal.console.warn_once`: each warning is logged once, not once per
    model trained.
    """
    with console.run_scope():
        return _run_demo(out, n_patients, config, compare, overrides, image_size, seed)


def _run_demo(out, n_patients, config, compare, overrides, image_size, seed) -> DemoSummary:
    from multimodal.config import load_config
    from multimodal.data.cohort import Cohort
    from multimodal.data.synth import generate_cohort
    from multimodal.data.validate import validate
    from multimodal.training.config_checks import check_registry_names
    from multimodal.training.trainer import train

    t0 = time.perf_counter()
    config = default_demo_config() if config is None else config
    overrides = list(overrides or [])
    check_registry_names(load_config(config, overrides))
    out = Path(out)
    cohort_dir = out / "cohort"
    manifest = cohort_dir / "cohort.yaml"
    if not manifest.is_file():
        log.info("[1/4] synthesising %d patients into %s", n_patients, cohort_dir)
        generate_cohort(
            cohort_dir, n_patients=n_patients, seed=seed, missing_rate=0.2, image_size=image_size
        )
    log.info("[2/4] validating %s", manifest)
    report = validate(manifest)
    if not report.ok:
        raise DataError("the synthetic cohort failed validation:\n" + "\n".join(report.errors))
    cohort = Cohort.load(manifest)
    log.info("%s", cohort.coverage().to_string())
    log.info("[3/4] training the fusion model")
    summary = DemoSummary(out)
    fusion = train(config, cohort=cohort, out=out / "fusion", overrides=overrides)
    summary.rows.append(_row("fusion", fusion))
    if compare:
        log.info("[4/4] training single-modality models on the same folds")
        for m in cohort.modalities:
            res = train(
                config,
                cohort=cohort,
                out=out / f"only_{m}",
                overrides=[*overrides, f"data.modalities=[{m}]"],
            )
            summary.rows.append(_row(f"only_{m}", res))
    summary.ground_truth_c_index, summary.reachable_c_index = _ground_truth_c(
        cohort_dir, fusion.predictions, cohort
    )
    summary.seconds = time.perf_counter() - t0
    (out / "summary.json").write_text(
        json.dumps({"rows": summary.rows, **summary.headline()}, indent=2)
    )
    return summary


def _row(name: str, result: Any) -> dict[str, Any]:
    m = result.metrics
    return {
        "model": name,
        "modalities": m["modalities"],
        "c_index": m["c_index"] if m.get("c_index") is not None else float("nan"),
        "c_index_std": m.get("c_index_std") or 0.0,
        "uno_c": m.get("uno_c"),
        "ibs": m.get("ibs"),
        "folds": [f["c_index"] for f in m["folds"]],
    }
