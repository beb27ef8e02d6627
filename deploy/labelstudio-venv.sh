#!/usr/bin/env bash
# Label Studio itself (the server), in its own virtual environment: it pins versions of redis, openai,
# pytz and more that the gateway must not share. Idempotent; used by the test suite, and by anyone who
# wants a local Label Studio: .cache/label-studio-venv/bin/label-studio start
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="1.23.2"
VENV="${HHH_LABEL_STUDIO_VENV:-$ROOT/.cache/label-studio-venv}"
STAMP="$VENV/.hhh-label-studio-$VERSION"
if [[ -f "$STAMP" ]]; then
  exit 0
fi
echo "== installing Label Studio $VERSION into $VENV (about a minute, once)"
PYTHON="${PYTHON:-python3}"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "label-studio==$VERSION"
touch "$STAMP"
