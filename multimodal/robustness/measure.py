"""``robustness(run)``: the perturbed predictions compared with the unperturbed ones."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.exceptions import DataError, RunFolderError
from multimodal.models.inference import head_outputs
from multimodal.robustness.horizons import (
    find_run_cohort,
    horizon_label,
    round_horizon,
    time_unit_of,
)
from multimodal.robustness.perturbations import (
    APPLY,
    FoldCase,
    Perturbation,
    default_perturbations,
)
from multimodal.runfolder import RunFolder
from multimodal.survival.endpoints import get_endpoint
from multimodal.survival.metrics import harrell_c
from multimodal.training.preprocess import FoldData

__all__ = ["RobustnessResult", "out_of_fold_predictions", "plot_robustness", "robustness"]

log = logging.getLogger(__name__)

_RISK_GROUPS = ("low", "intermediate", "high")


@dataclass
class RobustnessResult:
    """What :func:`robustness` measured.

    Attributes
    ----------
    table : one row per perturbation: ``modality, perturbation, kind, size, description,
        n_changed`` (patients whose input changed), ``spearman``, ``mean_abs_change``,
        ``max_abs_change`` (event probability, percentage points, over the changed patients),
        ``n_flipped`` (changed risk group), ``c_index`` (Harrell, mean over folds, every
        validation patient) and ``c_index_change`` (vs the unperturbed C-index); ``drop`` rows
        hide the modality for everyone.
    flipped : patients whose risk group changes under the smallest size of each perturbation
        kind: ``patient_id, fold, modality, perturbation, group_before, group_after,
        prob_before, prob_after``.
    baseline : the unperturbed out-of-fold predictions: ``patient_id, fold, time, event, risk,
        prob, group``.
    horizon, time_unit : the horizon of ``prob`` (event probability by then).
    c_index : unperturbed Harrell's C, mean over folds.
    cut_points : the two tertile cut points of ``prob``.
    seed : seed of the random draws.
    notes : perturbations that could not be applied, and why.
    """

    table: pd.DataFrame
    flipped: pd.DataFrame
    baseline: pd.DataFrame
    horizon: float
    time_unit: str
    c_index: float
    cut_points: tuple[float, float]
    seed: int
    notes: list[str] = field(default_factory=list)

    @property
    def horizon_label(self) -> str:
        return horizon_label(self.horizon, self.time_unit)


def _cohort_for(trained: Any, cohort: Any) -> Any:
    from multimodal.data.cohort import Cohort

    if cohort is not None and not isinstance(cohort, (str, Path)):
        return cohort
    path = find_run_cohort(trained.run_dir, cohort)
    if path is None:
        raise DataError(
            f"the cohort of run {trained.run_dir} was not found (config data.cohort, "
            "_meta.cohort_path, or a cohort/ folder next to the run); pass cohort=PATH"
        )
    return Cohort.load_for_run(path, trained.config)


def _predict(
    trained: Any, fold: FoldCase, data: FoldData, times: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """(risk (n,) centred on the fold's mean training risk, S(times) (n, T)) of ``fold``'s model."""
    fm = fold.fm
    out = head_outputs(fm.model, data, trained.device, "32")
    horizons = list(trained.config.eval.horizons)
    risks, curves = get_endpoint(trained.endpoint).predictions(
        fm.model.head, out, [float(t) for t in times], horizons
    )
    risk = np.asarray(risks["risk"], float) - fm.risk_center
    return risk, np.asarray(curves["surv"], float).reshape(len(risk), -1)


def _groups(prob: np.ndarray, cuts: tuple[float, float]) -> np.ndarray:
    return np.searchsorted(np.asarray(cuts), prob, side="right")


def _mean_c(frame: pd.DataFrame, score: str) -> float:
    values = []
    for _, part in frame.groupby("fold", sort=True):
        try:
            values.append(harrell_c(part["time"], part["event"], part[score]))
        except (DataError, ValueError):  # a fold without comparable pairs
            continue
    return float(np.mean(values)) if values else float("nan")


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def _validation_folds(trained: Any, cohort: Any) -> list[FoldCase]:
    """Each fold model with its validation patients (``predictions.csv``) that the cohort has."""
    preds = RunFolder(trained.run_dir).read_predictions()
    val = preds[preds["split"] == "val"]
    if trained.config.data.landmark is not None and "landmark" not in cohort.patients:
        # a landmark run's rows are (patient, landmark): the cohort as training stacked it
        from multimodal.training.trainer import landmarked_for_training, trainable_cohort

        cohort = landmarked_for_training(trained.config, trainable_cohort(cohort, trained.endpoint))
    known = set(map(str, cohort.patients.index))
    folds = []
    for fm in trained.folds:
        ids = [i for i in val.loc[val["fold"] == fm.index, "patient_id"].astype(str) if i in known]
        if not ids:
            raise RunFolderError(
                f"{trained.run_dir}: fold {fm.index} has no validation patient in predictions.csv "
                "that the cohort holds; pass the cohort the run was trained on"
            )
        folds.append(FoldCase(fm, cohort, trained.fold_data(fm, cohort, ids)))
    return folds


def _frame(trained: Any, folds: list[FoldCase], times: Sequence[float]) -> pd.DataFrame:
    parts = []
    for f in folds:
        risk, surv = _predict(trained, f, f.data, times)
        part = pd.DataFrame(
            {
                "patient_id": f.data.ids,
                "fold": f.fm.index,
                "split": "val",
                "time": f.data.time,
                "event": f.data.event,
                "risk": risk,
            }
        )
        for j, t in enumerate(times):
            part[f"surv_{float(t):g}"] = surv[:, j]
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def out_of_fold_predictions(
    source: Any, cohort: Any = None, times: Sequence[float] = (), device: str = "cpu"
) -> pd.DataFrame:
    """Every validation patient of the run predicted by its own fold model, at any ``times``
    (``predictions.csv`` holds S(t) only at the run's evaluation times).

    Parameters
    ----------
    source : a run folder or a :class:`~multimodal.models.run.TrainedModel`.
    cohort : the run's cohort (``Cohort`` or path); default: found from the run folder.
    times : times of ``surv_<t>``, in the cohort's time unit.
    device : where a run folder's models are loaded.

    Returns
    -------
    DataFrame ``patient_id, fold, split ("val"), time, event, risk`` (centred on the fold's mean
    training risk, as the ensemble centres it) and ``surv_<t>`` per time.
    """
    trained = _trained(source, device)
    cohort = _cohort_for(trained, cohort)
    return _frame(trained, _validation_folds(trained, cohort), list(times))


def _trained(source: Any, device: str) -> Any:
    from multimodal.models.run import load_run

    return source if hasattr(source, "folds") else load_run(source, device=device)


def _measure(
    trained: Any,
    folds: list[FoldCase],
    base: pd.DataFrame,
    p: Perturbation,
    index: int,
    seed: int,
    horizon: float,
) -> pd.DataFrame:
    """The perturbed predictions of every validation patient: ``base`` plus ``prob_new``,
    ``risk_new`` and ``changed`` (the patient's input changed)."""
    parts = []
    for j, f in enumerate(folds):
        rng = np.random.default_rng([seed, index, j])
        store, changed = APPLY[p.kind](f, p, rng)
        risk, surv = _predict(trained, f, f.with_store(p.modality, store), [horizon])
        parts.append(
            pd.DataFrame({"risk_new": risk, "prob_new": 1.0 - surv[:, 0], "changed": changed})
        )
    return pd.concat([base, pd.concat(parts, ignore_index=True)], axis=1)


def _row(p: Perturbation, kind: str, frame: pd.DataFrame, base_c: float) -> dict[str, Any]:
    ch = frame[frame["changed"]]
    delta = (ch["prob_new"] - ch["prob"]).abs().to_numpy() * 100
    c = _mean_c(frame, "risk_new")
    return {
        "modality": p.modality,
        "perturbation": p.label,
        "kind": p.kind,
        "size": p.size,
        "description": p.describe(kind),
        "n_changed": len(ch),
        "spearman": _spearman(ch["prob"].to_numpy(), ch["prob_new"].to_numpy()),
        "mean_abs_change": float(delta.mean()) if len(delta) else float("nan"),
        "max_abs_change": float(delta.max()) if len(delta) else float("nan"),
        "n_flipped": int((ch["group"] != ch["group_new"]).sum()),
        "c_index": c,
        "c_index_change": c - base_c,
    }


def robustness(
    source: Any,
    cohort: Any = None,
    horizon: float | None = None,
    sizes: dict[str, Sequence[float]] | None = None,
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> RobustnessResult:
    """Rank correlation and mean absolute change of the predicted event probability under small
    perturbations of each modality, and the C-index with each modality hidden for everyone.

    Parameters
    ----------
    source : a run folder or a :class:`~multimodal.models.run.TrainedModel` (``load_run``).
    cohort : the cohort the run was trained on (a ``Cohort`` or its path); default: found from the
        run folder (:func:`find_run_cohort`).
    horizon : time of the event probability, in the cohort's time unit; default
        :func:`round_horizon` (3 years, or the nearest round horizon still followed).
    sizes : perturbation kind -> sizes, overriding :data:`DEFAULT_SIZES`.
    modalities : the modalities to perturb (default: every modality of the run).
    seed : seed of the random draws (noise, which sentences).
    device : where a run folder's models are loaded.

    Returns
    -------
    :class:`RobustnessResult` (``.table``, ``.flipped``; the module docstring says what is
    measured). Only the run's validation patients are used: each is predicted by the fold model
    that did not train on it.
    """
    trained = _trained(source, device)
    cohort = _cohort_for(trained, cohort)
    folds = _validation_folds(trained, cohort)
    unit = time_unit_of(cohort)
    if horizon is None:
        horizon = round_horizon(np.concatenate([f.data.time for f in folds]), unit)
    base = _frame(trained, folds, [float(horizon)])
    base["prob"] = 1.0 - base.pop(f"surv_{float(horizon):g}")
    base = base.drop(columns="split")
    cuts = tuple(float(c) for c in np.quantile(base["prob"], [1 / 3, 2 / 3]))
    base["group"] = _groups(base["prob"].to_numpy(), cuts)
    base_c = _mean_c(base, "risk")
    mods = list(modalities or trained.modalities)
    kinds = {m: trained.folds[0].model.specs[m].kind for m in mods}
    plan = default_perturbations(kinds, sizes) + [Perturbation(m, "drop") for m in mods]
    rows, flips, notes = [], [], []
    smallest: set[tuple[str, str]] = set()
    for i, p in enumerate(plan):
        try:
            frame = _measure(trained, folds, base, p, i, seed, float(horizon))
        except DataError as exc:
            notes.append(f"{p.label}: not measured ({exc})")
            continue
        frame["group_new"] = _groups(frame["prob_new"].to_numpy(), cuts)
        rows.append(_row(p, kinds[p.modality], frame, base_c))
        if p.kind != "drop" and (p.modality, p.kind) not in smallest:
            smallest.add((p.modality, p.kind))
            moved = frame[frame["changed"] & (frame["group"] != frame["group_new"])]
            flips.append(_flip_rows(moved, p))
        log.debug("robustness: %s done", p.label)
    columns = ["patient_id", "fold", "modality", "perturbation", "group_before", "group_after"]
    flipped = (
        pd.concat(flips, ignore_index=True)
        if flips
        else pd.DataFrame(columns=[*columns, "prob_before", "prob_after"])
    )
    base["group"] = [_RISK_GROUPS[g] for g in base["group"]]
    return RobustnessResult(
        table=pd.DataFrame(rows),
        flipped=flipped,
        baseline=base,
        horizon=float(horizon),
        time_unit=unit,
        c_index=base_c,
        cut_points=cuts,  # type: ignore[arg-type]
        seed=seed,
        notes=notes,
    )


def _flip_rows(moved: pd.DataFrame, p: Perturbation) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": moved["patient_id"].to_numpy(),
            "fold": moved["fold"].to_numpy(),
            "modality": p.modality,
            "perturbation": p.label,
            "group_before": [_RISK_GROUPS[g] for g in moved["group"]],
            "group_after": [_RISK_GROUPS[g] for g in moved["group_new"]],
            "prob_before": moved["prob"].to_numpy(),
            "prob_after": moved["prob_new"].to_numpy(),
        }
    )


# ------------------------------------------------------------------------------ figure
def plot_robustness(result: RobustnessResult) -> Any:
    """Two panels: the mean absolute change of the event probability per perturbation, and the
    C-index with each modality hidden for everyone (dashed line: nothing hidden). Returns a
    matplotlib Figure (no pyplot state; ``fig.savefig(path)`` writes it)."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    table = result.table
    small = table[table["kind"] != "drop"].iloc[::-1]
    drop = table[table["kind"] == "drop"]
    height = max(3.2, 0.3 * len(small) + 1.4)
    fig = Figure(figsize=(11, height), layout="constrained")
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[3, 2])
    mods = list(dict.fromkeys(table["modality"]))
    colours = {m: colormaps["tab10"](i % 10) for i, m in enumerate(mods)}
    ax1.barh(
        small["perturbation"],
        small["mean_abs_change"],
        color=[colours[m] for m in small["modality"]],
    )
    for y, (v, n) in enumerate(zip(small["mean_abs_change"], small["n_flipped"])):
        ax1.annotate(f" {v:.2g} ({n} flip{'s' if n != 1 else ''})", (v, y), va="center", fontsize=7)
    ax1.set_xlabel(f"mean |change| of the event probability by {result.horizon_label} (points)")
    ax1.set_title("Small perturbations (flips: risk-group changes)")
    ax1.margins(x=0.25)
    ax1.grid(axis="x", alpha=0.3)
    ax2.bar(drop["modality"], drop["c_index"], color=[colours[m] for m in drop["modality"]])
    ax2.axhline(
        result.c_index, color="black", lw=1, ls="--", label=f"all inputs ({result.c_index:.3f})"
    )
    low = float(np.nanmin([*drop["c_index"], result.c_index])) if len(drop) else 0.5
    ax2.set_ylim(max(0.0, min(0.5, low - 0.05)), 1.0)
    ax2.set_ylabel("C-index (Harrell, mean over folds)")
    ax2.set_title("Each modality hidden for everyone")
    ax2.legend(loc="upper right", fontsize=8)
    ax2.grid(axis="y", alpha=0.3)
    return fig
