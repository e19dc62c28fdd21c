#!/usr/bin/env bash
# Runs the fast suite on Node MAJOR besides the Node that ran `npm test`: the project is copied to
# .cache/node/project-MAJOR and installed there, since npm packages are resolved per Node version.
#   usage: scripts/test-fast-on-node.sh MAJOR
set -euo pipefail
cd "$(dirname "$0")/.."
MAJOR="${1:?usage: scripts/test-fast-on-node.sh MAJOR}"
export PATH="$(bash scripts/fetch-node.sh "$MAJOR"):$PATH"
echo "test-fast-on-node: fast suite on Node $(node --version)" >&2

WORK="$PWD/.cache/node/project-$MAJOR"
mkdir -p "$WORK"
rm -rf "$WORK/src" "$WORK/test" "$WORK/web" "$WORK/dist" "$WORK/python" "$WORK/docs" "$WORK/scripts" "$WORK/bench" "$WORK/.ci"
cp -r src test web package.json package-lock.json tsconfig.json vitest.config.ts README.md docs scripts bench .ci "$WORK/"
# The runner's sources (the family table both sides read ships beside it; the docs test checks the paths the docs
# name), without the caches Python leaves beside them.
cp -r python "$WORK/"
find "$WORK/python" \( -name __pycache__ -o -name .pytest_cache \) -prune -exec rm -rf {} +
# The runner's venv, shared (npm test, or npm run setup, made it): the fast tier's uploads are decoded by its Pillow.
mkdir -p "$WORK/.cache"
ln -sfn "$PWD/.cache/venv" "$WORK/.cache/venv"
# And the CLIP vocabulary setup takes from the open-clip-torch wheel: prompts are counted in its tokens before queueing.
ln -sfn "$PWD/.cache/clip" "$WORK/.cache/clip"
cd "$WORK"
# Reinstall only when the lockfile or the Node version changed.
stamp="$(sha256sum < package-lock.json | cut -d' ' -f1)-$(node --version)"
if [[ ! -f node_modules/.kitty-stamp || "$(cat node_modules/.kitty-stamp)" != "$stamp" ]]; then
  npm ci --no-audit --no-fund --silent >&2
  echo "$stamp" > node_modules/.kitty-stamp
fi
node_modules/.bin/tsc -p tsconfig.json
node_modules/.bin/vitest run --project fast
