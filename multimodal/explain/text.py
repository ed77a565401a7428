"""Sentence attributions for report text: leave one sentence out.

The text input of a model is built from the sentences of a patient's report (sentence embeddings,
pooled or as a set; or the tokenized report). Each sentence's attribution is the change in risk when
the report is read without it: ``risk(report) - risk(report without sentence j)``, so a positive
value means the sentence raised the predicted risk. The shortened report goes through the fold's own
fitted text pipeline, so the model sees exactly what it would see for such a report -- the text
encoder and the report's linear member alike; a report whose only sentence is removed counts as a
missing report.

Spans are character offsets into the patient's text as ``cohort.sources[m].texts()`` returns it
(several reports of a patient joined in date order by a blank line). For the ``text_chunks``
encoder the attention weight of each sentence is reported too.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.explain._forward import (
    BATCH,
    FoldInputs,
    encode,
    head_outputs,
    present_matrix,
    risk_of,
    take,
    to_device,
)
from multimodal.training.preprocess import split_sentences

__all__ = ["sentence_attributions", "sentence_spans"]

COLUMNS = [
    "patient_id",
    "modality",
    "sentence_index",
    "start",
    "end",
    "sentence",
    "attribution",
    "attention",
]


def sentence_spans(text: str) -> list[tuple[str, int, int]]:
    """The sentences of ``text`` as the text pipeline cuts them, with ``(start, end)`` offsets.

    ``text[start:end] == sentence`` for every sentence found verbatim (always, for the splitter's
    output); a sentence that cannot be located gets ``(-1, -1)``.
    """
    out, cursor = [], 0
    for s in split_sentences(text):
        start = text.find(s, cursor)
        if start < 0:
            out.append((s, -1, -1))
            continue
        out.append((s, start, start + len(s)))
        cursor = start + len(s)
    return out


class _Texts:
    """Minimal text source: what a text pipeline's ``transform`` reads (``texts()``)."""

    kind = "text"

    def __init__(self, texts: pd.Series) -> None:
        self._series = texts
        self.patient_ids = texts.index

    def texts(self, separator: str = "\n\n") -> pd.Series:  # already joined
        return self._series


def _attention(fi: FoldInputs, m: str, rows: np.ndarray) -> list[np.ndarray] | None:
    enc = fi.model.encoders[m]
    if not hasattr(enc, "forward_with_attention"):
        return None
    store = fi.data.stores[m]
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), BATCH):
            idx = rows[start : start + BATCH]
            x = store.batch(idx).to(fi.device)
            _, w = enc.forward_with_attention(x)
            counts = x.mask.sum(1).cpu().numpy()
            out += [w[i, : int(c)].float().cpu().numpy() for i, c in enumerate(counts)]
    return out


def _fold_deltas(
    fi: FoldInputs, m: str, parents: np.ndarray, shortened: pd.Series
) -> tuple[np.ndarray, list[np.ndarray] | None]:
    """Risk(report) - risk(shortened report) for every pseudo-patient of one fold model."""
    model, data = fi.model, fi.data
    present = present_matrix(data, model.modalities)
    col = model.modalities.index(m)
    store = fi.fold.pipelines[m].transform(_Texts(shortened), list(shortened.index))
    emb = encode(model, data, fi.device)
    deltas = np.zeros(len(parents))
    with torch.no_grad():
        for start in range(0, len(parents), BATCH):
            sel = np.arange(start, min(len(parents), start + BATCH))
            rows = parents[sel]
            e = {k: take(v, rows) for k, v in emb.items()}
            seen = present[rows].copy()
            mask = {k: torch.from_numpy(seen[:, j].copy()) for j, k in enumerate(model.modalities)}
            full = risk_of(model, head_outputs(fi, rows, mask, e)).cpu().numpy()
            # the shortened report goes live: its encoder and its linear member both read it
            live = {m: to_device(store.batch(sel), fi.device)}
            seen[:, col] &= store.present[sel]
            mask = {k: torch.from_numpy(seen[:, j].copy()) for j, k in enumerate(model.modalities)}
            short = head_outputs(fi, rows, mask, e, live=live)
            deltas[sel] = full - risk_of(model, short).cpu().numpy()
    return deltas, _attention(fi, m, np.unique(parents))


def sentence_attributions(folds: list[FoldInputs], cohort: Any) -> pd.DataFrame:
    """Leave-one-sentence-out attributions for every text modality, averaged over the folds.

    Returns
    -------
    DataFrame ``patient_id, modality, sentence_index, start, end, sentence, attribution,
    attention`` (``attention``: mean attention weight over the folds for attention-pooling text
    encoders, NaN otherwise).
    """
    model = folds[0].model
    frames = []
    for m in [m for m in model.modalities if model.specs[m].kind == "text"]:
        source = getattr(cohort, "sources", {}).get(m)
        if source is None:
            continue
        data = folds[0].data
        texts = source.texts()
        rows, parents, pseudo, records = [], [], {}, []
        for r, pid in enumerate(data.ids):
            if not data.stores[m].present[r]:
                continue
            spans = sentence_spans(str(texts[pid]))
            rows.append(r)
            for j, (sent, a, b) in enumerate(spans):
                rest = [s for k, (s, _, _) in enumerate(spans) if k != j]
                pseudo[f"{pid}\x00{j}"] = "\n".join(rest)
                parents.append(r)
                records.append((pid, m, j, a, b, sent))
        if not records:
            continue
        shortened = pd.Series(pseudo, dtype=object)
        parents_a = np.asarray(parents, dtype=np.int64)
        total = np.zeros(len(records))
        attention = np.full(len(records), np.nan)
        att_sum: np.ndarray | None = None
        for fi in folds:
            deltas, att = _fold_deltas(fi, m, parents_a, shortened)
            total += deltas / len(folds)
            if att is not None:
                flat = _align_attention(att, np.unique(parents_a), parents_a, records)
                att_sum = flat / len(folds) if att_sum is None else att_sum + flat / len(folds)
        if att_sum is not None:
            attention = att_sum
        frame = pd.DataFrame(records, columns=COLUMNS[:6])
        frame["attribution"] = total
        frame["attention"] = attention
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)


def _align_attention(
    att: list[np.ndarray], uniq: np.ndarray, parents: np.ndarray, records: list[tuple]
) -> np.ndarray:
    """Per-record attention weight: sentence j of the patient (NaN when the counts differ)."""
    by_row = dict(zip(uniq.tolist(), att, strict=True))
    counts = np.bincount(parents)
    out = np.full(len(records), np.nan)
    for i, (r, rec) in enumerate(zip(parents, records, strict=True)):
        w, j, n_sent = by_row[int(r)], rec[2], int(counts[r])
        if len(w) == n_sent:
            out[i] = float(w[j])
    return out
