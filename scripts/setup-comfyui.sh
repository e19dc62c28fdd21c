#!/usr/bin/env bash
# A real ComfyUI for test/comfyuiReal.test.ts (npm run test:comfyui sets it up and runs it): a writable copy of
# ../shared/comfyui/src in .cache/comfyui (ComfyUI writes beside itself) and a venv of its own, .cache/comfyui-venv,
# whose only torch is the runner's: a .pth puts .cache/venv's site-packages on its path, so torch is not downloaded
# a second time. Pinned; redone only when the source's version, the pins or the runner's venv change. Nothing to do
# without ../shared/comfyui (the test then skips).
set -euo pipefail
cd "$(dirname "$0")/.."
SOURCE="../shared/comfyui/src"
COPY="$PWD/.cache/comfyui"
VENV="$PWD/.cache/comfyui-venv"
RUNNER_VENV="$PWD/.cache/venv"
# PyPI has no torchvision built for torch 2.15; 0.29.2 without its deps imports and does what ComfyUI needs at start.
TORCHVISION="torchvision==0.29.2"
# src/requirements.txt less torch, torchvision and torchaudio (three audio node files then fail to import, with a
# warning; nothing else needs it) and less what the runner's venv already holds (numpy, transformers, tokenizers,
# safetensors, Pillow). The three ComfyUI packages are pinned by ComfyUI; the rest to what pip chose on 2026-12-02
# (for pyyaml, tqdm, psutil and pydantic that was the runner venv's own copy, so nothing is installed for them).
REQUIREMENTS=(
  comfyui-frontend-package==1.35.9 comfyui-workflow-templates==0.7.67 comfyui-embedded-docs==0.3.1
  torchsde==0.2.6 einops==0.8.2 aiohttp==3.14.5 yarl==1.25.1 pyyaml==6.0.4 scipy==1.17.1 tqdm==4.70.1
  psutil==7.2.2 alembic==1.20.1 SQLAlchemy==2.1.9 av==18.1.0 comfy-kitchen==0.2.40 sentencepiece==0.2.3
  kornia==0.9.0 spandrel==0.4.2 pydantic==2.14.4 pydantic-settings==2.16.3
)
# What those pulled in that the runner's venv does not hold, as pip chose it the same day.
LOCKED=(
  aiohappyeyeballs==2.7.1 aiosignal==1.4.0 frozenlist==1.8.0 multidict==7.2.1 propcache==0.5.4 Mako==1.4.3
  kornia_rs==0.2.0 python-dotenv==1.2.4 trampoline==0.1.2 comfyui-workflow-templates-core==0.3.74
  comfyui-workflow-templates-media-api==0.3.34 comfyui-workflow-templates-media-image==0.3.48
  comfyui-workflow-templates-media-other==0.3.65 comfyui-workflow-templates-media-video==0.3.30
)

if [[ ! -d "$SOURCE" ]]; then
  echo "setup-comfyui: no ComfyUI source at $(dirname "$PWD")/shared/comfyui/src; nothing to set up (the real ComfyUI test skips)" >&2
  exit 0
fi
if [[ ! -x "$RUNNER_VENV/bin/python" || ! -f "$RUNNER_VENV/.requirements.sha256" ]]; then
  echo "setup-comfyui: ComfyUI shares the runner's torch, and $RUNNER_VENV is not built yet: run bash scripts/setup-python.sh first" >&2
  exit 1
fi

version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$SOURCE/comfyui_version.py")"
if [[ ! -f "$COPY/main.py" || "$(cat "$COPY/.kitty-source-version" 2>/dev/null)" != "$version" ]]; then
  echo "setup-comfyui: copying ComfyUI $version from $SOURCE to $COPY" >&2
  rm -rf "$COPY" "$COPY.partial"
  cp -R "$SOURCE" "$COPY.partial"
  chmod -R u+w "$COPY.partial" # the shared source is read-only, and ComfyUI writes into its own tree
  echo "$version" > "$COPY.partial/.kitty-source-version"
  mv "$COPY.partial" "$COPY"
fi

STAMP="$VENV/.kitty-comfyui-requirements.sha256"
want="$(printf '%s\n' "$TORCHVISION" "${REQUIREMENTS[@]}" "${LOCKED[@]}" "$RUNNER_VENV" | cat - "$RUNNER_VENV/.requirements.sha256" | sha256sum | cut -d' ' -f1)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
echo "setup-comfyui: installing ComfyUI's Python packages into $VENV (torch shared with $RUNNER_VENV)" >&2
# Built by the runner venv's interpreter, so both venvs run the same Python and torch's compiled parts fit.
[[ -x "$VENV/bin/python" ]] || "$RUNNER_VENV/bin/python" -m venv "$VENV"
runner_site="$("$RUNNER_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
own_site="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"
echo "$runner_site" > "$own_site/kitty-runner-venv.pth"
pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --no-deps "$TORCHVISION" >&2
"${pip[@]}" "${REQUIREMENTS[@]}" "${LOCKED[@]}" >&2
"$VENV/bin/python" -c 'import torch, torchvision, aiohttp, comfy_kitchen' >&2
echo "$want" > "$STAMP"
