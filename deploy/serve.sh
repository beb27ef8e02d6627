#!/usr/bin/env bash
# Runs the gateway. With no upstream configured it starts an embedded llama.cpp server with a tiny
# model. Arguments go to `hhh serve` (try --help); HHH_UPSTREAM_URL points it at your own LLM server.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$ROOT/deploy/bootstrap.sh"
exec "${HHH_VENV:-$ROOT/.venv}/bin/hhh" serve "$@"
