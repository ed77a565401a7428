#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install multimodal into it.
#
#   bash scripts/setup.sh            # idempotent; fast when nothing changed
#
# torch is chosen for the machine before anything else is installed:
#   * an NVIDIA GPU (nvidia-smi lists one)  -> the CUDA build from PyPI
#   * otherwise                             -> the CPU build: a local wheel from pip's find-links
#                                              (or MULTIMODAL_TORCH_WHEELS) when there is one,
#                                              else the PyTorch CPU index (MULTIMODAL_TORCH_INDEX)
# The installed torch is then pinned as a constraint, so no dependency can swap in another build.
# Environment: PYTHON (interpreter, default python3), MULTIMODAL_VENV (default .venv),
#              MULTIMODAL_TORCH=cpu|cuda (override the detection).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV=${MULTIMODAL_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
log() { printf '[setup] %s\n' "$*" >&2; }

"$PYTHON" - <<'PY' || { echo "[setup] Python >= 3.10 is required (set PYTHON=/path/to/python3.x)" >&2; exit 1; }
import sys
sys.exit(0 if sys.version_info >= (3, 10) else 1)
PY

if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# Everything that decides what gets installed; when it has not changed, setup is a no-op.
stamp_src=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)
stamp_file="$VENV/.multimodal-setup"
if [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$stamp_src" ] && "$VPY" -c "import multimodal, torch" 2>/dev/null; then
  log "environment up to date ($VENV)"
  exit 0
fi

if [ ! -x "$VENV/bin/uv" ]; then
  log "installing uv into the environment"
  "$VPY" -m pip install --quiet --disable-pip-version-check uv
fi
UV=("$VENV/bin/uv" pip install --python "$VPY")

want=${MULTIMODAL_TORCH:-}
if [ -z "$want" ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then want=cuda; else want=cpu; fi
fi

# Folders of local wheels: ours, then pip's configured find-links (uv does not read pip's config).
find_links=()
for d in ${MULTIMODAL_TORCH_WHEELS:-} ${PIP_FIND_LINKS:-} $("$VPY" -m pip config get global.find-links 2>/dev/null || true); do
  [ -d "$d" ] && find_links+=(--find-links "$d")
done

need_torch=1
if "$VPY" -c "import torch" 2>/dev/null; then
  has_cuda=$("$VPY" -c "import torch; print(1 if torch.version.cuda else 0)")
  if [ "$want" = cpu ] || [ "$has_cuda" = 1 ]; then need_torch=0; fi
fi
if [ "$need_torch" = 1 ]; then
  if [ "$want" = cuda ]; then
    log "NVIDIA GPU found: installing the CUDA build of torch"
    "${UV[@]}" "torch>=2.2"
  else
    wheel=""
    for ((i = 1; i < ${#find_links[@]}; i += 2)); do
      cand=$(ls "${find_links[$i]}"/torch-*+cpu-*.whl 2>/dev/null | sort -V | tail -n 1 || true)
      [ -n "$cand" ] && wheel=$cand
    done
    if [ -n "$wheel" ]; then
      log "no GPU: installing the local CPU wheel $(basename "$wheel")"
      "${UV[@]}" "$wheel" numpy
    else
      index=${MULTIMODAL_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
      log "no GPU: installing the CPU build of torch from $index"
      "${UV[@]}" --index-url "$index" "torch>=2.2"
    fi
  fi
fi

torch_version=$("$VPY" -c "import torch; print(torch.__version__)")
pin="$VENV/torch-constraint.txt"
echo "torch==$torch_version" > "$pin"
log "torch $torch_version pinned; installing multimodal and its dependencies"
"${UV[@]}" "${find_links[@]}" -c constraints.txt -c "$pin" -e ".[all,dev]"
echo "$stamp_src" > "$stamp_file"
log "done: $("$VPY" -c 'import multimodal, torch; print("multimodal", multimodal.__version__, "| torch", torch.__version__, "| cuda", torch.cuda.is_available())')"
