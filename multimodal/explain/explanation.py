"""The :class:`Explanation` result and its folder format (``RUN_DIR/explanations/``).

Files (read by the dashboard; columns may grow, never shrink)::

    explanations/
      explanation.json              what was explained and how (methods, folds, horizons, patients)
      modality_contributions.csv    patient_id, modality, present, loo_delta, shapley, risk,
                                    risk_no_data, [loo_surv_<t>, shapley_surv_<t>, surv_<t>,
                                    surv_no_data_<t> per horizon t]
      features.csv                  patient_id, modality, feature, group, value, attribution
      text_spans.csv                patient_id, modality, sentence_index, start, end, sentence,
                                    attribution, attention, attribution_raw, noise_sd,
                                    counterfactual, terms (:func:`format_terms`; "" without
                                    lexical text features)
      saliency.csv                  patient_id, modality, image_path, shape, file, image_file
      saliency/<patient_id>__<modality>.npy          saliency (C, *image_size), float32
      saliency/<patient_id>__<modality>__image.npy   the preprocessed image it refers to
      bags.csv                      patient_id, modality, instance, attention
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "MAX_SHOWN_TERMS",
    "TERM_DECIMALS",
    "Explanation",
    "format_terms",
    "parse_terms",
    "saliency_file",
]

#: Terms listed per sentence in ``text_spans``' ``terms`` column at most.
MAX_SHOWN_TERMS = 5
#: Terms whose value rounds to zero at this many decimals are not listed.
TERM_DECIMALS = 3

_TABLES = {
    "modality_contributions": "modality_contributions.csv",
    "features": "features.csv",
    "text_spans": "text_spans.csv",
    "saliency_index": "saliency.csv",
    "bags": "bags.csv",
}


def saliency_file(patient_id: str, modality: str) -> str:
    """File name of a saliency map: ``<patient_id>__<modality>.npy`` (unsafe characters -> ``_``)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", f"{patient_id}__{modality}")
    return f"{safe}.npy"


def format_terms(values: list[tuple[str, float]]) -> str:
    """The ``terms`` cell of a report sentence: ``"neg_lymphovascular neg_invasion -0.213;
    poorly differentiated +0.081"``.

    The :data:`MAX_SHOWN_TERMS` terms of largest ``|value|`` (ties by the term), with
    :data:`TERM_DECIMALS` decimals; terms whose value rounds to zero are left out ("" when none
    is left). A term is one or two words (letters and digits, ``neg_`` before a negated word), so
    neither ``"; "`` nor the last space of an entry is ambiguous (:func:`parse_terms`).
    """
    floor = 0.5 * 10.0**-TERM_DECIMALS
    kept = [(t, float(v)) for t, v in values if abs(float(v)) >= floor]
    kept.sort(key=lambda tv: (-abs(tv[1]), tv[0]))
    return "; ".join(f"{t} {v:+.{TERM_DECIMALS}f}" for t, v in kept[:MAX_SHOWN_TERMS])


def parse_terms(terms: Any) -> list[tuple[str, float]]:
    """``(term, value)`` pairs of a ``terms`` cell (:func:`format_terms`); NaN or "" give none."""
    if not isinstance(terms, str) or not terms.strip():
        return []
    out = []
    for entry in terms.split("; "):
        term, _, value = entry.strip().rpartition(" ")
        out.append((term, float(value)))
    return out


@dataclass
class Explanation:
    """Why the model predicts what it predicts, per patient (see :func:`multimodal.explain.explain`).

    Attributes
    ----------
    modality_contributions : one row per (patient, modality): leave-one-out and Shapley values at
        the risk level and, per horizon, in survival-probability units.
    features : one row per (patient, feature): genomic and clinical attributions.
    text_spans : one row per (patient, report sentence): character span and attribution, and
        with lexical text features the sentence's terms that carry it (``terms``).
    saliency_index : one row per explained image; ``saliency`` holds the maps.
    saliency : ``(patient_id, modality) -> (saliency map, preprocessed image)``, both (C, *S).
    bags : one row per (patient, bag instance): attention weight.
    meta : methods, horizons, number of fold models averaged, patients.
    """

    modality_contributions: pd.DataFrame
    features: pd.DataFrame
    text_spans: pd.DataFrame
    saliency_index: pd.DataFrame
    bags: pd.DataFrame
    saliency: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ summaries
    def group_attributions(self) -> pd.DataFrame:
        """Feature attributions summed per group: ``patient_id, modality, group, attribution``."""
        f = self.features
        return (
            f.groupby(["patient_id", "modality", "group"], sort=False)["attribution"]
            .sum()
            .reset_index()
        )

    def top_groups(self, modality: str | None = None) -> pd.DataFrame:
        """Groups ranked by mean absolute (per-patient) group attribution over the patients."""
        g = self.group_attributions()
        if modality is not None:
            g = g[g["modality"] == modality]
        g = g.assign(abs_attribution=g["attribution"].abs())
        return (
            g.groupby(["modality", "group"])["abs_attribution"]
            .mean()
            .sort_values(ascending=False)
            .reset_index()
        )

    def patient(self, patient_id: str) -> dict[str, pd.DataFrame]:
        """Every table restricted to one patient."""
        pid = str(patient_id)
        return {
            name: getattr(self, name)[getattr(self, name)["patient_id"].astype(str) == pid]
            for name in _TABLES
        }

    # ------------------------------------------------------------------ files
    def save(self, folder: str | Path) -> Path:
        """Write the explanation folder (module docstring); returns the folder."""
        folder = Path(folder)
        (folder / "saliency").mkdir(parents=True, exist_ok=True)
        index = self.saliency_index.copy()
        files, image_files = [], []
        for pid, m in zip(index["patient_id"], index["modality"], strict=True):
            sal, image = self.saliency[(str(pid), str(m))]
            name = saliency_file(str(pid), str(m))
            np.save(folder / "saliency" / name, np.asarray(sal, dtype=np.float32))
            image_name = name[: -len(".npy")] + "__image.npy"
            np.save(folder / "saliency" / image_name, np.asarray(image, dtype=np.float32))
            files.append(f"saliency/{name}")
            image_files.append(f"saliency/{image_name}")
        index["file"], index["image_file"] = files, image_files
        tables = {**{n: getattr(self, n) for n in _TABLES}, "saliency_index": index}
        for name, filename in _TABLES.items():
            tables[name].to_csv(folder / filename, index=False, lineterminator="\n")
        (folder / "explanation.json").write_text(json.dumps(self.meta, indent=2, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Explanation:
        """Read a folder written by :meth:`save`."""
        from multimodal.exceptions import RunFolderError

        folder = Path(folder)
        if not (folder / "modality_contributions.csv").is_file():
            raise RunFolderError(
                f"{folder} holds no explanation (modality_contributions.csv is missing); write "
                "one with `multimodal explain RUN_DIR --cohort COHORT`"
            )
        tables = {}
        for name, filename in _TABLES.items():
            path = folder / filename
            tables[name] = (
                pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=True)
                if path.is_file() and path.stat().st_size > 1
                else pd.DataFrame()
            )
        spans = tables["text_spans"]
        if "terms" in spans:  # "" (no lexical features) reads back as NaN
            tables["text_spans"] = spans.assign(terms=spans["terms"].fillna("").astype(str))
        saliency = {}
        index = tables["saliency_index"]
        if len(index):
            for pid, m, f, fi in zip(
                index["patient_id"],
                index["modality"],
                index["file"],
                index["image_file"],
                strict=True,
            ):
                saliency[(str(pid), str(m))] = (np.load(folder / f), np.load(folder / fi))
        meta_path = folder / "explanation.json"
        meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        return cls(**tables, saliency=saliency, meta=meta)
