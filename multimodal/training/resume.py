"""Resuming an interrupted run: the training state of a fold, and when a run folder may resume.

``checkpoints/fold_<k>.safetensors`` (:meth:`RunFolder.checkpoint_path`) holds everything needed
to continue a fold exactly: model and optimiser state, the best state so far, early-stopping
counters, the history and every RNG state -- tensors in safetensors, everything else as JSON in
the file's metadata, written atomically as one file. Nothing in it can run code. A ``.pt``
checkpoint of an earlier release is read with ``torch.load(weights_only=True)``, which refuses
anything but tensors and plain containers: a planted pickle is refused, never run. A run folder
only resumes under the config it was written with (:func:`config_fingerprint`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from multimodal.exceptions import ConfigError
from multimodal.runfolder import json_default

__all__ = ["TrainingState", "check_resumable", "config_fingerprint"]

log = logging.getLogger(__name__)

#: Config keys that do not change results (how to run, which folds, where things are).
_NOT_FINGERPRINTED = (
    ("train", "resume"),
    ("train", "progress"),
    ("train", "checkpoint_every"),
    ("train", "train_c_index"),  # an observation: adds a history column, changes no result
    # threads change only the last bits of floating-point sums: a run may resume on another
    # machine
    ("train", "threads"),
    ("data", "fold_indices"),
    ("data", "cohort"),
    ("data", "cache_dir"),
    ("eval", "bootstrap"),
)


#: Config keys added after run folders began to store fingerprints, with the value that keeps
#: the behaviour from before the key existed. At that value a key is left out of the hash, so a
#: run written by an earlier release still resumes; any other value is a new experiment. A new
#: key belongs here (its neutral value) or in ``_NOT_FINGERPRINTED``; a test checks this against
#: the keys of release 6f25a98 (tests/training/test_fingerprint_compat.py). Never change a
#: neutral value, nor the default of another key: either would let a run resume under other
#: settings.
_ADDED_KEYS: dict[tuple[str, str], Any] = {
    ("members", "min_events"): 0,
    ("members", "stack_penalty"): 0.0,
    ("members", "stack_penalties"): [0.0, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0],
    ("data", "text_term_scaling"): "term",
    ("members", "stack_min_lr"): 0.0,
    ("members", "stack_repeats"): 1,
    ("members", "tree_selection"): "cox_score",
    ("members", "stack_fallback"): False,
    ("members", "column_blocks"): {},
    ("data", "genomics_types"): [],
    ("data", "genomics_transform"): "none",
    ("data", "genomics_clip"): None,
    ("data", "clinical_numeric"): None,
    ("data", "clinical_categorical"): None,
    ("members", "interaction_form"): "components",
    ("members", "interaction_l1_ratio"): 0.5,
    ("members", "elastic_net"): {},
    ("members", "elastic_net_beside"): False,
    ("members", "penalty_choice"): "pooled",
}


def config_fingerprint(cfg: Any) -> str:
    """Hash of everything in the config that changes results (not resume/progress/which folds;
    keys added later at their neutral value, :data:`_ADDED_KEYS`, are left out)."""
    d = cfg.to_dict()
    for section, key in _NOT_FINGERPRINTED:
        d.get(section, {}).pop(key, None)
    for (section, key), neutral in _ADDED_KEYS.items():
        block = d.get(section, {})
        if key in block and block[key] == neutral:
            del block[key]
    d.pop("out", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_resumable(path: Path, found: str | None, expected: str) -> None:
    """Refuse to resume from ``path`` when it was written under another config."""
    if found is not None and found != expected:
        raise ConfigError(
            f"{path} was written with a different config; resuming would mix two experiments. "
            "Use a new output folder (--out / out=), delete that one, or restore the original "
            "config (train.resume=false retrains from scratch into the same folder)."
        )


@dataclass
class TrainingState:
    """Everything :func:`multimodal.training.loop.fit` needs to continue a fold exactly."""

    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    rng: dict[str, Any]
    torch_rng: torch.Tensor
    cuda_rng: list[torch.Tensor] | None
    history: list[dict[str, Any]]
    best: dict[str, Any]
    epoch: int
    config_fingerprint: str | None = None

    @classmethod
    def capture(
        cls,
        model: torch.nn.Module,
        opt: torch.optim.Optimizer,
        rng: np.random.Generator,
        history: list[dict[str, Any]],
        best: dict[str, Any],
        epoch: int,
        fingerprint: str,
    ) -> TrainingState:
        return cls(
            model=model.state_dict(),
            optimizer=opt.state_dict(),
            rng=rng.bit_generator.state,
            torch_rng=torch.get_rng_state(),
            cuda_rng=torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            history=history,
            best=best,
            epoch=epoch,
            config_fingerprint=fingerprint,
        )

    def save(self, path: Path) -> None:
        """Write atomically as one safetensors file: tensors, and the rest as JSON metadata."""
        from safetensors.torch import save

        tensors: dict[str, torch.Tensor] = {}
        meta = {
            "epoch": self.epoch,
            "config_fingerprint": self.config_fingerprint,
            "history": self.history,
            "rng": self.rng,
            "best": {k: v for k, v in self.best.items() if k != "state"},
            "has_best_state": self.best.get("state") is not None,
            "optimizer": _split_tensors(self.optimizer, "optimizer", tensors),
            "n_cuda_rng": len(self.cuda_rng or []),
        }
        for name, t in self.model.items():
            tensors[f"model.{name}"] = t
        for name, t in (self.best.get("state") or {}).items():
            tensors[f"best.{name}"] = t
        tensors["rng.torch"] = self.torch_rng
        for i, t in enumerate(self.cuda_rng or []):
            tensors[f"rng.cuda.{i}"] = t
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        data = save(tensors, metadata={"training_state": json.dumps(meta, default=json_default)})
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TrainingState | None:
        """The state saved at ``path``; None when there is none or it cannot be read (the fold
        then restarts from scratch, with a warning). A ``.pt`` file of an earlier release beside
        it is read with ``weights_only=True``: a pickle that holds code is refused."""
        legacy = path.with_suffix(".pt")
        if not path.is_file() and legacy.is_file():
            return cls._load_legacy(legacy)
        if not path.is_file():
            return None
        try:
            return cls._from_safetensors(path)
        except Exception as exc:  # truncated or not ours
            log.warning(
                "checkpoint %s is unreadable (%s); the fold restarts from scratch",
                path,
                str(exc).splitlines()[0][:200],
            )
            return None

    @classmethod
    def _from_safetensors(cls, path: Path) -> TrainingState:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = json.loads(f.metadata()["training_state"])
            tensors = {k: f.get_tensor(k) for k in f.keys()}

        def under(prefix: str) -> dict[str, torch.Tensor]:
            return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}

        best = dict(meta["best"])
        best["state"] = under("best.") if meta["has_best_state"] else None
        return cls(
            model=under("model."),
            optimizer=_join_tensors(meta["optimizer"], tensors),
            rng=meta["rng"],
            torch_rng=tensors["rng.torch"],
            cuda_rng=[tensors[f"rng.cuda.{i}"] for i in range(meta["n_cuda_rng"])] or None,
            history=meta["history"],
            best=best,
            epoch=int(meta["epoch"]),
            config_fingerprint=meta["config_fingerprint"],
        )

    @classmethod
    def _load_legacy(cls, path: Path) -> TrainingState | None:
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except Exception as exc:  # holds more than tensors and plain data, or truncated
            log.warning(
                "checkpoint %s was refused: it holds objects that are not tensors or plain data "
                "(a pickle that could run code) or is unreadable (%s); it was not loaded and the "
                "fold restarts from scratch",
                path,
                str(exc).splitlines()[0][:200],
            )
            return None

    def restore(
        self, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator
    ) -> tuple[list[dict[str, Any]], dict[str, Any], int]:
        """Load the state into ``model``, ``opt`` and ``rng``; returns (history, best, epoch)."""
        model.load_state_dict(self.model)
        opt.load_state_dict(self.optimizer)
        rng.bit_generator.state = self.rng
        torch.set_rng_state(self.torch_rng)
        if torch.cuda.is_available() and self.cuda_rng is not None:
            torch.cuda.set_rng_state_all(self.cuda_rng)
        return self.history, self.best, self.epoch


def _split_tensors(obj: Any, prefix: str, tensors: dict[str, torch.Tensor]) -> Any:
    """``obj`` (nested dicts/lists) with every tensor moved into ``tensors`` under a dotted key
    and replaced by ``{"__tensor__": key}``; dict keys keep their type via ``__keys__``."""
    if isinstance(obj, torch.Tensor):
        tensors[prefix] = obj
        return {"__tensor__": prefix}
    if isinstance(obj, dict):
        keys = list(obj)
        return {
            "__dict__": [
                _split_tensors(obj[k], f"{prefix}.{i}", tensors) for i, k in enumerate(keys)
            ],
            "__keys__": keys,
        }
    if isinstance(obj, (list, tuple)):
        return [_split_tensors(v, f"{prefix}.{i}", tensors) for i, v in enumerate(obj)]
    return obj


def _join_tensors(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """The inverse of :func:`_split_tensors`."""
    if isinstance(obj, dict) and "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if isinstance(obj, dict) and "__dict__" in obj:
        return {k: _join_tensors(v, tensors) for k, v in zip(obj["__keys__"], obj["__dict__"])}
    if isinstance(obj, list):
        return [_join_tensors(v, tensors) for v in obj]
    return obj
