"""What best-of-4 costs against one answer, side by side in one run, through one gateway (``hhh serve``)
with the default guards both ways: the stub upstream (its scripted answers, at once) and llama.cpp's tiny
model (SmolLM2-135M on the CPU; it ignores ``n``, so best-of-4 is four concurrent calls), whole and
streamed. The reward model is all-MiniLM-L6-v2 with a politeness probe for a head
(``tests.support.reward_models``), on the CPU. Streams report the time to the first content token
(best-of-n sends nothing before the winner is chosen) and to the last event. The same model name is
served to two tenants, one whose policy has ``best_of_n``: the rows differ in that alone.

    python -m tests.benchmarks.best_of_n_latency [--requests 20] [--llama-requests 5]

The table goes to ``tests/benchmarks/results/best_of_n_latency.md``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import yaml

from gateway.auth import hash_key
from tests.benchmarks.proxy_overhead import command_line, machine
from tests.support.reward_models import build_polite_reward_model
from tests.support.servers import LLAMA_ALIAS, gateway_process, llama_server, stub_upstream

RESULTS = Path(__file__).resolve().parent / "results" / "best_of_n_latency.md"
KEYS = {"single": "bench-single-key", "best-of-4": "bench-best-key"}
MODELS = {"stub-best-of-n": "stub (scripted, instant)", LLAMA_ALIAS: "llama.cpp (SmolLM2-135M, CPU)"}
DEFAULT_RULES = {
    "input": [{"guard": "toxicity"}, {"guard": "pii", "action": "redact"}],
    "output": [{"guard": "toxicity"}, {"guard": "pii", "action": "redact"}],
}


def config(root: Path, stub: str, llama: str, reward_model: Path) -> Path:
    best = {**DEFAULT_RULES, "best_of_n": {"n": 4, "reward_model": str(reward_model), "temperature": 0.8}}
    settings = {
        "data_dir": str(root / "data"),
        "feedback": {"record": False},
        "auth": {"keys": [{"tenant": tenant, "sha256": hash_key(key)} for tenant, key in KEYS.items()]},
        "upstreams": [
            {"name": "llama", "url": llama, "supports_n": False, "supports_stream_usage": False},
            {"name": "stub", "url": stub, "models": ["stub-best-of-n"]},
        ],
        "policies": {"tenants": {"single": {"default": DEFAULT_RULES}, "best-of-4": {"default": best}}},
    }
    path = root / "gateway.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def _first_token_ms(response: httpx.Response, started: float) -> tuple[float | None, dict[str, Any]]:
    """Reads a stream to its end: the time to its first content, and its last event with a report."""
    first, report = None, {}
    for line in response.iter_lines():
        if not line.startswith("data: {"):
            continue
        event = json.loads(line.removeprefix("data: "))
        if first is None and any((c.get("delta") or {}).get("content") for c in event.get("choices") or ()):
            first = (time.perf_counter() - started) * 1000
        if "guardrails" in event:
            report = event["guardrails"]
    return first, report


def measure(
    client: httpx.Client, base: str, tenant: str, model: str, requests: int, stream: bool
) -> dict[str, Any]:
    """``requests`` sequential answers after one warm-up: wall times (ms), first-token times for
    streams, and what the last one chose."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Can you help me plan a picnic?"}],
        "max_tokens": 32,
        "stream": stream,
    }
    headers = {"authorization": f"Bearer {KEYS[tenant]}"}
    times, firsts, scoring, chosen = [], [], [], "-"
    for index in range(requests + 1):
        started = time.perf_counter()
        with client.stream("POST", f"{base}/chat/completions", json=body, headers=headers) as response:
            response.raise_for_status()
            if stream:
                first, report = _first_token_ms(response, started)
            else:
                first, report = None, json.loads(response.read())["guardrails"]
        elapsed = (time.perf_counter() - started) * 1000
        best = report["output"][0].get("best_of_n")
        if best is not None:
            rewards = [c.get("reward") for c in best["candidates"]]
            shown = ", ".join("-" if r is None else f"{r:.2f}" for r in rewards)
            chosen = f"#{best.get('chosen', '-')} of rewards [{shown}]"
        if index:
            times.append(elapsed)
            if first is not None:
                firsts.append(first)
            if best is not None:
                scoring.append(best["latency_ms"])
    return {"times": times, "firsts": firsts, "scoring": scoring, "chosen": chosen}


def table(results: dict[tuple[str, bool, str], dict[str, Any]]) -> str:
    rows = [
        "| upstream | stream | policy | requests | p50 ms | mean ms | p50 first token ms "
        "| x one answer (p50) | p50 reward scoring ms | last pick |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for (model, stream, tenant), found in results.items():
        p50 = statistics.median(found["times"])
        single = statistics.median(results[(model, stream, "single")]["times"])
        first = f"{statistics.median(found['firsts']):.1f}" if found["firsts"] else ""
        ratio = "" if tenant == "single" else f"{p50 / single:.2f}"
        scoring = f"{statistics.median(found['scoring']):.1f}" if found["scoring"] else ""
        rows.append(
            f"| {MODELS[model]} | {'yes' if stream else 'no'} | {tenant} | {len(found['times'])} | {p50:.1f} "
            f"| {statistics.mean(found['times']):.1f} | {first} | {ratio} | {scoring} | {found['chosen']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--llama-requests", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        root = Path(tmp)
        reward_model = build_polite_reward_model(root / "reward-model")
        llama = stack.enter_context(llama_server(root))
        stub, _ = stack.enter_context(stub_upstream())
        base = stack.enter_context(gateway_process(config(root, stub, llama, reward_model), root))
        with httpx.Client(timeout=600) as client:
            results = {
                (model, stream, tenant): measure(
                    client,
                    base,
                    tenant,
                    model,
                    args.llama_requests if model == LLAMA_ALIAS else args.requests,
                    stream,
                )
                for model in MODELS
                for stream in (False, True)
                for tenant in KEYS
            }
    text = (
        f"Measured {time.strftime('%Y-%m-%d')} on {machine()} with `{command_line()}`; the default guards "
        "both ways, best-of-4 scored by all-MiniLM-L6-v2 with a politeness probe (CPU), sequential "
        "requests, one warm-up each, `max_tokens` 32.\n\n" + table(results) + "\n"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
