"""`hhh serve` with nothing configured starts a real llama.cpp server and answers through it."""

from __future__ import annotations

from pathlib import Path

import openai
import psutil

from tests.support.servers import gateway_process

EMBEDDED_MODEL = "smollm2-135m-instruct"


def _llama_children(gateway_pid: int) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(gateway_pid).children(recursive=True)
        if "llama_cpp.server" in " ".join(child.cmdline())
    ]


def test_embedded_llm_answers_and_stops_with_the_gateway(tmp_path: Path) -> None:
    config = tmp_path / "empty.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")  # no upstreams, no keys: the newcomer's set-up
    with gateway_process(config, tmp_path) as base_url:
        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=60)
        assert [m.id for m in client.models.list()] == [EMBEDDED_MODEL]
        completion = client.chat.completions.create(
            model=EMBEDDED_MODEL, messages=[{"role": "user", "content": "Hello!"}], max_tokens=8, n=2
        )
        assert len(completion.choices) == 2
        assert all(choice.message.content for choice in completion.choices)
        gateway_pid = next(
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if str(config) in " ".join(p.info["cmdline"] or [])
        )
        children = _llama_children(gateway_pid)
        assert len(children) == 1
    psutil.wait_procs(children, timeout=15)
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children)
    assert (tmp_path / "data" / "embedded-llm.log").exists()
    assert (tmp_path / "data" / "redis" / "redis.log").exists()  # the embedded Redis, for recording


def test_children_end_even_when_the_gateway_is_killed(tmp_path: Path) -> None:
    import os
    import signal

    config = tmp_path / "empty.yaml"
    config.write_text(f"data_dir: {tmp_path / 'data'}\n")
    with gateway_process(config, tmp_path):
        gateway = next(
            p for p in psutil.process_iter(["cmdline"]) if str(config) in " ".join(p.info["cmdline"] or [])
        )
        children = gateway.children(recursive=True)
        assert any("redis-server" in " ".join(c.cmdline()) for c in children)
        os.kill(gateway.pid, signal.SIGKILL)  # no lifespan shutdown: only the kernel's death signal is left
        _, alive = psutil.wait_procs(children, timeout=15)
        assert not [c for c in alive if c.status() != psutil.STATUS_ZOMBIE]
