#!/usr/bin/env bash
# Builds the runner's venv in .cache/venv from python/requirements.txt. Reuses it while the pins are unchanged:
# torch from PyPI on Linux is the CUDA build, several GB, so a rebuild is worth avoiding.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${KITTY_IMAGES_VENV:-.cache/venv}"
STAMP="$VENV/.requirements.sha256"
want="$(cat python/requirements.txt python/requirements-dev.txt python/requirements-nodeps.txt | sha256sum | cut -d' ' -f1)"
# CLIP's BPE vocabulary, for single-file checkpoints (they carry no tokenizer): the file open-clip-torch ships,
# taken from its wheel without installing the package (which would pull in torchvision and timm).
CLIP_VOCAB=".cache/clip/bpe_simple_vocab_16e6.txt.gz"
OPEN_CLIP="open_clip_torch==3.3.0"
fetch_clip_vocab() {
  [[ -s "$CLIP_VOCAB" ]] && return 0
  local wheels
  wheels="$(mktemp -d)"
  "$VENV/bin/python" -m pip download --quiet --no-deps --only-binary=:all: "$OPEN_CLIP" -d "$wheels" >&2
  mkdir -p "$(dirname "$CLIP_VOCAB")"
  "$VENV/bin/python" - "$wheels" "$CLIP_VOCAB" <<'PY'
import glob, hashlib, sys, zipfile
wheel = glob.glob(f"{sys.argv[1]}/open_clip_torch-*.whl")[0]
with zipfile.ZipFile(wheel) as archive:
    data = archive.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
# The same file OpenAI's CLIP repository ships; anything else would tokenize prompts differently.
expected = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
if hashlib.sha256(data).hexdigest() != expected:
    sys.exit(f"setup-python: {wheel} holds a different CLIP vocabulary (sha256 {hashlib.sha256(data).hexdigest()})")
with open(sys.argv[2] + ".partial", "wb") as out:
    out.write(data)
PY
  mv "$CLIP_VOCAB.partial" "$CLIP_VOCAB"
  rm -rf "$wheels"
}

if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  fetch_clip_vocab
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
"$VENV/bin/python" -m pip install --quiet --no-deps -r python/requirements-nodeps.txt >&2
echo "$want" > "$STAMP"
fetch_clip_vocab
