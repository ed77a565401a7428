#!/usr/bin/env bash
# Install Debian's chromium for the dashboard's real-browser test (pytest marker `browser`).
# Idempotent: does nothing when /usr/bin/chromium is there. The test drives it with the Python
# `playwright` package (installed in .venv by scripts/setup.sh); `playwright install` is never
# run: no browser is downloaded from outside the distribution.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "[browser] chromium present: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)" >&2
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
    echo "[browser] chromium is missing and this user cannot install packages; run as root: apt-get install -y chromium" >&2
    exit 1
  fi
fi
echo "[browser] installing chromium (Debian package)" >&2
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null \
  || { $SUDO apt-get update >/dev/null && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null; }
echo "[browser] $(/usr/bin/chromium --version 2>/dev/null | head -n 1)" >&2
