#!/usr/bin/env bash
# The test suite: set up .venv (if needed), lint, then pytest. Extra arguments go to pytest
# (e.g. `bash scripts/test.sh -m slow`, `bash scripts/test.sh tests/survival -x`).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
