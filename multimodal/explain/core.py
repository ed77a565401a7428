"""``explain(model, cohort)``: every explanation of a trained run, for the patients of a cohort."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from multimodal.exceptions import DataError
from multimodal.explain._forward import fold_inputs
from multimodal.explain.explanation import Explanation
from multimodal.registry import did_you_mean

__all__ = ["METHODS", "explain"]

log = logging.getLogger(__name__)

Method = Literal["modalities", "features", "text", "saliency", "bags"]
#: Explanation methods, in the order they run.
METHODS: tuple[str, ...] = ("modalities", "features", "text", "saliency", "bags")


def _patient_ids(cohort: Any, patient_ids: Iterable[str] | None) -> list[str]:
    all_ids = [str(i) for i in cohort.patients.index]
    if patient_ids is None:
        return all_ids
    wanted = [str(i) for i in patient_ids]
    known = set(all_ids)
    unknown = [i for i in wanted if i not in known]
    if unknown:
        raise DataError(
            f"explain: patient(s) {unknown[:5]} are not in cohort {getattr(cohort, 'name', '')!r}."
            f"{did_you_mean(unknown[0], all_ids)} The cohort has {len(all_ids)} patients."
        )
    return list(dict.fromkeys(wanted))


def _methods(methods: Sequence[str] | None) -> list[str]:
    if methods is None:
        return list(METHODS)
    for name in methods:
        if name not in METHODS:
            raise ValueError(
                f"unknown explanation method {name!r}.{did_you_mean(name, METHODS)} "
                f"Choose from {', '.join(METHODS)}"
            )
    return [m for m in METHODS if m in methods]


def explain(
    model: Any,
    cohort: Any,
    patient_ids: Iterable[str] | None = None,
    horizons: Sequence[float] | None = None,
    methods: Sequence[Method] | None = None,
    n_steps: int = 32,
    saliency_limit: int | None = 20,
    occlusion_mask_size: int | None = None,
    occlusion_overlap: float = 0.5,
    max_shapley_modalities: int | None = None,
) -> Explanation:
    """Explain a trained model's predictions for patients of a cohort.

    Every method runs on each fold model of the cross-validation ensemble and the results are
    averaged over the fold models (the ensemble's predictions are averages too).

    Parameters
    ----------
    model : :class:`~multimodal.models.run.TrainedModel` (``multimodal.load_run(RUN_DIR)``).
    cohort : the patients' :class:`~multimodal.Cohort` (the training cohort or a new one).
    patient_ids : patients to explain (default: all).
    horizons : times for the survival-level modality contributions (default: the config's
        ``eval.horizons``).
    methods : subset of :data:`METHODS` (default: all):

        - ``modalities``: leave-one-modality-out and exact Shapley values over modalities, each
          modality's deep-fusion share and linear-member term together
          (:mod:`multimodal.explain.modality`);
        - ``features``: integrated gradients of genomic features and numeric clinical covariates,
          expected occlusion of categorical ones (:mod:`multimodal.explain.features`);
        - ``text``: each report sentence against a neutral sentence (the training mean
          embedding), shrunk by the fold models' disagreement, with character spans
          (:mod:`multimodal.explain.text`);
        - ``saliency``: occlusion saliency maps of images (:mod:`multimodal.explain.imaging`);
        - ``bags``: attention weights of feature-bag instances.
    n_steps : integration steps of integrated gradients.
    saliency_limit : occlusion saliency for at most this many patients per imaging modality
        (the first ones with an image); None = all. Occlusion costs hundreds of forward passes
        per image and fold model.
    occlusion_mask_size : side of the occluding box (default: a quarter of the image side).
    occlusion_overlap : overlap of neighbouring occluding boxes in [0, 1); 0 = a grid of
        disjoint boxes (with the default box, 4 per axis: 64 passes for a volume instead of 343).
    max_shapley_modalities : exact Shapley values when the model has at most this many
        modalities, else leave-one-out only (``shapley`` NaN); None = always exact.

    The defaults are the full explanation (``multimodal explain``); the dashboard's quick
    evidence passes a cheap budget (few integration steps, disjoint occlusion boxes).

    Returns
    -------
    Explanation (``.save(folder)`` writes the files the dashboard reads).
    """
    from multimodal.explain.features import feature_attributions
    from multimodal.explain.imaging import bag_attention, image_saliency
    from multimodal.explain.modality import modality_contributions
    from multimodal.explain.text import sentence_attributions

    ids = _patient_ids(cohort, patient_ids)
    chosen = _methods(methods)
    _check_budget(n_steps, occlusion_overlap, max_shapley_modalities)
    if horizons is None:
        config = getattr(model, "config", None)
        horizons = list(config.eval.horizons or []) if config is not None else []
    horizons = [float(h) for h in horizons]
    folds = fold_inputs(model, cohort, ids)
    timings: dict[str, float] = {}
    tables: dict[str, Any] = {}
    maps: dict = {}

    def timed(name: str, fn, *args, **kwargs):
        start = time.perf_counter()
        out = fn(*args, **kwargs)
        timings[name] = round(time.perf_counter() - start, 3)
        log.info("explain: %s for %d patients in %.1f s", name, len(ids), timings[name])
        return out

    if "modalities" in chosen:
        tables["modality_contributions"] = timed(
            "modalities", modality_contributions, folds, horizons, max_shapley_modalities
        )
    if "features" in chosen:
        tables["features"] = timed("features", feature_attributions, folds, cohort, n_steps)
    if "text" in chosen:
        tables["text_spans"] = timed("text", sentence_attributions, folds, cohort)
    if "saliency" in chosen:
        tables["saliency_index"], maps = timed(
            "saliency",
            image_saliency,
            folds,
            cohort,
            saliency_limit,
            occlusion_mask_size,
            occlusion_overlap,
        )
    if "bags" in chosen:
        tables["bags"] = timed("bags", bag_attention, folds)
    meta = {
        "run_dir": str(getattr(model, "run_dir", "")),
        "cohort": getattr(cohort, "name", ""),
        "n_patients": len(ids),
        "patient_ids": ids,
        "methods": chosen,
        "horizons": horizons,
        "n_fold_models": len(folds),
        "averaged_over": "fold models of the cross-validation ensemble",
        "modalities": list(folds[0].model.modalities),
        "integrated_gradients_steps": n_steps,
        "saliency_limit": saliency_limit,
        "occlusion_mask_size": occlusion_mask_size,
        "occlusion_overlap": occlusion_overlap,
        "max_shapley_modalities": max_shapley_modalities,
        "seconds": timings,
    }
    return Explanation(
        modality_contributions=tables.get("modality_contributions", _empty("modality")),
        features=tables.get("features", _empty("features")),
        text_spans=tables.get("text_spans", _empty("text")),
        saliency_index=tables.get("saliency_index", _empty("saliency")),
        bags=tables.get("bags", _empty("bags")),
        saliency=maps,
        meta=meta,
    )


def _check_budget(
    n_steps: int, occlusion_overlap: float, max_shapley_modalities: int | None
) -> None:
    if int(n_steps) < 1:
        raise ValueError(f"explain: n_steps is {n_steps}; integrated gradients need n_steps >= 1")
    if not 0 <= float(occlusion_overlap) < 1:
        raise ValueError(
            f"explain: occlusion_overlap is {occlusion_overlap}; choose a value in [0, 1) "
            "(0 = disjoint occluding boxes)"
        )
    if max_shapley_modalities is not None and int(max_shapley_modalities) < 0:
        raise ValueError(
            f"explain: max_shapley_modalities is {max_shapley_modalities}; give a number >= 0 "
            "(0 = leave-one-out only) or None (always exact Shapley values)"
        )


def _empty(kind: str):
    import pandas as pd

    columns = {
        "modality": ["patient_id", "modality", "present", "loo_delta", "shapley"],
        "features": ["patient_id", "modality", "feature", "group", "value", "attribution"],
        "text": ["patient_id", "modality", "sentence_index", "start", "end", "attribution"],
        "saliency": ["patient_id", "modality", "image_path", "shape"],
        "bags": ["patient_id", "modality", "instance", "attention"],
    }[kind]
    return pd.DataFrame(columns=columns)
