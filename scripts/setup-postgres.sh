#!/usr/bin/env bash
# Postgres server binaries for the Postgres tests, from Debian's package (the tests start their own throwaway
# cluster from them; Debian's own cluster and service are not used). Never fails the setup: without Postgres
# those tests are skipped and say why.
set -uo pipefail

# Prints the bin folder holding postgres and initdb: KITTY_IMAGES_POSTGRES_BIN, else Debian's newest major.
find_bin() {
  local dir
  for dir in "${KITTY_IMAGES_POSTGRES_BIN:-}" $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    if [[ -n "$dir" && -x "$dir/postgres" && -x "$dir/initdb" ]]; then echo "$dir"; return 0; fi
  done
  return 1
}

report() {
  echo "setup-postgres: Postgres $("$1/postgres" --version | awk '{print $3}') binaries in $1" >&2
  # initdb and postgres refuse to run as root; the test helper runs them as Debian's postgres user.
  if [[ "$(id -u)" == "0" ]] && ! id -u postgres >/dev/null 2>&1; then
    echo "setup-postgres: running as root but there is no 'postgres' user to run the server as; the Postgres tests will be skipped" >&2
  fi
}

if bin=$(find_bin); then report "$bin"; exit 0; fi
if ! command -v apt-get >/dev/null; then
  echo "setup-postgres: no Postgres and no apt-get; the Postgres tests will be skipped (set KITTY_IMAGES_POSTGRES_BIN to a folder holding postgres and initdb)" >&2
  exit 0
fi
if [[ "$(id -u)" == "0" ]]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
  echo "setup-postgres: installing Postgres needs root (apt-get install postgresql); the Postgres tests will be skipped" >&2
  exit 0
fi
echo "setup-postgres: installing Debian's postgresql for the Postgres tests (once)" >&2
export DEBIAN_FRONTEND=noninteractive
install=("${SUDO[@]}" apt-get install -y -q --no-install-recommends postgresql)
if ! "${install[@]}" >/dev/null 2>&1; then
  "${SUDO[@]}" apt-get update -q >/dev/null 2>&1
  "${install[@]}" >/dev/null 2>&1 || echo "setup-postgres: apt-get could not install postgresql; the Postgres tests will be skipped" >&2
fi
if bin=$(find_bin); then report "$bin"; fi
exit 0
