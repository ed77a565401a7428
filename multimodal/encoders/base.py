"""Encoder registry, the encoder base class and building blocks shared by the encoders.

Every encoder maps one modality's preprocessed input to a ``(B, out_dim)`` embedding or, when
``returns_tokens`` is True, to a :class:`~multimodal.types.TokenSet` ``(B, N, out_dim)``. Encoders are
built from the :class:`~multimodal.types.InputSpec` that preprocessing produced::

    enc = ENCODERS.get("snn").from_spec(spec, out_dim=32, hidden=(64,))
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from multimodal.exceptions import ConfigError
from multimodal.registry import Registry, did_you_mean
from multimodal.types import InputSpec, TokenSet

__all__ = [
    "ENCODERS",
    "ArrayCache",
    "Encoder",
    "GatedAttentionPool",
    "MLPEncoder",
    "check_options",
    "layer_dims",
    "load_pretrained",
    "load_state_dict_file",
    "make_mlp",
    "masked_mean",
    "masked_softmax",
    "set_requires_grad",
]

log = logging.getLogger(__name__)

#: Encoder classes by name (``"snn"``, ``"small_cnn"``, ``"attention_mil"``, ...).
ENCODERS: Registry[type[Encoder]] = Registry("encoder")


def check_options(cls: type, options: Mapping[str, Any], skip: Sequence[str] = ()) -> None:
    """Raise ``ConfigError`` (with "did you mean") for options that ``cls.__init__`` does not take."""
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    allowed = [n for n in params if n not in ("self", *skip)]
    for name in options:
        if name not in allowed:
            raise ConfigError(
                f"unknown option {name!r} for {cls.__name__}.{did_you_mean(name, allowed)} "
                f"Options: {', '.join(sorted(allowed))}"
            )


class Encoder(nn.Module):
    """Base class of the encoders.

    Attributes
    ----------
    out_dim : int
        Size of the embedding (or of each token when ``returns_tokens``).
    returns_tokens : bool
        True when ``forward`` returns a :class:`TokenSet` instead of a ``(B, out_dim)`` tensor.
    """

    returns_tokens: bool = False
    #: InputSpec fields passed to ``__init__`` by :meth:`from_spec` (spec field -> argument name).
    spec_fields: ClassVar[dict[str, str]] = {}
    out_dim: int

    @classmethod
    def from_spec(cls, spec: InputSpec, out_dim: int, **options: Any) -> Encoder:
        """Build the encoder for inputs described by ``spec``; ``options`` are ``__init__`` arguments."""
        kwargs: dict[str, Any] = {}
        for field_name, arg in cls.spec_fields.items():
            value = getattr(spec, field_name)
            if value is None:
                raise ConfigError(
                    f"{cls.__name__} needs InputSpec.{field_name} (modality kind {spec.kind!r}); "
                    "preprocessing did not provide it"
                )
            kwargs[arg] = value
        check_options(cls, options, skip=("out_dim", *kwargs))
        return cls(**kwargs, out_dim=int(out_dim), **options)


def layer_dims(in_features: int, hidden: int | Sequence[int], out_features: int) -> list[int]:
    """``[in, *hidden, out]``; a single int ``hidden`` (``hidden: 64`` in YAML) is one layer."""
    hidden = (hidden,) if isinstance(hidden, int) else hidden
    return [int(in_features), *map(int, hidden), int(out_features)]


def make_mlp(
    in_features: int,
    hidden: Sequence[int],
    out_features: int,
    dropout: float = 0.0,
    act: type[nn.Module] = nn.ReLU,
    final_act: bool = True,
) -> nn.Sequential:
    """Linear -> act -> dropout blocks; ``final_act`` adds act + dropout after the last layer too."""
    dims = layer_dims(in_features, hidden, out_features)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2 or final_act:
            layers.append(act())
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Softmax over ``dim`` restricted to ``mask``; exactly 0 at masked entries.

    A slice with no valid entry gets all-zero weights (not NaN).
    """
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    w = torch.softmax(scores, dim=dim) * mask.to(scores.dtype)
    return w / w.sum(dim=dim, keepdim=True).clamp_min(torch.finfo(scores.dtype).tiny)


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens`` (B, N, D) over valid tokens ``mask`` (B, N) -> (B, D); zeros for empty rows."""
    m = mask.to(tokens.dtype).unsqueeze(-1)
    tokens = tokens.masked_fill(m == 0, 0.0)  # padding may hold anything (even NaN)
    return (tokens * m).sum(1) / m.sum(1).clamp_min(1.0)


class GatedAttentionPool(nn.Module):
    """Gated attention pooling (Ilse et al., 2018): ``w = softmax(w^T (tanh(V h) * sigmoid(U h)))``.

    Parameters
    ----------
    in_features : token size D.
    hidden : size of the attention layer.
    dropout : dropout on the attention branch.
    """

    def __init__(self, in_features: int, hidden: int = 32, dropout: float = 0.0) -> None:
        super().__init__()
        self.V = nn.Linear(in_features, hidden)
        self.U = nn.Linear(in_features, hidden)
        self.w = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, tokens: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool ``tokens`` (B, N, D) with ``mask`` (B, N) -> ((B, D), weights (B, N)).

        Weights are 0 at padding and sum to 1 over valid tokens (all 0 for a row without any).
        """
        tokens = tokens.masked_fill(~mask.unsqueeze(-1), 0.0)
        a = self.dropout(torch.tanh(self.V(tokens)) * torch.sigmoid(self.U(tokens)))
        weights = masked_softmax(self.w(a).squeeze(-1), mask, dim=1)
        return torch.bmm(weights.unsqueeze(1), tokens).squeeze(1), weights


def as_token_set(x: TokenSet | torch.Tensor) -> TokenSet:
    """Accept a TokenSet or a dense (B, N, D) tensor (every token valid)."""
    if isinstance(x, TokenSet):
        return x
    if isinstance(x, torch.Tensor) and x.dim() == 3:
        return TokenSet(x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device))
    raise TypeError(f"expected a TokenSet or a (B, N, D) tensor, got {type(x).__name__}")


class MLPEncoder(Encoder):
    """MLP over a fixed-size vector (cached embeddings): (B, in_features) -> (B, out_dim).

    Parameters
    ----------
    in_features : input size.
    out_dim : embedding size.
    hidden : hidden layer sizes.
    dropout : dropout after each hidden layer (and on the input when ``input_dropout``).
    input_dropout : dropout applied to the input embedding.
    """

    spec_fields: ClassVar[dict[str, str]] = {"in_features": "in_features"}

    def __init__(
        self,
        in_features: int,
        out_dim: int = 32,
        hidden: Sequence[int] = (64,),
        dropout: float = 0.1,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_features, self.out_dim = int(in_features), int(out_dim)
        self.net = nn.Sequential(
            nn.Dropout(input_dropout), make_mlp(in_features, hidden, out_dim, dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, in_features) float -> (B, out_dim)."""
        return self.net(x.float())


def set_requires_grad(module: nn.Module, flag: bool) -> None:
    """Freeze (``flag=False``) or unfreeze every parameter of ``module``."""
    for p in module.parameters():
        p.requires_grad_(flag)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pt``/``.pth``/``.ckpt`` (torch) or ``.safetensors``.

    Checkpoints that wrap the weights (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"pretrained weights {path} not found; pass a local .pt/.pth/.safetensors file"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"cannot read pretrained weights {path}: {e}") from e
    for key in ("state_dict", "model", "model_state_dict", "network", "net"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ConfigError(
            f"pretrained weights {path} hold a {type(state).__name__}, not a state dict"
        )
    return {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


_PREFIXES = ("module.", "model.", "net.", "encoder.", "backbone.")


def _candidates(keys: list[str], target_prefix: str) -> list[dict[str, str]]:
    """Key renamings to try: as is, common prefixes stripped, ``target_prefix`` added."""
    out = [{k: k for k in keys}]
    for p in _PREFIXES:
        if any(k.startswith(p) for k in keys):
            out.append({k: k[len(p) :] if k.startswith(p) else k for k in keys})
    if target_prefix:
        out += [{k: target_prefix + v for k, v in c.items()} for c in list(out)]
    return out


def load_pretrained(module: nn.Module, path: str | Path, target_prefix: str = "") -> list[str]:
    """Load matching weights from ``path`` into ``module`` (non-strict); return the loaded keys.

    Keys are matched as they are, with common wrapper prefixes (``module.``, ``model.``, ...)
    stripped, or with ``target_prefix`` (the backbone's attribute name, e.g. ``"net."``) added;
    the renaming matching most keys wins. Tensors whose shape differs (a classifier layer of
    another size) are skipped. Raises ``ConfigError`` listing missing/unexpected keys when nothing
    matches.
    """
    state = load_state_dict_file(path)
    own = module.state_dict()
    best: dict[str, torch.Tensor] = {}
    for rename in _candidates(list(state), target_prefix):
        matched = {
            new: state[old]
            for old, new in rename.items()
            if new in own and tuple(own[new].shape) == tuple(state[old].shape)
        }
        if len(matched) > len(best):
            best = matched
    if not best:
        missing, unexpected = sorted(own)[:8], sorted(state)[:8]
        raise ConfigError(
            f"no weight in {path} matches {type(module).__name__}: expected keys like {missing}, "
            f"found {unexpected}. Check that the file holds weights of the same architecture."
        )
    module.load_state_dict(best, strict=False)
    skipped = sorted(set(own) - set(best))
    if skipped:
        log.info(
            "loaded %d tensors from %s; %d left at init: %s",
            len(best),
            path,
            len(skipped),
            skipped[:10],
        )
    return sorted(best)


class ArrayCache:
    """On-disk cache of float32 arrays: one ``<root>/<key[:2]>/<key>.npy`` per key.

    Writes are atomic (temporary file + rename), so concurrent writers of the same key are safe;
    an unreadable entry is reported and treated as absent.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        f = self.file(key)
        try:
            return np.load(f) if f.is_file() else None
        except (OSError, ValueError):
            log.warning("unreadable cache entry %s; recomputing", f)
            return None

    def put(self, key: str, value: np.ndarray) -> None:
        f = self.file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, np.asarray(value, dtype=np.float32))
        os.replace(tmp, f)
