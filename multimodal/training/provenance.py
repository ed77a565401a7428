"""Provenance of a run: the code's git SHA and content hashes of the data it was trained on."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["data_fingerprint", "git_sha"]


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
