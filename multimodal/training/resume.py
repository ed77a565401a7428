"""Resuming an interrupted run: the training state of a fold, and when a run folder may resume.

``checkpoints/fold_<k>.pt`` (:meth:`RunFolder.checkpoint_path`) holds everything needed to
continue a fold exactly: model and optimiser state, the best state so far, early-stopping
counters, the history and every RNG state. It is loaded with ``torch.load(weights_only=True)``:
tensors and plain Python containers only, so a planted pickle cannot run code. A run folder only
resumes under the config it was written with (:func:`config_fingerprint`).
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

__all__ = ["TrainingState", "check_resumable", "config_fingerprint"]

log = logging.getLogger(__name__)

#: Config keys that do not change results (how to run, which folds, where things are).
_NOT_FINGERPRINTED = (
    ("train", "resume"),
    ("train", "progress"),
    ("data", "fold_indices"),
    ("data", "cohort"),
    ("data", "cache_dir"),
    ("eval", "bootstrap"),
)


def config_fingerprint(cfg: Any) -> str:
    """Hash of everything in the config that changes results (not resume/progress/which folds)."""
    d = cfg.to_dict()
    for section, key in _NOT_FINGERPRINTED:
        d.get(section, {}).pop(key, None)
    d.pop("out", None)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def check_resumable(path: Path, found: str | None, expected: str) -> None:
    """Refuse to resume from ``path`` when it was written under another config."""
    if found is not None and found != expected:
        raise ConfigError(
            f"{path} was written with a different config; resuming would mix two experiments. "
            "Use a new --out folder, delete that one, or restore the original config "
            "(train.resume=false retrains from scratch into the same folder)."
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
        """Write atomically (temporary file + rename)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(dict(self.__dict__), tmp)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> TrainingState | None:
        """The state saved at ``path``; None when there is none or it cannot be read (the fold
        then restarts from scratch, with a warning)."""
        if not path.is_file():
            return None
        try:
            raw = torch.load(path, map_location="cpu", weights_only=True)
            return cls(**{k: raw[k] for k in cls.__dataclass_fields__ if k in raw})
        except Exception as exc:  # truncated, or holds objects that are not plain data
            log.warning(
                "checkpoint %s is unreadable or holds more than tensors and plain data (%s); "
                "the fold restarts from scratch",
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
