"""The evidence behind one patient's prediction: modality contributions, report sentences,
genomic features and pathways, image saliency.

Two sources, and the page says which one it shows:

1. The explain step (:mod:`multimodal.explain`): ``RUN_DIR/explanations/`` when it was saved
   there, else ``model.explain`` run for the selected patient, in memory. Files read:
   ``modality_contributions.csv`` (patient_id, modality, loo_delta, shapley),
   ``features.csv`` (patient_id, modality, feature, group, attribution),
   ``text_spans.csv`` (patient_id, sentence_index, start, end, attribution),
   ``saliency/<patient_id>__<modality>.npy``.
2. Otherwise a cheap perturbation estimate for the selected patient only (:func:`compute_evidence`):
   the patient is copied into a small cohort of variants -- a modality removed, a report sentence
   removed, a gene or pathway set to its training mean -- and every variant is scored by the
   loaded model in one pass. Attribution = risk(patient) - risk(variant): positive means the
   element pushed the risk up. Modality Shapley values are exact over the modalities present.
   Image saliency is an occlusion map on a coarse grid of blocks.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "Evidence",
    "compute_evidence",
    "evidence_from_explanation",
    "evidence_from_files",
    "image_saliency",
    "read_explanation_tables",
    "sentence_spans",
]

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
    source : ``"explanations"`` (read from RUN_DIR/explanations) or ``"computed"`` (fallback).
    contributions : modality, loo_delta, shapley (risk units; positive = raises risk).
    features : modality, feature, group, attribution.
    groups : modality, group, attribution (pathways).
    spans : sentence_index, start, end, attribution, sentence (character offsets in the text).
    saliency : modality -> array over the image (occlusion map, positive = raises risk).
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
                "modalities, integrated gradients of genes, leave-one-sentence-out for the report, "
                "occlusion saliency for images."
            )
        return (
            "Quick estimate computed for this patient (no RUN_DIR/explanations): change in "
            "predicted risk when a modality, a report sentence or a gene/pathway is removed or "
            "set to its training mean; image saliency by occluding blocks of the scan."
        )


def sentence_spans(text: str) -> list[tuple[int, int, str]]:
    """The report's sentences as the text pipeline cuts them, with character offsets."""
    from multimodal.training.preprocess import split_sentences

    spans, pos = [], 0
    for s in split_sentences(text):
        start = text.find(s, pos)
        if start < 0:  # not found verbatim (whitespace normalised): keep order, no offsets
            spans.append((-1, -1, s))
            continue
        spans.append((start, start + len(s), s))
        pos = start + len(s)
    return spans


# ---------------------------------------------------------------------------------- from files
def read_explanation_tables(run_dir: str | Path) -> dict[str, pd.DataFrame] | None:
    """The tables of ``RUN_DIR/explanations`` (None when the folder is absent or unreadable)."""
    folder = Path(run_dir) / "explanations"
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


def _saliency_name(patient_id: str, modality: str) -> str:
    """``<patient_id>__<modality>`` with unsafe characters replaced (the explain step's rule)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{patient_id}__{modality}")


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
    folder = Path(run_dir) / "explanations" / "saliency"
    modalities = set(contrib.get("modality", [])) | set(features.get("modality", []))
    for m in sorted(map(str, modalities)) if folder.is_dir() else []:
        stem = _saliency_name(pid, m)
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
@dataclass
class _Variant:
    tag: str
    drop: frozenset[str] = frozenset()
    text: str | None = None
    genomics: dict[str, float] | None = None


def _variant_cohort(cohort: Any, pid: str, variants: list[_Variant], text_modality: str | None):
    """A cohort holding one copy of patient ``pid`` per variant (ids ``<pid>::<tag>``)."""
    from multimodal.data.cohort import Cohort

    ids = [f"{pid}::{v.tag}" for v in variants]
    pt = cohort.patients.loc[[pid]]
    patients = pd.concat([pt] * len(ids))
    patients.index = pd.Index(ids, name=cohort.patients.index.name or "patient_id")
    sources = {}
    for m, src in cohort.sources.items():
        t = src.table
        by_col = "patient_id" in t.columns
        rows = t[t["patient_id"] == pid] if by_col else t.loc[t.index == pid]
        parts = []
        for vid, v in zip(ids, variants):
            if m in v.drop or rows.empty:
                continue
            r = rows.copy()
            if m == text_modality and v.text is not None:
                r = r.iloc[:1].assign(text=v.text)
            if src.kind == "genomics" and v.genomics:
                for col, val in v.genomics.items():
                    r[col] = val
            if by_col:
                r["patient_id"] = vid
            else:
                r.index = pd.Index([vid] * len(r), name=t.index.name)
            parts.append(r)
        table = pd.concat(parts) if parts else rows.iloc[0:0]
        if by_col:
            table = table.reset_index(drop=True)
        # sources keep their own settings (numeric/categorical, groups, spatial_dims)
        sources[m] = src._copy_with(table)
    return Cohort(patients, sources, name=cohort.name, root=cohort.root)


def _shapley(values: dict[frozenset[str], float], players: list[str]) -> dict[str, float]:
    n = len(players)
    out = {}
    for p in players:
        others = [q for q in players if q != p]
        total = 0.0
        for r in range(len(others) + 1):
            w = math.factorial(r) * math.factorial(n - r - 1) / math.factorial(n)
            for s in itertools.combinations(others, r):
                s = frozenset(s)
                total += w * (values[s | {p}] - values[s])
        out[p] = total
    return out


def _genomics_reference(model: Any, modality: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Selected features with their training mean and sd, averaged over the fold models."""
    names: list[str] | None = None
    means, sds = [], []
    for fm in model.folds:
        prep = getattr(fm.pipelines.get(modality), "prep", None)
        if prep is None or not hasattr(prep, "mean_"):
            continue
        fnames = list(prep.feature_names_)
        if names is None:
            names = fnames
        m = pd.Series(np.asarray(prep.mean_, float), index=fnames).reindex(names)
        s = pd.Series(np.asarray(prep.std_, float), index=fnames).reindex(names)
        means.append(m.to_numpy())
        sds.append(s.to_numpy())
    if names is None:
        return [], np.zeros(0), np.zeros(0)
    return names, np.nanmean(means, axis=0), np.nanmean(sds, axis=0)


def compute_evidence(
    model: Any,
    cohort: Any,
    patient_id: str,
    n_features: int = 12,
    max_shapley_modalities: int = 6,
    saliency: bool = True,
) -> Evidence:
    """Perturbation evidence for one patient of ``cohort`` (see the module docstring).

    Parameters
    ----------
    model : :class:`multimodal.models.run.TrainedModel`. cohort : a cohort holding the patient.
    patient_id : the patient. n_features : genes scored (those furthest from the training mean).
    max_shapley_modalities : exact Shapley values up to this many present modalities.
    saliency : also compute image occlusion maps (for image modalities fed to a CNN).
    """
    pid = str(patient_id)
    one = cohort.subset([pid])
    present = [
        m for m in model.modalities if m in one.sources and pid in one.sources[m].patient_ids
    ]
    variants = [_Variant("full")]
    shapley_sets: list[frozenset[str]] = []
    if 1 <= len(present) <= max_shapley_modalities:
        for r in range(len(present)):
            for keep in itertools.combinations(present, r):
                shapley_sets.append(frozenset(keep))
                variants.append(
                    _Variant(f"keep{len(shapley_sets)}", frozenset(present) - set(keep))
                )
    else:
        variants += [_Variant(f"drop-{m}", frozenset({m})) for m in present]

    text_modality = next((m for m in present if one.sources[m].kind == "text"), None)
    text, spans = "", []
    if text_modality is not None:
        text = str(one.sources[text_modality].texts().get(pid, ""))
        spans = sentence_spans(text)
        if len(spans) > 1:
            for i in range(len(spans)):
                rest = "\n".join(s for j, (_, _, s) in enumerate(spans) if j != i)
                variants.append(_Variant(f"sent{i}", text=rest))

    gen = next((m for m in present if one.sources[m].kind == "genomics"), None)
    feat_rows: list[tuple[str, str, str]] = []
    group_rows: list[tuple[str, str]] = []
    if gen is not None:
        names, mean, sd = _genomics_reference(model, gen)
        table = one.sources[gen].table
        groups = getattr(one.sources[gen], "groups", None) or {}
        ref = dict(zip(names, mean))
        for g, cols in groups.items():
            cols = [c for c in cols if c in ref]
            if cols:
                variants.append(_Variant(f"grp-{g}", genomics={c: ref[c] for c in cols}))
                group_rows.append((gen, g))
        if names:
            x = (
                table.loc[pid, names].to_numpy(float)
                if pid in table.index
                else np.full(len(names), np.nan)
            )
            z = np.abs((x - mean) / np.where(sd > 0, sd, 1.0))
            member = {c: g for g, cs in groups.items() for c in cs}
            for j in np.argsort(-np.nan_to_num(z, nan=-1.0))[:n_features]:
                if np.isfinite(z[j]):
                    variants.append(_Variant(f"gene-{names[j]}", genomics={names[j]: mean[j]}))
                    feat_rows.append((gen, names[j], member.get(names[j], "")))

    vc = _variant_cohort(one, pid, variants, text_modality)
    risk = model.predict(vc, list(model.times))["risk"].to_numpy(float)
    base = risk[0]
    by_tag = {v.tag: r for v, r in zip(variants, risk)}

    if shapley_sets:
        values = {s: by_tag[f"keep{i + 1}"] for i, s in enumerate(shapley_sets)}
        values[frozenset(present)] = base
        phi = _shapley(values, present)
        loo = {m: base - values[frozenset(present) - {m}] for m in present}
    else:
        phi = {m: float("nan") for m in present}
        loo = {m: base - by_tag[f"drop-{m}"] for m in present}
    contributions = pd.DataFrame(
        {
            "modality": present,
            "loo_delta": [loo[m] for m in present],
            "shapley": [phi[m] for m in present],
        }
    )
    span_frame = pd.DataFrame(
        {
            "sentence_index": range(len(spans)),
            "start": [s for s, _, _ in spans],
            "end": [e for _, e, _ in spans],
            "attribution": [
                base - by_tag[f"sent{i}"] if f"sent{i}" in by_tag else 0.0
                for i in range(len(spans))
            ],
            "sentence": [t for _, _, t in spans],
        }
    )
    features = pd.DataFrame(
        [(m, f, g, base - by_tag[f"gene-{f}"]) for m, f, g in feat_rows],
        columns=["modality", "feature", "group", "attribution"],
    )
    groups_frame = pd.DataFrame(
        [(m, g, base - by_tag[f"grp-{g}"]) for m, g in group_rows],
        columns=["modality", "group", "attribution"],
    )
    maps: dict[str, np.ndarray] = {}
    if saliency:
        for m in present:
            if one.sources[m].kind == "imaging":
                sal = image_saliency(model, one, pid, m)
                if sal is not None:
                    maps[m] = sal
    return Evidence("computed", contributions, features, groups_frame, span_frame, maps, text)


def image_saliency(
    model: Any, cohort: Any, patient_id: str, modality: str, blocks: int = 4
) -> np.ndarray | None:
    """Occlusion map of one image: risk(image) - risk(image with a block set to its mean), on a
    ``blocks``-per-axis grid, averaged over the fold models; None when the model does not take
    the image itself (e.g. frozen-backbone embeddings).

    Works on the preprocessed tensors of each fold model (``TrainedModel._fold_data``), since an
    occluded image exists only in memory.
    """
    import torch

    from multimodal.training.fold import _outputs, head_risk
    from multimodal.training.stores import DenseStore

    pid = str(patient_id)
    maps = []
    for fm in model.folds:
        data = model._fold_data(fm, cohort, [pid])
        store = data.stores.get(modality)
        if not isinstance(store, DenseStore) or store.values.dim() < 4 or not store.present[0]:
            return None
        x = store.values[0]  # (C, *spatial)
        size = tuple(x.shape[1:])
        cells = list(np.ndindex(*(blocks,) * len(size)))
        batch = x.unsqueeze(0).repeat(len(cells) + 1, *([1] * x.dim())).clone()
        fill = float(x.mean())
        for b, cell in enumerate(cells):
            region = tuple(
                slice(i * s // blocks, (i + 1) * s // blocks) for i, s in zip(cell, size)
            )
            batch[(b + 1, slice(None), *region)] = fill
        rep = data.subset(np.zeros(len(cells) + 1, dtype=np.int64))
        rep.stores[modality] = DenseStore(
            spec=store.spec, present=np.ones(len(cells) + 1, dtype=bool), values=batch
        )
        with torch.no_grad():
            r = head_risk(fm.model, _outputs(fm.model, rep, model.device, "32"))
        maps.append((r[0] - r[1:]).reshape((blocks,) * len(size)))
    return np.mean(maps, axis=0) if maps else None
