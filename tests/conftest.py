"""Shared fixtures.

``shared_data`` points at ``../shared/data`` (real public data). Tests that need it skip cleanly when it
is absent, except under ``CI=true`` where a missing folder is an error: CI must run them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("MULTIMODAL_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _shared_or_skip() -> Path:
    if SHARED_DATA.is_dir():
        return SHARED_DATA
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but the shared data folder {SHARED_DATA} is missing")
    pytest.skip(f"shared data folder {SHARED_DATA} not present")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to ../shared/data; skips the test when absent (fails under CI=true)."""
    return _shared_or_skip()


@pytest.fixture(autouse=True)
def _quiet_threads(monkeypatch):
    # Keep each test on few threads: the CI machine has 2 cores.
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
