"""Run-folder I/O: resumable checkpoints, final weights, provenance.

- ``checkpoints/fold_<k>.pt``: everything needed to continue an interrupted fold exactly
  (model, optimiser, best state, early-stopping counters, history, RNG states).
- ``model/fold_<k>/``: the final model of a fold -- ``weights.safetensors``, ``model.json``
  (input specs, time grid), ``preprocess.json`` (fitted preprocessing state).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = [
    "atomic_write_text",
    "data_fingerprint",
    "git_sha",
    "load_checkpoint",
    "load_weights",
    "save_checkpoint",
    "save_weights",
]

log = logging.getLogger(__name__)


def atomic_write_text(path: Path, text: str) -> None:
    """Write via a temporary file + rename so a crash never leaves a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated checkpoint: start the fold again rather than crash
        log.warning("checkpoint %s is unreadable (%s); the fold restarts from scratch", path, exc)
        return None


def save_weights(model: torch.nn.Module, folder: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(folder / "weights.safetensors"))
    atomic_write_text(folder / "model.json", json.dumps(meta, indent=2))


def load_weights(model: torch.nn.Module, folder: Path) -> torch.nn.Module:
    from safetensors.torch import load_file

    state = load_file(str(folder / "weights.safetensors"))
    model.load_state_dict(state)
    return model


def git_sha(root: Path | None = None) -> str | None:
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def data_fingerprint(cohort: Any, modalities: list[str]) -> dict[str, str]:
    """Short content hashes of the patient table and each modality's table."""
    import pandas as pd

    def h(df: pd.DataFrame) -> str:
        values = pd.util.hash_pandas_object(df.reset_index(), index=False).to_numpy()
        return hashlib.sha256(np.ascontiguousarray(values).tobytes()).hexdigest()[:16]

    out = {"patients": h(cohort.patients)}
    for m in modalities:
        table = getattr(cohort.sources[m], "table", None)
        if table is not None:
            out[m] = h(table)
    return out
