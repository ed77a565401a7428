"""The report-text pipeline: sentences (bounded in length and number), embeddings or lexical
features (``data.text_features``), caching."""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from multimodal.data.lexical import LexicalVectorizer, term_counts
from multimodal.exceptions import ConfigError, DataError
from multimodal.training.pipeline_base import (
    PIPELINES,
    ModalityPipeline,
    _present,
    _saved_stats,
    default_cache_dir,
)
from multimodal.training.stores import DenseStore, DictStore, ModalityStore, TokenStore
from multimodal.types import InputSpec

__all__ = [
    "MAX_REPORT_CHARS",
    "MAX_REPORT_CHUNKS",
    "MAX_SENTENCE_CHARS",
    "TEXT_FEATURES",
    "TextPipeline",
    "report_chunks",
    "split_sentences",
]

log = logging.getLogger(__name__)

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")
_SPACE = re.compile(r"\s")

# Limits that keep one odd report from dominating the cost of a run (embedding cost grows with the
# text's length). Real reports stay far inside them -- in the TCGA pathology reports the longest
# sentence has 328 characters, the most sentences per report are 494, the longest report has
# 24,092 characters -- so their sentences, and embeddings, are those of the plain split.
#: A longer "sentence" (text without punctuation or line breaks) is cut at whitespace into pieces
#: of at most this many characters.
MAX_SENTENCE_CHARS = 1000
#: Sentences (chunks) embedded per report at most; later ones are left out.
MAX_REPORT_CHUNKS = 1000
#: Characters embedded per report at most (whole sentences); the rest is left out.
MAX_REPORT_CHARS = 50_000


#: What a pooled text input holds (``data.text_features``).
TEXT_FEATURES: tuple[str, ...] = ("embedding", "lexical", "both")
#: Least number of training reports a lexical term occurs in.
LEXICAL_MIN_DF = 5


def _pieces(sentence: str, max_chars: int) -> Iterator[str]:
    """``sentence`` in pieces of at most ``max_chars`` characters, each cut at the last whitespace
    that fits (mid-word only where there is none); every piece is a substring of ``sentence``."""
    start, n = 0, len(sentence)
    while n - start > max_chars:
        window = sentence[start : start + max_chars + 1]
        spaces = [m.start() for m in _SPACE.finditer(window)]
        end = spaces[-1] if spaces and spaces[-1] > 0 else max_chars
        yield sentence[start : start + end].rstrip()
        start += end
        while start < n and sentence[start].isspace():
            start += 1
    if start < n:
        yield sentence[start:]


def report_chunks(text: str, min_chars: int = 3) -> tuple[list[str], bool]:
    """The chunks :func:`split_sentences` returns, and whether the report limits left text out.

    Sentences longer than :data:`MAX_SENTENCE_CHARS` are cut at whitespace; at most
    :data:`MAX_REPORT_CHUNKS` chunks and :data:`MAX_REPORT_CHARS` characters are kept, in order.
    """
    text = str(text)
    parts = [p.strip() for p in _SENTENCE_END.split(text)]
    sentences = [p for p in parts if len(p) >= min_chars] or [text.strip()]
    chunks: list[str] = []
    used = 0
    for sentence in sentences:
        long = len(sentence) > MAX_SENTENCE_CHARS
        for piece in _pieces(sentence, MAX_SENTENCE_CHARS) if long else [sentence]:
            if len(chunks) == MAX_REPORT_CHUNKS or used + len(piece) > MAX_REPORT_CHARS:
                return chunks, True
            chunks.append(piece)
            used += len(piece)
    return chunks, False


def split_sentences(text: str, min_chars: int = 3) -> list[str]:
    """Split a report into sentences (and lines); fragments shorter than ``min_chars`` are dropped.

    Each sentence is a substring of ``text``. Overlong sentences and reports are cut to the limits
    of :func:`report_chunks` (:data:`MAX_SENTENCE_CHARS`, :data:`MAX_REPORT_CHUNKS`,
    :data:`MAX_REPORT_CHARS`).
    """
    return report_chunks(text, min_chars)[0]


@PIPELINES.register("text")
class TextPipeline(ModalityPipeline):
    """Report text: frozen transformer embeddings (cached on disk), or token ids for fine-tuning.

    Reports are cut into chunks -- sentences by default (``data.text_chunking``), or overlapping
    token windows -- and each chunk is embedded. Pooling the chunk embeddings keeps the few
    sentences that carry prognosis (grade, margins, nodes) from being diluted by boilerplate, and
    sentence-level chunks are what explanations highlight. The pooled (or per-chunk) embeddings are
    standardised with the training fold's mean and standard deviation.
    A patient whose report text is empty counts as missing the modality.

    ``data.text_features`` chooses what a pooled encoder (``text_mlp``) and the report's linear
    member see: ``"embedding"`` (the above), ``"lexical"`` (TF-IDF of the negation-marked words
    and word pairs of the report's sentences, :mod:`multimodal.data.lexical`, fitted on the
    training reports; no transformer model is loaded) or ``"both"`` (the standardised pooled
    embedding, then the lexical features). The lexical features read the same sentences the
    embeddings do (:func:`report_chunks`, one per line), so a report without sentence j has
    exactly the terms of the report less those of sentence j. The dense store's
    :class:`~multimodal.types.InputSpec` names its columns (``feature_names``: the terms, after
    ``embedding_<i>`` for ``"both"``) and, for ``"both"``, records the split as
    ``groups``/``group_names`` (``["embedding", "lexical"]``). Token and tokenized encoders
    (``text_chunks``, ``text_transformer``) take sentence embeddings or tokens only.
    """

    kind = "text"
    TOKEN_ENCODERS: ClassVar[set[str]] = {"text_chunks"}
    TOKENIZED_ENCODERS: ClassVar[set[str]] = {"text_transformer"}

    def _embedder(self):
        from multimodal.encoders.text import TextEmbedder

        key = f"text-embedder:{self.ctx.text_model}:{self.ctx.text_max_length}"
        if key not in self.ctx.memo:
            cache = self.ctx.cache_dir or default_cache_dir()
            self.ctx.memo[key] = TextEmbedder(
                self.ctx.text_model, max_length=self.ctx.text_max_length, cache_dir=cache / "text"
            )
        return self.ctx.memo[key]

    @staticmethod
    def _texts(source: Any) -> pd.Series:
        texts = source.texts()
        return texts[texts.fillna("").astype(str).str.strip().str.len() > 0]

    def _chunk_embeddings(self, texts: list[str], ids: list[str]) -> list[np.ndarray]:
        """(n_chunks, dim) per text; ``ids`` are the patients (named when a report is cut)."""
        embedder = self._embedder()
        if self.ctx.text_chunking == "tokens":
            kept = [self._within_limits(t, pid) for t, pid in zip(texts, ids, strict=True)]
            return [np.asarray(c, dtype=np.float32) for c in embedder.embed_chunks(kept)]
        sentences = []
        for text, pid in zip(texts, ids, strict=True):
            chunks, cut = report_chunks(text)
            if cut:
                self._warn_cut(pid, text, chunks)
            sentences.append(chunks)
        flat = list(dict.fromkeys(s for ss in sentences for s in ss))  # unique, order kept
        memo_key = "text-sentences"
        cache: dict[str, np.ndarray] = self.ctx.memo.setdefault(memo_key, {})
        todo = [s for s in flat if s not in cache]
        if todo:
            for s, e in zip(todo, embedder.embed(todo)):
                cache[s] = np.asarray(e, dtype=np.float32)
        return [np.stack([cache[s] for s in ss]) for ss in sentences]

    def _within_limits(self, text: str, pid: str) -> str:
        """``text`` cut at whitespace to :data:`MAX_REPORT_CHARS` (token-window chunking)."""
        if len(text) <= MAX_REPORT_CHARS:
            return text
        kept = next(_pieces(str(text).strip(), MAX_REPORT_CHARS))
        self._warn_cut(pid, text, [kept])
        return kept

    def _warn_cut(self, pid: str, text: str, kept: list[str]) -> None:
        """One warning per patient and run: the report is longer than the limits allow."""
        warned: set[str] = self.ctx.memo.setdefault("text-cut-warned", set())
        if pid in warned:
            return
        warned.add(pid)
        log.warning(
            "patient %s: the report has %s characters; only its first %s characters are embedded "
            "(limits per report: %s characters, %d sentences of at most %d characters)",
            pid,
            f"{len(str(text)):,}",
            f"{sum(map(len, kept)):,}",
            f"{MAX_REPORT_CHARS:,}",
            MAX_REPORT_CHUNKS,
            MAX_SENTENCE_CHARS,
        )

    @property
    def text_features(self) -> str:
        """``"embedding"``, ``"lexical"`` or ``"both"``: fitted or loaded, else the context's."""
        return self.__dict__.get("features_") or self.ctx.text_features

    @property
    def n_terms(self) -> int:
        """Lexical feature columns (the last ones of the dense store); 0 without lexical features."""
        vectorizer = getattr(self, "vectorizer_", None)
        return 0 if vectorizer is None else vectorizer.n_terms

    def _check_features(self, modality: str) -> str:
        features = self.ctx.text_features
        if features not in TEXT_FEATURES:
            raise ConfigError(
                f"data.text_features is {features!r}; choose one of {list(TEXT_FEATURES)}"
            )
        if features != "embedding" and self.encoder in self.TOKEN_ENCODERS:
            reads = "sentence embeddings one by one"
        elif features != "embedding" and self.encoder in self.TOKENIZED_ENCODERS:
            reads = "the tokenized report"
        else:
            return features
        raise ConfigError(
            f"data.text_features={features!r} gives one feature vector per report, but the "
            f"encoder {self.encoder!r} of text modality {modality!r} reads {reads}. Use the "
            "text_mlp encoder (or a linear member) with lexical features, or set "
            "data.text_features=embedding"
        )

    def fit(self, source: Any, train_ids: list[str]) -> TextPipeline:
        self.features_ = self._check_features(getattr(source, "name", self.kind))
        self.vectorizer_ = None
        if self.encoder in self.TOKENIZED_ENCODERS:
            return self
        texts = self._texts(source)
        chosen = [i for i in train_ids if i in texts.index]
        if self.features_ != "embedding":
            self._fit_lexical(source, [texts[i] for i in chosen], chosen)
        if not chosen or self.features_ == "lexical":
            self.mean_ = self.std_ = None
            return self
        chunks = self._chunk_embeddings([texts[i] for i in chosen], chosen)
        rows = (
            np.concatenate(chunks)
            if self.encoder in self.TOKEN_ENCODERS
            else np.stack([c.mean(0) for c in chunks])
        )
        self.mean_ = rows.mean(0)
        self.std_ = np.maximum(rows.std(0), 1e-6)
        return self

    def _fit_lexical(self, source: Any, texts: list[str], ids: list[str]) -> None:
        """Fit the lexical vocabulary, idf and z-scores on the training reports ``texts``."""
        vectorizer = LexicalVectorizer(
            min_df=LEXICAL_MIN_DF,
            max_terms=self.ctx.text_max_terms,
            scaling=self.ctx.text_term_scaling,
        )
        try:
            self.vectorizer_ = vectorizer.fit_counts(self._term_counts(texts, ids))
        except ValueError:
            name = getattr(source, "name", self.kind)
            raise DataError(
                f"text modality {name!r}: lexical features (data.text_features="
                f"{self.features_!r}) cannot be fitted on the {len(texts)} training report(s) "
                f"of this fold: no term occurs in at least {LEXICAL_MIN_DF} of them (and varies "
                "between them). Use data.text_features=embedding for so few reports"
            ) from None

    def _term_counts(self, texts: list[str], ids: list[str]) -> list[Counter[str]]:
        """Lexical term counts of each report: the sum over its sentences (memoised per run)."""
        memo: dict[str, Counter[str]] = self.ctx.memo.setdefault("text-lexical-sentences", {})
        out = []
        for text, pid in zip(texts, ids, strict=True):
            chunks, cut = report_chunks(text)
            if cut:
                self._warn_cut(pid, text, chunks)
            total: Counter[str] = Counter()
            for chunk in chunks:
                if chunk not in memo:
                    memo[chunk] = term_counts(chunk)
                total.update(memo[chunk])
            out.append(total)
        return out

    def lexical_features(self, texts: list[str]) -> np.ndarray:
        """(n, n_terms) float32 lexical features of ``texts`` as the pipeline computes them
        (through :func:`report_chunks`); an empty text is a report with none of the terms.

        Raises
        ------
        RuntimeError : the pipeline has no lexical features (``text_features="embedding"``).
        """
        if getattr(self, "vectorizer_", None) is None:
            raise RuntimeError("this text pipeline has no lexical features")
        ids = [f"text {i}" for i in range(len(texts))]
        counts = [
            self._term_counts([t], [i])[0] if str(t).strip() else Counter()
            for t, i in zip(texts, ids, strict=True)
        ]
        return self.vectorizer_.transform_counts(counts)

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        if getattr(self, "mean_", None) is None:
            return x
        return ((x - self.mean_) / self.std_).astype(np.float32)

    def transform(self, source: Any, ids: list[str]) -> ModalityStore:
        texts = self._texts(source)
        present = _present(texts.index, ids)
        chosen = [i for i, p in zip(ids, present) if p]
        if self.encoder in self.TOKENIZED_ENCODERS:
            return self._tokenized(texts, ids, chosen, present)
        features = self.text_features
        if features == "embedding":
            return self._embedding_store(texts, ids, chosen, present)
        lexical = np.zeros((len(ids), self.n_terms), dtype=np.float32)
        if chosen:
            counts = self._term_counts([texts[i] for i in chosen], chosen)
            lexical[present] = self.vectorizer_.transform_counts(counts)
        names = list(self.vectorizer_.terms_)
        if features == "lexical":
            spec = InputSpec(kind="text", in_features=self.n_terms, feature_names=names)
            return DenseStore(spec=spec, present=present, values=torch.from_numpy(lexical))
        embedding = self._embedding_store(texts, ids, chosen, present).values.numpy()
        dim = embedding.shape[1]
        spec = InputSpec(
            kind="text",
            in_features=dim + self.n_terms,
            feature_names=[f"embedding_{j}" for j in range(dim)] + names,
            groups=[list(range(dim)), list(range(dim, dim + self.n_terms))],
            group_names=["embedding", "lexical"],
        )
        x = np.concatenate([embedding, lexical], axis=1)
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def _embedding_store(
        self, texts: pd.Series, ids: list[str], chosen: list[str], present: np.ndarray
    ) -> DenseStore | TokenStore:
        """Standardised sentence embeddings: pooled (dense) or one token per chunk."""
        dim = int(self._embedder().dim)
        chunks = (
            dict(zip(chosen, self._chunk_embeddings([texts[i] for i in chosen], chosen)))
            if chosen
            else {}
        )
        if self.encoder in self.TOKEN_ENCODERS:
            values = [
                torch.from_numpy(self._standardise(chunks[i]))
                if i in chunks
                else torch.zeros(0, dim)
                for i in ids
            ]
            spec = InputSpec(kind="text", in_features=dim, tokens=True)
            return TokenStore(spec=spec, present=present, values=values)
        x = np.zeros((len(ids), dim), dtype=np.float32)
        if chosen:
            x[present] = self._standardise(np.stack([chunks[i].mean(0) for i in chosen]))
        spec = InputSpec(kind="text", in_features=dim)
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def _tokenized(
        self, texts: pd.Series, ids: list[str], chosen: list[str], present: np.ndarray
    ) -> DictStore:
        from multimodal.encoders.text import TextTokenizer

        tok = TextTokenizer(self.ctx.text_model, max_length=self.ctx.text_max_length)
        enc = tok([texts[i] for i in chosen] or [""])
        length = enc["input_ids"].shape[1]
        values = {
            "input_ids": torch.zeros(len(ids), length, dtype=torch.long),
            "attention_mask": torch.zeros(len(ids), length, dtype=torch.long),
        }
        values["attention_mask"][:, 0] = 1  # placeholder rows stay finite; masked out downstream
        rows = torch.from_numpy(np.flatnonzero(present))
        if len(rows):
            values["input_ids"][rows] = enc["input_ids"]
            values["attention_mask"][rows] = enc["attention_mask"]
        return DictStore(spec=InputSpec(kind="text"), present=present, values=values)

    def state(self) -> dict[str, Any]:
        mean = getattr(self, "mean_", None)
        vectorizer = getattr(self, "vectorizer_", None)
        out = {
            "text_model": self.ctx.text_model,
            "max_length": self.ctx.text_max_length,
            "chunking": self.ctx.text_chunking,
            "mean": None if mean is None else mean.tolist(),
            "std": None if mean is None else self.std_.tolist(),
            "features": self.text_features,
        }
        if vectorizer is not None:
            out["lexical"] = vectorizer.state()
        return out

    def load_state(self, state: dict[str, Any]) -> TextPipeline:
        """Restore :meth:`state`; a state saved before lexical features means ``"embedding"``."""
        self.ctx.text_chunking = state.get("chunking", self.ctx.text_chunking)
        self.mean_, self.std_ = _saved_stats(state, np.float32)
        self.features_ = state.get("features", "embedding")
        if self.features_ not in TEXT_FEATURES:
            raise ValueError(f"text features {self.features_!r} are not one of {TEXT_FEATURES}")
        self.vectorizer_ = None
        if self.features_ != "embedding":
            if not isinstance(state.get("lexical"), dict):
                raise ValueError(f"{self.features_!r} text features without a lexical vocabulary")
            self.vectorizer_ = LexicalVectorizer.from_state(state["lexical"])
        return self
