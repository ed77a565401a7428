"""Per-modality preprocessing fitted on training patients only, and the fold data it produces.

A :class:`ModalityPipeline` is fitted on the training patients of a fold (scalers, categorical
levels, feature selection) and then turns any set of patients into a :class:`ModalityStore`.
Fold-independent work -- text embeddings, image loading -- goes through a shared
:class:`PreprocessContext` so it is done once per run (and cached on disk across runs).
Each pipeline's state is JSON and is saved with the model, so a new cohort is transformed exactly
like the training data.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from multimodal.registry import Registry
from multimodal.survival.endpoints import get_endpoint
from multimodal.training.stores import DenseStore, DictStore, ModalityStore, TokenStore
from multimodal.types import Batch, InputSpec

__all__ = [
    "PIPELINES",
    "FoldData",
    "ModalityPipeline",
    "PreprocessContext",
    "build_fold_data",
    "default_cache_dir",
]

log = logging.getLogger(__name__)

PIPELINES: Registry[type[ModalityPipeline]] = Registry("modality pipeline")


@dataclass
class PreprocessContext:
    """Run-wide caches shared by the folds (and settings every pipeline may need)."""

    cache_dir: Path | None = None
    text_model: str | None = None
    text_max_length: int = 256
    text_chunking: str = "sentences"
    image_size: int = 32
    image_intensity: Any = "scale"
    genomics_max_features: int | None = None
    frozen_image_encoder: dict[str, Any] | None = None
    memo: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> PreprocessContext:
        """Settings from a :class:`multimodal.config.Config`'s ``data`` block."""
        d = cfg.data
        return cls(
            cache_dir=Path(d.cache_dir) if d.cache_dir else None,
            text_model=d.text_model,
            text_max_length=d.text_max_length,
            text_chunking=d.text_chunking,
            image_size=d.image_size,
            image_intensity=(
                d.image_intensity
                if isinstance(d.image_intensity, str)
                else [float(v) for v in d.image_intensity]
            ),
            genomics_max_features=d.genomics_max_features,
            frozen_image_encoder=(
                d.frozen_image_encoder.model_dump() if d.frozen_image_encoder else None
            ),
        )


class ModalityPipeline:
    """Fit on training patients, transform any patients into a store."""

    kind: ClassVar[str]

    def __init__(self, ctx: PreprocessContext, encoder: str) -> None:
        self.ctx, self.encoder = ctx, encoder

    def fit(self, source: Any, train_ids: list[str]) -> ModalityPipeline:
        return self

    def transform(self, source: Any, ids: list[str]) -> ModalityStore:  # pragma: no cover
        raise NotImplementedError

    def state(self) -> dict[str, Any]:
        return {}

    def load_state(self, state: dict[str, Any]) -> ModalityPipeline:
        return self


def _saved_stats(state: dict[str, Any], dtype) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The standardisation mean and SD a pipeline's ``state()`` saved; (None, None) if none."""
    if state.get("mean") is None:
        return None, None
    return np.asarray(state["mean"], dtype=dtype), np.asarray(state["std"], dtype=dtype)


def _training_range(
    rows: pd.DataFrame, columns: list[str]
) -> tuple[list[float | None], list[float | None]]:
    """Per column of ``rows``: the smallest and largest finite value (None when it has none)."""
    x = rows.reindex(columns=columns).apply(pd.to_numeric, errors="coerce").astype(np.float64)
    x = x.where(np.isfinite(x))
    low, high = x.min(), x.max()
    return (
        [None if pd.isna(v) else float(v) for v in low],
        [None if pd.isna(v) else float(v) for v in high],
    )


def _present(index: pd.Index, ids: list[str]) -> np.ndarray:
    return np.asarray(pd.Index(ids).isin(index), dtype=bool)


@PIPELINES.register("clinical")
class ClinicalPipeline(ModalityPipeline):
    kind = "clinical"

    def fit(self, source: Any, train_ids: list[str]) -> ClinicalPipeline:
        from multimodal.encoders.clinical import ClinicalPreprocessor

        rows = source.table.loc[source.table.index.intersection(train_ids)]
        self.prep = ClinicalPreprocessor(numeric=source.numeric, categorical=source.categorical)
        self.prep.fit(rows)
        return self

    def transform(self, source: Any, ids: list[str]) -> DictStore:
        present = _present(source.table.index, ids)
        arrays = self.prep.transform(source.table.reindex(ids))
        values = {k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()}
        spec = InputSpec(
            kind="clinical",
            n_numeric=self.prep.n_numeric,
            cardinalities=list(self.prep.cardinalities),
            feature_names=list(self.prep.feature_names),
        )
        return DictStore(spec=spec, present=present, values=values)

    def state(self) -> dict[str, Any]:
        return self.prep.state_dict()

    def load_state(self, state: dict[str, Any]) -> ClinicalPipeline:
        from multimodal.encoders.clinical import ClinicalPreprocessor

        self.prep = ClinicalPreprocessor.from_state(state)
        return self


@PIPELINES.register("genomics")
class GenomicsPipeline(ModalityPipeline):
    kind = "genomics"

    def fit(self, source: Any, train_ids: list[str]) -> GenomicsPipeline:
        from multimodal.encoders.genomics import GenomicsPreprocessor

        rows = source.table.loc[source.table.index.intersection(train_ids)]
        self.prep = GenomicsPreprocessor(
            max_features=self.ctx.genomics_max_features, groups=getattr(source, "groups", None)
        )
        self.prep.fit(rows)
        self.min_, self.max_ = _training_range(rows, self.prep.feature_names_)
        return self

    def transform(self, source: Any, ids: list[str]) -> DenseStore:
        present = _present(source.table.index, ids)
        x = np.asarray(self.prep.transform(source.table.reindex(ids)), dtype=np.float32)
        x[~present] = 0.0  # placeholder rows, masked out downstream
        x = np.nan_to_num(x, nan=0.0)
        groups = getattr(self.prep, "groups_", None) or None
        spec = InputSpec(
            kind="genomics",
            in_features=x.shape[1],
            groups=[list(map(int, g)) for g in groups.values()] if groups else None,
            group_names=list(groups) if groups else None,
            feature_names=list(self.prep.feature_names_),
        )
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def state(self) -> dict[str, Any]:
        """The preprocessor's state plus the training range (``min``/``max``, raw values of the
        selected features; None where a feature had no finite training value)."""
        state = self.prep.state_dict()
        if getattr(self, "min_", None) is not None:
            state.update(min=self.min_, max=self.max_)
        return state

    def load_state(self, state: dict[str, Any]) -> GenomicsPipeline:
        from multimodal.encoders.genomics import GenomicsPreprocessor

        self.prep = GenomicsPreprocessor.from_state(state)
        # the training range: absent from run folders saved before it was recorded
        self.min_, self.max_ = state.get("min"), state.get("max")
        return self


def default_cache_dir() -> Path:
    """``$MULTIMODAL_CACHE`` or ``~/.cache/multimodal``: text and frozen-image embeddings."""
    import os

    return Path(os.environ.get("MULTIMODAL_CACHE", Path.home() / ".cache" / "multimodal"))


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

    def fit(self, source: Any, train_ids: list[str]) -> TextPipeline:
        if self.encoder in self.TOKENIZED_ENCODERS:
            return self
        texts = self._texts(source)
        chosen = [i for i in train_ids if i in texts.index]
        if not chosen:
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
        return {
            "text_model": self.ctx.text_model,
            "max_length": self.ctx.text_max_length,
            "chunking": self.ctx.text_chunking,
            "mean": None if mean is None else mean.tolist(),
            "std": None if mean is None else self.std_.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> TextPipeline:
        self.ctx.text_chunking = state.get("chunking", self.ctx.text_chunking)
        self.mean_, self.std_ = _saved_stats(state, np.float32)
        return self


@PIPELINES.register("imaging")
class ImagingPipeline(ModalityPipeline):
    """Images loaded with MONAI transforms, resized to ``image_size`` and kept in memory.

    With the ``image_embedding`` encoder the images are instead embedded once by the frozen
    backbone ``data.frozen_image_encoder`` (embeddings cached on disk, keyed by the backbone's
    weights, the file and the settings) and only the small encoder over the embeddings trains.
    The embeddings are standardised with the training fold's mean and standard deviation: a
    frozen backbone's features come on an arbitrary scale (a random-init CNN's vary by about 1e-4
    around 0.07), which a ridge penalty or an MLP would otherwise treat as no signal at all.
    """

    kind = "imaging"
    FROZEN_ENCODERS: ClassVar[set[str]] = {"image_embedding"}

    def _paths(self, source: Any, ids: list[str]) -> tuple[np.ndarray, list[str]]:
        table = source.table
        present = _present(table.index, ids)
        # first image when a patient has several
        paths = [str(table.loc[[pid], "path"].iloc[0]) for pid, p in zip(ids, present) if p]
        return present, paths

    def fit(self, source: Any, train_ids: list[str]) -> ImagingPipeline:
        self.mean_ = self.std_ = None
        if self.encoder not in self.FROZEN_ENCODERS:
            return self
        store = self._embedded(source, list(train_ids))
        if store.present.any():
            # float64: the features' spread can be 1e-4 of their mean, below float32's resolution
            rows = store.values.numpy()[store.present].astype(np.float64)
            self.mean_ = rows.mean(0)
            self.std_ = np.maximum(rows.std(0), 1e-6 * max(float(np.abs(rows).max()), 1e-12))
        return self

    def transform(self, source: Any, ids: list[str]) -> DenseStore:
        if self.encoder in self.FROZEN_ENCODERS:
            store = self._embedded(source, ids)
            if getattr(self, "mean_", None) is not None:
                x = (store.values.numpy().astype(np.float64) - self.mean_) / self.std_
                x[~store.present] = 0.0  # placeholder rows, masked out downstream
                store.values = torch.from_numpy(x.astype(np.float32))
            return store
        dims, size = self._geometry(source)
        from multimodal.encoders.imaging import load_image

        present, paths = self._paths(source, ids)
        chosen = [pid for pid, p in zip(ids, present) if p]
        loaded = {}
        for pid, path in zip(chosen, paths):
            key = f"image:{path}:{size}:{self.ctx.image_intensity}"
            if key not in self.ctx.memo:
                self.ctx.memo[key] = _for_patient(
                    source,
                    pid,
                    lambda path=path: load_image(
                        path, spatial_dims=dims, image_size=size, normalize=self.ctx.image_intensity
                    ),
                )
            loaded[pid] = (path, self.ctx.memo[key])
        _check_same_shape(source, loaded, "image", "loads as (channels, *image_size)")
        images = [loaded[pid][1] if pid in loaded else None for pid in ids]
        ref = next((im for im in images if im is not None), torch.zeros(1, *size))
        values = torch.stack([im if im is not None else torch.zeros_like(ref) for im in images])
        spec = InputSpec(
            kind="imaging", spatial_dims=dims, in_channels=int(ref.shape[0]), image_size=size
        )
        return DenseStore(spec=spec, present=present, values=values.float())

    def _backbone(self, dims: int, size: tuple[int, ...]) -> torch.nn.Module:
        from multimodal.encoders import ENCODERS
        from multimodal.exceptions import ConfigError

        bb = self.ctx.frozen_image_encoder
        if not bb:
            raise ConfigError(
                "the image_embedding encoder needs a frozen backbone: set data.frozen_image_encoder, "
                "e.g. {name: resnet, out_dim: 64, options: {pretrained_path: weights.pt}}"
            )
        key = f"image-backbone:{bb}:{dims}:{size}"
        if key not in self.ctx.memo:
            spec = InputSpec(kind="imaging", spatial_dims=dims, in_channels=1, image_size=size)
            with torch.random.fork_rng():  # same weights every time without pretrained ones
                torch.manual_seed(0)
                net = ENCODERS.get(bb["name"]).from_spec(
                    spec, bb["out_dim"], **bb.get("options", {})
                )
            self.ctx.memo[key] = net.eval()
        return self.ctx.memo[key]

    def _geometry(self, source: Any) -> tuple[int, tuple[int, ...]]:
        dims = int(getattr(source, "spatial_dims", 3) or 3)
        return dims, (self.ctx.image_size,) * dims

    def _embedded(self, source: Any, ids: list[str]) -> DenseStore:
        """Frozen-backbone embeddings as stored (not standardised); zero rows where missing."""
        from multimodal.encoders.imaging import precompute_image_embeddings

        dims, size = self._geometry(source)
        present, paths = self._paths(source, ids)
        backbone = self._backbone(dims, size)
        # embeddings read once per run: fit and every fold's transforms reuse them (as the text
        # pipeline does its sentence embeddings)
        key = f"image-embeddings:{self.ctx.frozen_image_encoder}:{dims}:{size}"
        memo: dict[str, np.ndarray] = self.ctx.memo.setdefault(
            f"{key}:{self.ctx.image_intensity}", {}
        )
        todo = list(dict.fromkeys(p for p in paths if p not in memo))
        if todo:
            cache = (self.ctx.cache_dir or default_cache_dir()) / "images"
            owners = {p: pid for pid, p in zip([i for i, q in zip(ids, present) if q], paths)}
            emb = _for_patient(
                source,
                owners,
                lambda: precompute_image_embeddings(
                    backbone,
                    todo,
                    cache,
                    spatial_dims=dims,
                    image_size=size,
                    normalize=self.ctx.image_intensity,
                ),
            )
            memo.update(zip(todo, emb))
        x = np.zeros((len(ids), int(backbone.out_dim)), dtype=np.float32)
        if len(paths):
            x[present] = np.stack([memo[p] for p in paths])
        spec = InputSpec(kind="imaging", in_features=x.shape[1], spatial_dims=dims, image_size=size)
        return DenseStore(spec=spec, present=present, values=torch.from_numpy(x))

    def state(self) -> dict[str, Any]:
        return {
            "image_size": self.ctx.image_size,
            "image_intensity": self.ctx.image_intensity,
            "frozen_image_encoder": self.ctx.frozen_image_encoder,
            "mean": None if getattr(self, "mean_", None) is None else self.mean_.tolist(),
            "std": None if getattr(self, "mean_", None) is None else self.std_.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> ImagingPipeline:
        # runs saved before standardisation was added have no "mean": their embeddings stay raw
        self.mean_, self.std_ = _saved_stats(state, np.float64)
        return self


def _where(source: Any) -> str:
    """``images.csv column 'path' (modality 'ct')``: where a modality's files are named."""
    table = source.path.name if getattr(source, "path", None) is not None else "the index table"
    return f"{table} column 'path' (modality {source.name!r})"


def _for_patient(source: Any, owner: str | dict[str, str], load: Any) -> Any:
    """``load()``, with the table, column and patient added to a DataError about a file.

    ``owner`` is the patient, or a dict file path -> patient (the patient is found by the path
    the error names).
    """
    from multimodal.exceptions import DataError

    try:
        return load()
    except DataError as exc:
        text = str(exc)
        if isinstance(owner, dict):
            owner = next((pid for path, pid in owner.items() if path in text), None)
        if owner is None:
            raise
        raise DataError(f"{_where(source)}, patient {owner}: {text}") from None


def _check_same_shape(source: Any, loaded: dict[str, tuple[str, Any]], what: str, how: str) -> None:
    """One shape for every file of a modality (the most common one), else a DataError naming the
    first patient whose file differs."""
    from multimodal.exceptions import DataError

    shapes = {pid: tuple(x.shape) for pid, (_, x) in loaded.items()}
    if len(set(shapes.values())) < 2:
        return
    common = pd.Series([str(s) for s in shapes.values()]).mode().iloc[0]
    pid, shape = next((p, s) for p, s in shapes.items() if str(s) != common)
    raise DataError(
        f"{_where(source)}, patient {pid}: {what} {loaded[pid][0]} {how} {shape}, the modality's "
        f"other {what}s as {common}; give every patient {what}s with the same number of channels"
    )


@PIPELINES.register("feature_bag")
class FeatureBagPipeline(ModalityPipeline):
    """Bags of precomputed patch/slide features; several files per patient are concatenated."""

    kind = "feature_bag"

    def transform(self, source: Any, ids: list[str]) -> TokenStore:
        from multimodal.encoders.bags import load_feature_bag
        from multimodal.exceptions import DataError

        table = source.table
        by_patient = table.groupby("patient_id")["path"].apply(list).to_dict()
        present = np.asarray([i in by_patient for i in ids], dtype=bool)
        files: dict[tuple[str, str], torch.Tensor] = {}
        for pid in ids:
            for path in by_patient.get(pid, []):
                key = f"bag:{path}"
                if key not in self.ctx.memo:
                    self.ctx.memo[key] = _for_patient(
                        source, pid, lambda path=path: load_feature_bag(path).float()
                    )
                files[(pid, path)] = self.ctx.memo[key]
        # every bag of the modality (and of the training fold, for later transforms) has one D
        dims = {k: int(x.shape[1]) for k, x in files.items()}
        dim = getattr(self, "dim_", None) or (
            pd.Series(list(dims.values())).mode().iloc[0] if dims else None
        )
        bad = [(k, d) for k, d in dims.items() if d != dim]
        if bad:
            (pid, path), d = bad[0]
            more = f" (and {len(bad) - 1} more bag(s))" if len(bad) > 1 else ""
            raise DataError(
                f"{_where(source)}, patient {pid}: feature bag {path} has feature dimension {d} "
                f"(shape {tuple(files[(pid, path)].shape)}) but the modality's other bags have "
                f"{dim}{more}; every bag of a modality needs the same feature extractor"
            )
        self.dim_ = dim = int(dim or 1)
        bags = []
        for pid in ids:
            parts = [files[(pid, path)] for path in by_patient.get(pid, [])]
            bags.append(torch.cat(parts) if parts else None)
        bags = [b if b is not None else torch.zeros(0, dim) for b in bags]
        spec = InputSpec(kind="feature_bag", in_features=dim, tokens=True)
        return TokenStore(spec=spec, present=present, values=bags)


@dataclass
class FoldData:
    """Preprocessed patients of one split: outcomes plus one store per modality."""

    ids: list[str]
    time: np.ndarray
    event: np.ndarray
    stores: dict[str, ModalityStore]
    strata: np.ndarray | None = None
    outcomes: dict[str, np.ndarray] | None = None
    """Progression endpoints: ``os_time``, ``os_event``, ``pfs_time``, ``pfs_event`` and, for
    competing/multistate, ``event_type`` (see :mod:`multimodal.survival.endpoints`)."""

    def __len__(self) -> int:
        return len(self.ids)

    def specs(self) -> dict[str, InputSpec]:
        return {m: s.spec for m, s in self.stores.items()}

    def batch(self, idx: np.ndarray) -> Batch:
        idx = np.asarray(idx, dtype=np.int64)
        o = self.outcomes or {}
        return Batch(
            patient_id=[self.ids[i] for i in idx],
            time=torch.from_numpy(self.time[idx].astype(np.float32)),
            event=torch.from_numpy(self.event[idx].astype(bool)),
            inputs={m: s.batch(idx) for m, s in self.stores.items()},
            mask={m: s.mask(idx) for m, s in self.stores.items()},
            strata=None if self.strata is None else torch.from_numpy(self.strata[idx]),
            event_type=torch.from_numpy(o["event_type"][idx]) if "event_type" in o else None,
            pfs_time=(
                torch.from_numpy(o["pfs_time"][idx].astype(np.float32)) if "pfs_time" in o else None
            ),
            pfs_event=torch.from_numpy(o["pfs_event"][idx]) if "pfs_event" in o else None,
        )

    def targets(self, names: tuple[str, ...], idx: np.ndarray | None = None) -> dict[str, Any]:
        """The outcome arrays ``names`` (Batch field names) of rows ``idx`` (default: all)."""
        sel = slice(None) if idx is None else np.asarray(idx, dtype=np.int64)
        source = {"time": self.time, "event": self.event, **(self.outcomes or {})}
        missing = [n for n in names if n not in source and n not in ("time", "event")]
        if missing:
            raise ValueError(f"the fold data has no {missing}; is the endpoint right?")
        return {n: source[n][sel] for n in names}

    def batches(self, batch_size: int) -> list[np.ndarray]:
        n = len(self.ids)
        return [np.arange(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]

    def subset(self, idx: np.ndarray) -> FoldData:
        """Rows ``idx`` (e.g. the early-stopping part of a training fold)."""
        idx = np.asarray(idx, dtype=np.int64)
        stores = {}
        for m, s in self.stores.items():
            kw = {"spec": s.spec, "present": s.present[idx]}
            if isinstance(s, TokenStore):
                stores[m] = TokenStore(**kw, values=[s.values[i] for i in idx])
            elif isinstance(s, DictStore):
                stores[m] = DictStore(**kw, values={k: v[idx] for k, v in s.values.items()})
            else:
                stores[m] = DenseStore(**kw, values=s.values[torch.from_numpy(idx)])
        return FoldData(
            ids=[self.ids[i] for i in idx],
            time=self.time[idx],
            event=self.event[idx],
            stores=stores,
            strata=None if self.strata is None else self.strata[idx],
            outcomes=None
            if self.outcomes is None
            else {k: v[idx] for k, v in self.outcomes.items()},
        )


def build_fold_data(
    cohort: Any,
    ids: list[str],
    pipelines: dict[str, ModalityPipeline],
    endpoint: str = "os",
) -> FoldData:
    """Transform patients ``ids`` of ``cohort`` with fitted pipelines."""
    pt = cohort.patients.loc[ids]
    time, event, outcomes = get_endpoint(endpoint).outcome_arrays(pt)
    stores = {m: p.transform(cohort.sources[m], list(ids)) for m, p in pipelines.items()}
    return FoldData(ids=list(ids), time=time, event=event, stores=stores, outcomes=outcomes)
