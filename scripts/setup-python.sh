#!/usr/bin/env bash
# Builds the runner's venv in .cache/venv from python/requirements.txt. Reuses it while the pins are unchanged:
# torch from PyPI on Linux is the CUDA build, several GB, so a rebuild is worth avoiding.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KITTY_IMAGES_VENV:-.cache/venv}"
STAMP="$VENV/.requirements.sha256"
want="$(cat python/requirements.txt python/requirements-dev.txt | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
# The pins need Python 3.11+ (numpy 2.4); macOS's own python3 is older, so look for a newer one first.
if [[ -z "${PYTHON:-}" ]]; then
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [[ -z "${PYTHON:-}" ]] || ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)'; then
  echo "setup-python: need Python 3.11+ (python3 is $(python3 --version 2>&1)); install one (e.g. brew install python@3.12) or set PYTHON=/path/to/python3.11+" >&2
  exit 1
fi
echo "setup-python: installing the runner's Python packages into $VENV (torch is large; first run takes minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet -r python/requirements.txt -r python/requirements-dev.txt >&2
echo "$want" > "$STAMP"
