#!/usr/bin/env bash
# Builds the MinIO server the tests run against into .cache/bin, from source with the Go toolchain
# (MinIO ships no Debian package, and no prebuilt binary can be downloaded here).
set -euo pipefail
cd "$(dirname "$0")/.."
# Pinned: MinIO tags are not semver, so the module proxy knows this build by its pseudo-version.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
BIN_DIR="$PWD/.cache/bin"
STAMP="$BIN_DIR/.minio-version"
if [[ -x "$BIN_DIR/minio" && -f "$STAMP" && "$(cat "$STAMP")" == "$MINIO_VERSION" ]]; then
  exit 0
fi
if ! command -v go >/dev/null; then
  echo "setup-minio: the tests need MinIO, built with Go; install Go 1.24+ or set KITTY_IMAGES_MINIO_BIN" >&2
  exit 1
fi
echo "setup-minio: building MinIO $MINIO_VERSION (a few minutes, once)" >&2
mkdir -p "$BIN_DIR"
GOBIN="$BIN_DIR" go install "github.com/minio/minio@$MINIO_VERSION" >&2
echo "$MINIO_VERSION" > "$STAMP"
