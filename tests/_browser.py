"""Debian's chromium for the browser tests (driven through playwright, headless; never
`playwright install`): its path, its flags, and the skip-or-fail rule (missing chromium skips,
except under CI=true, where `.ci/run` installs it with scripts/browser.sh)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_or_skip() -> None:
    """Skip the test when chromium is missing (fail under CI=true)."""
    if Path(CHROMIUM).exists():
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true but {CHROMIUM} is missing; scripts/browser.sh installs it")
    pytest.skip(f"{CHROMIUM} not installed (bash scripts/browser.sh)")
