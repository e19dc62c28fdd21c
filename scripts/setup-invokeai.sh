#!/usr/bin/env bash
# InvokeAI in a venv of its own (.cache/invokeai-venv), for the opt-in real InvokeAI test (npm run test:invokeai).
# Pinned; reinstalled only when the pin changes. torch comes from PyPI like the runner's (the pip cache is shared).
set -euo pipefail
cd "$(dirname "$0")/.."
INVOKEAI_VERSION="6.14.2"
VENV="$PWD/.cache/invokeai-venv"
STAMP="$VENV/.kitty-invokeai-version"
if [[ -x "$VENV/bin/invokeai-web" && -f "$STAMP" && "$(cat "$STAMP")" == "$INVOKEAI_VERSION" ]]; then
  exit 0
fi
PYTHON="${KITTY_IMAGES_INVOKEAI_BASE_PYTHON:-python3}"
echo "setup-invokeai: installing invokeai==$INVOKEAI_VERSION into $VENV (large; once)" >&2
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet "invokeai==$INVOKEAI_VERSION" >&2
echo "$INVOKEAI_VERSION" > "$STAMP"
