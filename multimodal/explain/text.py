"""Sentence attributions for report text: each sentence against a neutral sentence, and with
lexical features the words that carry it.

The text input of a model is built from the sentences of a patient's report (sentence embeddings,
pooled or as a set; or the tokenized report). A sentence's attribution is the change in risk when
it is replaced by a *neutral sentence* -- ``risk(report) - risk(report with sentence j neutral)``,
so a positive value means the sentence raised the predicted risk:

- the neutral sentence is the embedding the fold's text pipeline centres on (``mean_``: the
  training patients' mean report embedding for pooled encoders, the mean training sentence for
  token sets; zero after its z-scoring), as the features' integrated gradients start from the
  training mean. With pooled sentence embeddings (``text_mlp``, and the report's linear member)
  the report keeps its length, so sentence j weighs ``1/n`` before and after, and the other
  sentences keep theirs. For a linear member a sentence's attribution then depends on the
  sentence and the report's length only, not on what else the report says, and a report's
  attributions sum exactly to ``risk(report) - risk(neutral report)``, the member's whole share. With token sets (``text_chunks``) the sentence's token is
  the zero token. Leaving the sentence out instead (the earlier method) re-weights every other
  sentence, so in a low-risk report a boilerplate sentence ("Ink colors: blue superior, black
  inferior.") is credited with the risk the findings lose when they are diluted less.
- tokenized reports (``text_transformer``) and token-window chunking have no sentence embedding
  to replace: there the sentence is left out (``counterfactual`` says which was used).
- lexical features (``data.text_features="lexical"``: TF-IDF of the report's words) have no
  neutral sentence either: the sentence is left out, i.e. the report's features are recomputed
  without it -- exactly the report's term counts less the sentence's (the pipeline reads the
  same sentences). For the report's linear member a sentence's attribution is then the sum, over
  the terms it holds, of coefficient times the change of the term's column (with sublinear term
  frequency a term the report repeats elsewhere changes less). A report whose only sentence is
  left out counts as missing the modality, as for the other "sentence removed" cases. With
  ``"both"`` the embedding columns get the neutral sentence as above and the lexical columns the
  report without the sentence (``counterfactual`` is ``"neutral sentence, terms removed"``).

The shortened report goes through the fold's own fitted text pipeline (its sentence embeddings
and standardisation), so the encoder and the report's linear member see what they would see for
such a report.

**Shrinkage within the noise of the model.** Each fold model of the cross-validation ensemble
gives its own attribution; the table's ``attribution_raw`` is their mean (the ensemble's). The
fold models are delete-a-group jackknife replicates of the model, so the spread of their
attributions estimates the attribution's sampling variance,
``(K - 1) / K * sum_k (a_k - mean)^2`` (grouped jackknife, K fold models). K is small (2-10), so
the variance is pooled over the sentences of the patient's report (one noise level per report)
and ``attribution = raw * raw^2 / (raw^2 + noise^2)`` -- the posterior mean of a Gaussian effect
observed with that noise, its own square standing in for the effect's variance (empirical Wiener
shrinkage). An attribution well above the noise is kept (factor near 1), one at the noise level
is halved, one well below it goes to about zero. The factor grows with ``|raw|``, so the ranking
of a report's sentences is the ensemble's; what changes is that boilerplate sentences the model
weighs within its own noise are no longer shaded as evidence. With one fold model there is no
noise estimate and ``attribution == attribution_raw``.

**The words of a sentence.** With lexical features each sentence's ``terms`` list the words and
word pairs (``neg_`` before a negated word) that move the risk most (:func:`term_attributions`):
a term's value is the fold-averaged change in risk when the report loses the sentence's
occurrences of the term -- its count lowered by the sentence's, its column recomputed, every
other column kept -- shrunk within the noise like the sentences. Same unit as ``attribution``;
for the report's linear member a sentence's unshrunk term values sum to its
``attribution_raw``. "" for sentence-embedding runs.

Spans are character offsets into the patient's text as ``cohort.sources[m].texts()`` returns it
(several reports of a patient joined in date order by a blank line). For the ``text_chunks``
encoder the attention weight of each sentence is reported too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from multimodal.data.lexical import term_counts
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
from multimodal.explain.explanation import format_terms
from multimodal.training.preprocess import TextPipeline, split_sentences
from multimodal.training.stores import DenseStore, ModalityStore, TokenStore

__all__ = [
    "COUNTERFACTUALS",
    "TERM_COLUMNS",
    "sentence_attributions",
    "sentence_spans",
    "shrink_to_noise",
    "term_attributions",
]

COLUMNS = [
    "patient_id",
    "modality",
    "sentence_index",
    "start",
    "end",
    "sentence",
    "attribution",
    "attention",
    "attribution_raw",
    "noise_sd",
    "counterfactual",
    "terms",
]

#: Columns of :func:`term_attributions`.
TERM_COLUMNS = [
    "patient_id",
    "modality",
    "sentence_index",
    "term",
    "attribution",
    "attribution_raw",
    "noise_sd",
]

#: What a sentence is compared with: replaced by the neutral sentence, or left out, or (embedding
#: and lexical features side by side) the neutral sentence in the embedding, its terms left out.
COUNTERFACTUALS: tuple[str, ...] = (
    "neutral sentence",
    "sentence removed",
    "neutral sentence, terms removed",
)


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


def shrink_to_noise(
    per_fold: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold-averaged attributions shrunk toward zero by the fold models' disagreement.

    Parameters
    ----------
    per_fold : (K, R) float, the attribution of each of R sentences by each of K fold models.
    groups : (R,) int >= 0, the report of each sentence; the noise is pooled within a report.

    Returns
    -------
    attribution : (R,) ``raw * raw^2 / (raw^2 + noise_sd^2)`` (``raw`` where K < 2).
    raw : (R,) the mean over the fold models.
    noise_sd : (R,) the report's pooled grouped-jackknife standard error, NaN where K < 2.
    """
    per_fold = np.asarray(per_fold, dtype=float)
    groups = np.asarray(groups, dtype=np.int64)
    k, raw = per_fold.shape[0], per_fold.mean(axis=0)
    if k < 2:
        return raw.copy(), raw, np.full(raw.shape, np.nan)
    variance = (k - 1) / k * ((per_fold - raw) ** 2).sum(axis=0)  # grouped jackknife
    pooled = np.bincount(groups, weights=variance) / np.maximum(np.bincount(groups), 1)
    noise = pooled[groups]
    power = raw**2
    factor = np.divide(power, power + noise, out=np.zeros_like(raw), where=power + noise > 0)
    return raw * factor, raw, np.sqrt(noise)


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


def _neutral(
    pipeline: Any, shortened: ModalityStore, n_sentences: np.ndarray
) -> ModalityStore | None:
    """The reports with sentence j replaced by the neutral sentence, from the shortened reports.

    The pipeline pools standardised sentence embeddings by their mean (dense) or keeps them as
    tokens, and the neutral sentence standardises to zero: for a report of n sentences the
    replaced report is ``(n - 1) / n`` times the shortened one (dense), or the shortened one plus
    a zero token. With lexical features after the embedding (``text_features="both"``) only the
    embedding columns are scaled; the lexical columns stay those of the shortened report (the
    sentence's terms removed; an empty shortened report has none of the terms). None where the
    pipeline does not embed sentences, or its features are lexical only (then the sentence is
    removed).
    """
    sentences = getattr(getattr(pipeline, "ctx", None), "text_chunking", None) == "sentences"
    if not (isinstance(pipeline, TextPipeline) and sentences):
        return None
    if pipeline.text_features == "lexical":
        return None
    present = np.ones(len(n_sentences), dtype=bool)  # a one-sentence report is one neutral one
    if isinstance(shortened, DenseStore):
        keep = torch.from_numpy(((n_sentences - 1) / n_sentences).astype(np.float32))
        if pipeline.text_features == "both":
            return _neutral_embedding_only(pipeline, shortened, keep)
        values = shortened.values * keep.reshape(-1, *[1] * (shortened.values.dim() - 1))
        return DenseStore(spec=shortened.spec, present=present, values=values)
    if isinstance(shortened, TokenStore):
        dim = int(shortened.spec.in_features)
        values = [torch.cat([v.reshape(-1, dim), torch.zeros(1, dim)]) for v in shortened.values]
        return TokenStore(spec=shortened.spec, present=present, values=values)
    return None


def _neutral_embedding_only(
    pipeline: TextPipeline, shortened: DenseStore, keep: torch.Tensor
) -> DenseStore:
    """``text_features="both"``: the embedding columns scaled by ``keep`` (the neutral sentence),
    the lexical columns those of the shortened report (an empty one: the empty report's)."""
    values = shortened.values.clone()
    width = values.shape[1] - pipeline.n_terms
    values[:, :width] *= keep.reshape(-1, 1)
    empty = torch.from_numpy(~np.asarray(shortened.present, dtype=bool))
    if bool(empty.any()):
        values[empty, width:] = torch.from_numpy(pipeline.lexical_features([""]))
    present = np.ones(len(keep), dtype=bool)
    return DenseStore(spec=shortened.spec, present=present, values=values)


def _counterfactual_store(
    fi: FoldInputs, m: str, shortened: pd.Series, n_sentences: np.ndarray
) -> tuple[ModalityStore, str]:
    """Each pseudo-patient's report under the counterfactual, and which counterfactual it is."""
    pipeline = fi.fold.pipelines[m]
    store = pipeline.transform(_Texts(shortened), list(shortened.index))
    neutral = _neutral(pipeline, store, n_sentences)
    if neutral is None:  # a report whose only sentence is removed counts as missing
        return store, COUNTERFACTUALS[1]
    if getattr(pipeline, "text_features", "embedding") == "both":
        return neutral, COUNTERFACTUALS[2]
    return neutral, COUNTERFACTUALS[0]


#: The changed report input of pseudo-patients ``sel``: (model input, report present or not).
Changed = Callable[[np.ndarray], tuple[Any, np.ndarray]]


def _fold_deltas(
    fi: FoldInputs, m: str, parents: np.ndarray, shortened: pd.Series, n_sentences: np.ndarray
) -> tuple[np.ndarray, list[np.ndarray] | None, str]:
    """Risk(report) - risk(counterfactual report) for every pseudo-patient of one fold model."""
    store, counterfactual = _counterfactual_store(fi, m, shortened, n_sentences)
    deltas = _risk_changes(fi, m, parents, lambda sel: (store.batch(sel), store.present[sel]))
    return deltas, _attention(fi, m, np.unique(parents)), counterfactual


def _risk_changes(fi: FoldInputs, m: str, parents: np.ndarray, changed: Changed) -> np.ndarray:
    """Risk(report) - risk(changed report) of one fold model for pseudo-patients of rows
    ``parents``: the changed report goes live (its encoder and its linear member both read it)."""
    model, data = fi.model, fi.data
    present = present_matrix(data, model.modalities)
    col = model.modalities.index(m)
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
            x, alive = changed(sel)
            live = {m: to_device(x, fi.device)}
            seen[:, col] &= alive
            mask = {k: torch.from_numpy(seen[:, j].copy()) for j, k in enumerate(model.modalities)}
            short = head_outputs(fi, rows, mask, e, live=live)
            deltas[sel] = full - risk_of(model, short).cpu().numpy()
    return deltas


def _report_sentences(
    data: Any, m: str, texts: pd.Series
) -> Iterator[tuple[int, str, list[tuple[str, int, int]]]]:
    """``(row, patient_id, sentence_spans)`` of every patient of ``data`` with a report."""
    for r, pid in enumerate(data.ids):
        if data.stores[m].present[r]:
            yield r, pid, sentence_spans(str(texts[pid]))


def _pseudo_patients(
    data: Any, m: str, texts: pd.Series
) -> tuple[list[tuple], np.ndarray, pd.Series]:
    """One record per (patient, sentence), its patient's row, and the report without it."""
    parents, pseudo, records = [], {}, []
    for r, pid, spans in _report_sentences(data, m, texts):
        for j, (sent, a, b) in enumerate(spans):
            rest = [s for k, (s, _, _) in enumerate(spans) if k != j]
            pseudo[f"{pid}\x00{j}"] = "\n".join(rest)
            parents.append(r)
            records.append((pid, m, j, a, b, sent))
    return records, np.asarray(parents, dtype=np.int64), pd.Series(pseudo, dtype=object)


def _modality_frame(folds: list[FoldInputs], m: str, texts: pd.Series) -> pd.DataFrame | None:
    records, parents, shortened = _pseudo_patients(folds[0].data, m, texts)
    if not records:
        return None
    n_sentences = np.bincount(parents)[parents].astype(np.float64)
    per_fold, counterfactuals = np.zeros((len(folds), len(records))), set()
    att_sum: np.ndarray | None = None
    for i, fi in enumerate(folds):
        per_fold[i], att, counterfactual = _fold_deltas(fi, m, parents, shortened, n_sentences)
        counterfactuals.add(counterfactual)
        if att is not None:
            flat = _align_attention(att, np.unique(parents), parents, records) / len(folds)
            att_sum = flat if att_sum is None else att_sum + flat
    _, report = np.unique(parents, return_inverse=True)
    attribution, raw, noise = shrink_to_noise(per_fold, report)
    frame = pd.DataFrame(records, columns=COLUMNS[:6])
    frame["attribution"] = attribution
    frame["attention"] = np.full(len(records), np.nan) if att_sum is None else att_sum
    frame["attribution_raw"] = raw
    frame["noise_sd"] = noise
    frame["counterfactual"] = " / ".join(sorted(counterfactuals))
    terms = _modality_terms(folds, m, texts)
    frame["terms"] = "" if terms is None else _terms_column(frame, terms)
    return frame


def sentence_attributions(folds: list[FoldInputs], cohort: Any) -> pd.DataFrame:
    """Sentence attributions for every text modality, against the neutral sentence, averaged over
    the fold models and shrunk by their disagreement (see the module docstring).

    Returns
    -------
    DataFrame ``patient_id, modality, sentence_index, start, end, sentence, attribution,
    attention, attribution_raw, noise_sd, counterfactual, terms``: ``attribution`` is the shrunk
    value (what to show), ``attribution_raw`` the ensemble's mean change in risk, ``noise_sd`` the
    report's pooled jackknife standard error (NaN with one fold model), ``counterfactual`` one of
    :data:`COUNTERFACTUALS`; ``attention`` the mean attention weight over the folds for
    attention-pooling text encoders, NaN otherwise; ``terms`` the sentence's lexical terms of
    largest ``|attribution|`` (:func:`term_attributions`, formatted by
    :func:`~multimodal.explain.explanation.format_terms`), "" without lexical features.
    """
    model = folds[0].model
    frames = []
    for m in [m for m in model.modalities if model.specs[m].kind == "text"]:
        source = getattr(cohort, "sources", {}).get(m)
        if source is None:
            continue
        frame = _modality_frame(folds, m, source.texts())
        if frame is not None:
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


# ------------------------------------------------------------------------------ lexical terms
def term_attributions(folds: list[FoldInputs], cohort: Any) -> pd.DataFrame:
    """The lexical terms of each report sentence and how much each moves the risk.

    For text modalities whose pipeline has lexical features (``data.text_features`` ``"lexical"``
    or ``"both"``): term t of sentence j counts ``c_j(t)`` times in the sentence and ``c(t)`` in
    the report; its attribution is ``risk(report) - risk(report with c(t) - c_j(t) occurrences of
    t)`` -- the report without the sentence's occurrences of the term (for a term only this
    sentence holds: the report without the term). Only the term's lexical column changes
    (recomputed by the fold's vectorizer); with ``"both"`` the embedding columns stay the
    report's. A fold model whose vocabulary lacks the term gives 0. The values are averaged over
    the fold models and shrunk by their disagreement like the sentences'
    (:func:`shrink_to_noise`, the noise pooled over the terms of a report), in the same unit
    (change in risk). Each column of the lexical features depends on its own term only, so
    where the model is linear in them (the report's linear member) a sentence's term values,
    unshrunk, sum to its ``attribution_raw`` (``"lexical"``; except a report's only sentence,
    whose removal leaves no report).

    Returns
    -------
    DataFrame :data:`TERM_COLUMNS`, one row per (patient, modality, sentence, kept term of any
    fold's vocabulary), largest ``|attribution|`` first within a sentence; empty without
    lexical features.
    """
    model = folds[0].model
    frames = []
    for m in [m for m in model.modalities if model.specs[m].kind == "text"]:
        source = getattr(cohort, "sources", {}).get(m)
        frame = None if source is None else _modality_terms(folds, m, source.texts())
        if frame is not None:
            frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TERM_COLUMNS)


def _lexical(fi: FoldInputs, m: str) -> bool:
    """Whether the fold's pipeline for ``m`` has lexical columns in a dense store."""
    pipeline = fi.fold.pipelines.get(m)
    return (
        isinstance(pipeline, TextPipeline)
        and pipeline.n_terms > 0
        and isinstance(fi.data.stores[m], DenseStore)
    )


def _modality_terms(folds: list[FoldInputs], m: str, texts: pd.Series) -> pd.DataFrame | None:
    """:func:`term_attributions` of one text modality (None without lexical features)."""
    if not all(_lexical(fi, m) for fi in folds):
        return None
    vocabulary = set().union(*(fi.fold.pipelines[m].vectorizer_.terms_ for fi in folds))
    records, pairs = [], []  # pairs: (row, term, occurrences left) per (sentence, term)
    for r, pid, spans in _report_sentences(folds[0].data, m, texts):
        counts = [term_counts(sent) for sent, _, _ in spans]
        report = sum(counts, Counter())
        for j, c in enumerate(counts):
            for term in sorted(t for t in c if t in vocabulary):
                records.append((pid, m, j, term))
                pairs.append((r, term, report[term] - c[term]))
    if not records:
        return None
    per_fold = np.stack([_fold_term_deltas(fi, m, pairs) for fi in folds])
    rows = np.array([r for r, _, _ in pairs], dtype=np.int64)
    _, report_of = np.unique(rows, return_inverse=True)
    attribution, raw, noise = shrink_to_noise(per_fold, report_of)
    frame = pd.DataFrame(records, columns=TERM_COLUMNS[:4])
    frame["attribution"], frame["attribution_raw"], frame["noise_sd"] = attribution, raw, noise
    order = frame.assign(size=-frame["attribution"].abs())
    order = order.sort_values(["patient_id", "sentence_index", "size", "term"], kind="stable")
    return frame.loc[order.index].reset_index(drop=True)


def _fold_term_deltas(fi: FoldInputs, m: str, pairs: list[tuple[int, str, int]]) -> np.ndarray:
    """Risk(report) - risk(report with ``left`` occurrences of the term) for each ``(row, term,
    left)`` of one fold model (0 where its vocabulary lacks the term)."""
    pipeline = fi.fold.pipelines[m]
    vectorizer = pipeline.vectorizer_
    column = {t: j for j, t in enumerate(vectorizer.terms_)}
    known = np.array([i for i, (_, t, _) in enumerate(pairs) if t in column], dtype=np.int64)
    out = np.zeros(len(pairs))
    if not len(known):
        return out
    values = fi.data.stores[m].values
    width = values.shape[1] - pipeline.n_terms  # the lexical columns come last

    def changed(sel: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        chosen = [pairs[i] for i in known[sel]]
        x = values[torch.as_tensor([r for r, _, _ in chosen])].clone()
        cols = np.array([column[t] for _, t, _ in chosen])
        # each lexical column depends on its own term's count only
        lexical = vectorizer.transform_counts([Counter({t: k}) for _, t, k in chosen])
        at = np.arange(len(chosen))
        x[torch.from_numpy(at), torch.from_numpy(width + cols)] = torch.from_numpy(
            lexical[at, cols]
        )
        return x, np.ones(len(chosen), dtype=bool)

    parents = np.array([pairs[i][0] for i in known], dtype=np.int64)
    out[known] = _risk_changes(fi, m, parents, changed)
    return out


def _terms_column(frame: pd.DataFrame, terms: pd.DataFrame) -> list[str]:
    """The ``terms`` cell of each sentence of ``frame`` (one modality) from its term rows."""
    cells = {
        (str(pid), int(j)): format_terms(list(zip(g["term"], g["attribution"], strict=True)))
        for (pid, j), g in terms.groupby(["patient_id", "sentence_index"], sort=False)
    }
    keys = zip(frame["patient_id"].astype(str), frame["sentence_index"].astype(int), strict=True)
    return [cells.get(key, "") for key in keys]
