"""What a ``revise`` round adds to an answer, against blocking it: one toxic answer (a stub model that
echoes the request), judged by the real toxicity guard, then blocked, revised by a stub critic that
answers at once, or revised by llama.cpp's tiny model (SmolLM2-135M on the CPU); whole and streamed
(the stream's time is to its last event: the toxic answer is one window, so nothing goes out before the
revision). All in one run, through one gateway (``hhh serve``), sequential requests, so the rows compare.

    python -m tests.benchmarks.revise_latency [--requests 20] [--llama-requests 5]

The table goes to ``tests/benchmarks/results/revise_latency.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import yaml

from tests.benchmarks.proxy_overhead import command_line, machine
from tests.support.servers import LLAMA_ALIAS, gateway_process, llama_server, stub_upstream

RESULTS = Path(__file__).resolve().parent / "results" / "revise_latency.md"
TOXIC = "You are a fucking idiot and everyone hates you."
CASES = {  # model (routed to the stub, which echoes) → its output rule
    "stub-echo-blocked": {"guard": "toxicity", "action": "block"},
    "stub-echo-revised-stub": {
        "guard": "toxicity",
        "action": "revise",
        "revision": {"critic_model": "stub-critic"},
    },
    "stub-echo-revised-llama": {
        "guard": "toxicity",
        "action": "revise",
        "revision": {"critic_model": LLAMA_ALIAS, "max_tokens": 48, "timeout_ms": 120000},
    },
}
LABELS = {
    "stub-echo-blocked": "blocked (no revision)",
    "stub-echo-revised-stub": "revise, stub critic (instant)",
    "stub-echo-revised-llama": "revise, llama.cpp critic (SmolLM2-135M, CPU)",
}


def config(logs: Path, stub: str, llama: str) -> Path:
    models = [*CASES, "stub-critic"]
    settings = {
        "data_dir": str(logs / "data"),
        "feedback": {"record": False},
        "upstreams": [
            {"name": "llama", "url": llama, "supports_n": False, "supports_stream_usage": False},
            {"name": "stub", "url": stub, "models": models},
        ],
        "policies": {"models": {model: {"output": [rule]} for model, rule in CASES.items()}},
    }
    path = logs / "gateway.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def measure(
    client: httpx.Client, base: str, model: str, requests: int, stream: bool
) -> tuple[list[float], str]:
    """Wall times (ms) of ``requests`` sequential answers, after one warm-up, and the last outcome."""
    body = {"model": model, "messages": [{"role": "user", "content": TOXIC}], "max_tokens": 32}
    times, outcome = [], ""
    for index in range(requests + 1):
        started = time.perf_counter()
        response = client.post(f"{base}/chat/completions", json={**body, "stream": stream})
        elapsed = (time.perf_counter() - started) * 1000
        response.raise_for_status()
        if stream:
            last = [line for line in response.text.splitlines() if '"guardrails"' in line][-1]
            report = json.loads(last.removeprefix("data: "))["guardrails"]["output"][0]
        else:
            report = response.json()["guardrails"]["output"][0]
        outcome = "revised" if report.get("revised") else report["decision"]
        if index:
            times.append(elapsed)
    return times, outcome


def table(results: dict[tuple[str, bool], tuple[list[float], str]]) -> str:
    rows = [
        "| path | stream | requests | p50 ms | mean ms | added p50 ms vs blocked | outcome of the last |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for (model, stream), (times, outcome) in results.items():
        blocked = statistics.median(results[("stub-echo-blocked", stream)][0])
        p50 = statistics.median(times)
        added = "" if model == "stub-echo-blocked" else f"+{p50 - blocked:.1f}"
        mean = statistics.mean(times)
        rows.append(
            f"| {LABELS[model]} | {'yes' if stream else 'no'} | {len(times)} | {p50:.1f} | {mean:.1f} "
            f"| {added} | {outcome} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--llama-requests", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        logs = Path(tmp)
        llama = stack.enter_context(llama_server(logs))
        stub, _ = stack.enter_context(stub_upstream())
        base = stack.enter_context(gateway_process(config(logs, stub, llama), logs))
        with httpx.Client(timeout=300) as client:
            results = {
                (model, stream): measure(
                    client, base, model, args.llama_requests if "llama" in model else args.requests, stream
                )
                for stream in (False, True)
                for model in CASES
            }
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; one toxic answer "
        "(the embedded toxicity guard), sequential requests, one warm-up each; `max_tokens` 48 per critic "
        "call for llama.cpp.\n\n" + table(results) + "\n"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
