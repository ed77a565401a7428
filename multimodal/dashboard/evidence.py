"""The evidence behind one patient's prediction: modality contributions, report sentences,
genomic features and pathways, image saliency.

Every number comes from :mod:`multimodal.explain` (one implementation of Shapley values, sentence
spans and saliency); the page says which of two budgets it shows:

1. The explain step: ``RUN_DIR/explanations/`` when it was saved there, else ``model.explain``
   run for the selected patient, in memory. Files read:
   ``modality_contributions.csv`` (patient_id, modality, loo_delta, shapley),
   ``features.csv`` (patient_id, modality, feature, group, attribution),
   ``text_spans.csv`` (patient_id, sentence_index, start, end, attribution, and ``terms``
   when the run's report features are lexical),
   ``saliency/<patient_id>__<modality>.npy``.
2. Otherwise the same explanation for the selected patient only with a cheap budget
   (:func:`compute_evidence`, :data:`QUICK_BUDGET`): exact Shapley values of the modalities
   (leave-one-out beyond ``max_shapley_modalities``), integrated gradients with few steps,
   report sentences against a neutral sentence, occlusion saliency with disjoint boxes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from multimodal.dashboard.vocabulary import points_from_risk
from multimodal.runfolder import RunFolder

__all__ = [
    "QUICK_BUDGET",
    "SHADE_MIN_POINTS",
    "Evidence",
    "compute_evidence",
    "evidence_from_explanation",
    "evidence_from_files",
    "image_saliency",
    "in_points",
    "read_explanation_tables",
    "saliency_unavailable",
    "sentence_terms",
]

#: Sentences whose effect is below this many percentage points are left unshaded.
SHADE_MIN_POINTS = 0.5

log = logging.getLogger(__name__)

_TABLES = {
    "contributions": "modality_contributions.csv",
    "features": "features.csv",
    "spans": "text_spans.csv",
}


@dataclass
class Evidence:
    """Evidence for one patient.

    Attributes
    ----------
    source : ``"explanations"`` (the explain step's budget) or ``"computed"`` (the quick budget).
    contributions : modality, loo_delta, shapley (risk units; positive = raises risk).
    features : modality, feature, group, attribution.
    groups : modality, group, attribution (pathways).
    spans : sentence_index, start, end, attribution, sentence (character offsets in the text),
        terms (lexical report features: the words that carry the sentence, "" otherwise).
    saliency : modality -> (C, *image_size) occlusion map (positive = raises risk).
    text : the report text the spans refer to ("" when none).
    saliency_images : modality -> the preprocessed image a saliency map refers to, when known.
    """

    source: str
    contributions: pd.DataFrame
    features: pd.DataFrame = field(default_factory=pd.DataFrame)
    groups: pd.DataFrame = field(default_factory=pd.DataFrame)
    spans: pd.DataFrame = field(default_factory=pd.DataFrame)
    saliency: dict[str, np.ndarray] = field(default_factory=dict)
    text: str = ""
    saliency_images: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def description(self) -> str:
        if self.source == "explanations":
            return (
                "Attributions from the explain step (multimodal.explain): Shapley values of the "
                "modalities, integrated gradients of genes, each report sentence against a neutral one, "
                "occlusion saliency for images."
            )
        return (
            "Quick explanation computed for this patient (no RUN_DIR/explanations): the explain "
            "step's methods on a small budget -- Shapley values of the modalities, integrated "
            "gradients of genes with few steps, report sentences against a neutral one, occlusion "
            "saliency on a coarse grid of blocks."
        )


# ---------------------------------------------------------------------------------- from files
def read_explanation_tables(run_dir: str | Path) -> dict[str, pd.DataFrame] | None:
    """The tables of ``RUN_DIR/explanations`` (None when the folder is absent or unreadable)."""
    folder = RunFolder(run_dir).explanations_dir
    if not folder.is_dir():
        return None
    out: dict[str, pd.DataFrame] = {}
    for key, name in _TABLES.items():
        path = folder / name
        if path.is_file():
            try:
                out[key] = pd.read_csv(path, dtype={"patient_id": str})
            except (OSError, ValueError, pd.errors.ParserError):
                log.warning("explanations/%s cannot be read; ignored", name)
    return out or None


def _rows(tables: dict[str, pd.DataFrame], key: str, pid: str) -> pd.DataFrame:
    t = tables.get(key)
    if t is None or "patient_id" not in t:
        return pd.DataFrame()
    return t[t["patient_id"] == pid].drop(columns="patient_id").reset_index(drop=True)


def _assemble(
    source: str,
    contrib: pd.DataFrame,
    features: pd.DataFrame,
    spans: pd.DataFrame,
    text: str,
    saliency: dict[str, np.ndarray],
    images: dict[str, np.ndarray],
) -> Evidence:
    if not contrib.empty and "present" in contrib:
        contrib = contrib[contrib["present"].astype(bool)]
    keep = [c for c in ("modality", "loo_delta", "shapley") if c in contrib]
    contrib = contrib[keep].reset_index(drop=True) if keep else pd.DataFrame()
    groups = pd.DataFrame()
    if not features.empty and "group" in features:
        groups = (
            features.dropna(subset=["group"])
            .groupby(["modality", "group"], as_index=False, sort=False)["attribution"]
            .sum()
        )
    if not spans.empty and "sentence" not in spans and text:
        spans = spans.assign(
            sentence=[
                text[int(s) : int(e)] if 0 <= s < e else ""
                for s, e in zip(spans["start"], spans["end"])
            ]
        )
    return Evidence(source, contrib, features, groups, spans, saliency, text, images)


def evidence_from_files(
    run_dir: str | Path, tables: dict[str, pd.DataFrame] | None, patient_id: str, text: str = ""
) -> Evidence | None:
    """Evidence for ``patient_id`` from ``RUN_DIR/explanations`` (None when it has none)."""
    if not tables:
        return None
    pid = str(patient_id)
    contrib = _rows(tables, "contributions", pid)
    features = _rows(tables, "features", pid)
    spans = _rows(tables, "spans", pid)
    if contrib.empty and features.empty and spans.empty:
        return None
    saliency: dict[str, np.ndarray] = {}
    images: dict[str, np.ndarray] = {}
    from multimodal.explain.explanation import saliency_file

    folder = RunFolder(run_dir).explanations_dir / "saliency"
    modalities = set(contrib.get("modality", [])) | set(features.get("modality", []))
    for m in sorted(map(str, modalities)) if folder.is_dir() else []:
        stem = saliency_file(pid, m).removesuffix(".npy")
        for target, suffix in ((saliency, ".npy"), (images, "__image.npy")):
            path = folder / f"{stem}{suffix}"
            if path.is_file():
                try:
                    target[m] = np.load(path, allow_pickle=False)
                except (OSError, ValueError):
                    log.warning("a saliency file cannot be read; ignored")
    return _assemble("explanations", contrib, features, spans, text, saliency, images)


def evidence_from_explanation(explanation: Any, patient_id: str, text: str = "") -> Evidence | None:
    """Evidence for ``patient_id`` from an in-memory explanation (``model.explain(...)``)."""
    pid = str(patient_id)
    tables = explanation.patient(pid)
    contrib = tables.get("modality_contributions", pd.DataFrame())
    features = tables.get("features", pd.DataFrame())
    spans = tables.get("text_spans", pd.DataFrame())
    if contrib.empty and features.empty and spans.empty:
        return None
    drop = lambda f: f.drop(columns="patient_id", errors="ignore").reset_index(drop=True)  # noqa: E731
    saliency, images = {}, {}
    for (p, m), (sal, image) in getattr(explanation, "saliency", {}).items():
        if str(p) == pid:
            saliency[str(m)], images[str(m)] = np.asarray(sal), np.asarray(image)
    return _assemble(
        "explanations", drop(contrib), drop(features), drop(spans), text, saliency, images
    )


# ---------------------------------------------------------------------------------- computed
#: The quick evidence's budget for :func:`multimodal.explain.explain`: the same methods as the
#: explain step, cheaper -- few integration steps, no survival horizons, disjoint occlusion boxes.
QUICK_BUDGET: dict[str, Any] = {"n_steps": 8, "horizons": [], "occlusion_overlap": 0.0}


def _text_of(cohort: Any, patient_id: str) -> str:
    """The patient's report text as the explain step cuts it into spans ("" when none)."""
    for m in cohort.modalities:
        src = cohort.sources[m]
        if src.kind == "text" and patient_id in src.patient_ids:
            return str(src.texts().get(patient_id, ""))
    return ""


def compute_evidence(
    model: Any,
    cohort: Any,
    patient_id: str,
    n_features: int = 12,
    max_shapley_modalities: int = 6,
    saliency: bool = True,
) -> Evidence:
    """Quick evidence for one patient: :func:`multimodal.explain.explain` with a cheap budget.

    Parameters
    ----------
    model : :class:`multimodal.models.run.TrainedModel`.
    cohort : a cohort holding the patient.
    patient_id : the patient.
    n_features : features kept (largest absolute attribution first); pathway sums use them all.
    max_shapley_modalities : exact Shapley values up to this many modalities, else leave-one-out.
    saliency : also compute occlusion maps of the patient's images (on a coarse grid).

    Returns
    -------
    Evidence with ``source == "computed"``.
    """
    pid = str(patient_id)
    one = cohort.subset([pid])
    methods = ["modalities", "features", "text"] + (["saliency"] if saliency else [])
    explanation = model.explain(
        one,
        patient_ids=[pid],
        methods=methods,
        max_shapley_modalities=max_shapley_modalities,
        saliency_limit=1,
        **QUICK_BUDGET,
    )
    text = _text_of(one, pid)
    ev = evidence_from_explanation(explanation, pid, text)
    if ev is None:
        return Evidence("computed", pd.DataFrame(columns=["modality", "loo_delta", "shapley"]))
    ev.source = "computed"
    if not ev.features.empty:
        order = ev.features["attribution"].abs().sort_values(ascending=False, kind="stable")
        ev.features = ev.features.loc[order.index[:n_features]].reset_index(drop=True)
    return ev


def image_saliency(model: Any, cohort: Any, patient_id: str, modality: str) -> np.ndarray | None:
    """Quick occlusion saliency of one image (:func:`multimodal.explain.explain`, ``saliency``
    with disjoint occluding boxes), averaged over the fold models.

    Returns
    -------
    (C, *image_size) float32 over the preprocessed image (positive = raises risk), or None when
    the model does not take the image itself (e.g. frozen-backbone embeddings).
    """
    pid = str(patient_id)
    explanation = model.explain(
        cohort.subset([pid]),
        patient_ids=[pid],
        methods=["saliency"],
        saliency_limit=1,
        **QUICK_BUDGET,
    )
    found = explanation.saliency.get((pid, str(modality)))
    return None if found is None else np.asarray(found[0])


# ---------------------------------------------------------------------------------- units
def in_points(ev: Evidence, survival: float) -> Evidence:
    """A copy of ``ev`` with a ``points`` column on every table (and ``terms_points`` on the
    report sentences: their terms' ``(term, points)`` pairs): the attribution in percentage
    points of the event probability by the horizon at which the patient's predicted survival
    probability is ``survival`` (:func:`~multimodal.dashboard.vocabulary.points_from_risk`,
    exact for a Cox model: removing the item's share of the log-hazard changes S(t) to
    ``S(t) ** exp(-share)``). Modality contributions use their Shapley values (leave-one-out
    where those are missing)."""
    out = Evidence(
        ev.source,
        ev.contributions.copy(),
        ev.features.copy(),
        ev.groups.copy(),
        ev.spans.copy(),
        ev.saliency,
        ev.text,
        ev.saliency_images,
    )
    c = out.contributions
    if not c.empty:
        col = "shapley" if "shapley" in c and c["shapley"].notna().all() else "loo_delta"
        c["points"] = points_from_risk(c[col].to_numpy(float), survival)
        c["method"] = "Shapley value" if col == "shapley" else "left out"
    for frame in (out.features, out.groups, out.spans):
        if not frame.empty and "attribution" in frame:
            frame["points"] = points_from_risk(frame["attribution"].to_numpy(float), survival)
    if not out.spans.empty and "terms" in out.spans:
        out.spans["terms_points"] = [_terms_in_points(t, survival) for t in out.spans["terms"]]
    return out


def _terms_in_points(terms: Any, survival: float) -> list[tuple[str, float]]:
    """A sentence's ``(term, value)`` pairs with each value in percentage points (as
    :func:`in_points` converts a sentence's attribution)."""
    return [(t, float(points_from_risk(v, survival))) for t, v in sentence_terms({"terms": terms})]


def sentence_terms(row: Any, col: str = "attribution") -> list[tuple[str, float]]:
    """The terms of a report sentence (a row of :attr:`Evidence.spans`) that carry its effect,
    as ``(term, value)`` pairs, largest first: values in risk units, or in percentage points when
    ``col`` is ``"points"`` (after :func:`in_points`). None without lexical report features."""
    from multimodal.explain.explanation import parse_terms

    if col == "points":
        found = row.get("terms_points")
        return list(found) if isinstance(found, list) else []
    return parse_terms(row.get("terms"))


def saliency_unavailable(model: Any, modality: str) -> str | None:
    """Why occlusion saliency cannot be computed for ``modality`` of ``model`` (None when it can).

    Occlusion hides blocks of voxels and measures the change of the prediction; a model that
    reads precomputed embeddings of the image (the ``image_embedding`` encoder over a frozen
    backbone) never sees the voxels, so there is nothing to occlude.
    """
    if modality not in getattr(model, "modalities", []):
        return f"the model does not use {modality}."
    spec = model.folds[0].model.specs.get(modality)
    if spec is None or getattr(spec, "kind", "") != "imaging":
        return f"{modality} is not an image modality."
    if getattr(spec, "in_features", None) is not None:
        return (
            f"the model reads {modality} as precomputed embeddings of a frozen image network "
            "(encoder image_embedding), not the voxels themselves, so hiding parts of the image "
            "cannot change its prediction. Train with an encoder over the image (e.g. small_cnn) "
            "for saliency maps."
        )
    return None
