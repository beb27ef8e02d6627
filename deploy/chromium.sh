#!/usr/bin/env bash
# Debian's Chromium and its WebDriver, for the real-browser test of the labelling view
# (tests/integration/test_labelling_browser.py). Idempotent: apt runs only when either is missing.
# Needs root (or sudo) and Debian's package archive.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
if [[ "$(id -u)" -ne 0 ]]; then
  SUDO="sudo"
fi
echo "== installing Debian's chromium and chromium-driver (once)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver
