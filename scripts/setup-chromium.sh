#!/usr/bin/env bash
# Chromium for the gallery's browser test, from Debian's package (playwright-core drives it; Playwright's own
# browser download cannot be reached here). Never fails the setup: without Chromium that one test is skipped and says why.
set -uo pipefail
for candidate in "${KITTY_IMAGES_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser /usr/bin/google-chrome; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then exit 0; fi
done
if ! command -v apt-get >/dev/null; then
  echo "setup-chromium: no Chromium and no apt-get; the browser test will be skipped (set KITTY_IMAGES_CHROMIUM to a Chromium or Chrome binary)" >&2
  exit 0
fi
if [[ "$(id -u)" == "0" ]]; then SUDO=(); elif sudo -n true 2>/dev/null; then SUDO=(sudo -n); else
  echo "setup-chromium: installing Chromium needs root (apt-get install chromium); the browser test will be skipped" >&2
  exit 0
fi
echo "setup-chromium: installing Debian's chromium for the gallery's browser test (once)" >&2
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y -q chromium >/dev/null 2>&1; then
  "${SUDO[@]}" apt-get update -q >/dev/null 2>&1
  "${SUDO[@]}" apt-get install -y -q chromium >/dev/null 2>&1 || echo "setup-chromium: apt-get could not install chromium; the browser test will be skipped" >&2
fi
exit 0
