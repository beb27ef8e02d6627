#!/usr/bin/env bash
# The whole test suite: lint, types, the docs site, unit and integration tests (real llama.cpp, real sockets).
# Benchmarks are separate: see tests/benchmarks/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
"$ROOT/deploy/bootstrap.sh"
bin="${HHH_VENV:-$ROOT/.venv}/bin"
# The integration tests run a real Label Studio: it lives in a virtual environment of its own.
PYTHON="$bin/python" "$ROOT/deploy/labelstudio-venv.sh"
# The labelling view is tested in a real browser: Debian's Chromium and its driver (once; needs root).
"$ROOT/deploy/chromium.sh"

echo "== ruff"
"$bin/ruff" check .
"$bin/ruff" format --check .
echo "== mypy"
"$bin/mypy"
echo "== docs"
# The documentation site, built strictly: a broken link or anchor, or a page missing from the nav, fails.
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
"$bin/mkdocs" build --strict --site-dir "$site"  # not --quiet: it hides the warnings that strict fails on
rm -rf "$site"
trap - EXIT
echo "== pytest"
exec "$bin/pytest" "$@"
