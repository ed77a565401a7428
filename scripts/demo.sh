#!/usr/bin/env bash
# The main job on built-in data: set up .venv (if needed), synthesise a 500-patient multimodal
# cohort, validate it, train the fusion model and the single-modality models, compare them.
# Extra arguments go to `multimodal demo` (e.g. --out DIR, --n-patients N, --no-compare).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/multimodal demo "$@"
