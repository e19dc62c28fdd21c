#!/usr/bin/env bash
# Fills .cache/gpu-carry (git-ignored, ~7 MB) with what bench/gpu.py needs on a GPU machine that has no network
# but has its own python3 with torch and transformers (the device machines here): the diffusers wheel pinned in
# python/requirements.txt plus importlib_metadata (its one need such an image lacks), and a copy of
# ../shared/gpu/sdxl_bare_bench.py (../shared does not travel with the working tree). Run it here, where pip works;
# then carry .cache/gpu-carry. usage: bash bench/gpu-pack.sh [MORE_PINS...]  (e.g. transformers==5.24.0, should
# that machine's own be too old: bench/gpu.py says which import failed)
set -euo pipefail
cd "$(dirname "$0")/.."
CARRY=.cache/gpu-carry
mkdir -p "$CARRY"
install -m 0644 ../shared/gpu/sdxl_bare_bench.py "$CARRY/"
diffusers_pin="$(grep -E '^diffusers==' python/requirements.txt)"
rm -f "$CARRY"/*.whl
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$CARRY" "$diffusers_pin" importlib_metadata "$@"
ls -l "$CARRY" >&2
du -sh "$CARRY" >&2
