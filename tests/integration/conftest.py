"""Session-wide real servers: llama.cpp with the tiny model, a fault stub, and the gateway in front."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
import yaml

from gateway.auth import hash_key
from tests.support.labelstudio_server import LabelStudioServer, ensure_installed
from tests.support.servers import (
    LLAMA_ALIAS,
    black_hole,
    closed_port,
    gateway_process,
    llama_server,
    stub_upstream,
)

GATEWAY_KEY = "hhh-integration-key"
MAX_BODY = 64 * 1024


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Keeps each test's outcome on its item, for fixtures that act on failure (a browser's screenshot)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")


@pytest.fixture(scope="session")
def llama_url(server_logs: Path) -> Iterator[str]:
    with llama_server(server_logs) as url:
        yield url


@pytest.fixture(scope="session")
def stub(server_logs: Path) -> Iterator[tuple[str, object]]:
    with stub_upstream() as started:
        yield started


@pytest.fixture(scope="session")
def gateway_url(llama_url: str, stub: tuple[str, object], server_logs: Path) -> Iterator[str]:
    stub_url, _ = stub
    with black_hole() as hanging_port:
        config = {
            "data_dir": str(server_logs / "data"),
            "server": {"max_body_bytes": MAX_BODY},
            "auth": {"keys": [{"tenant": "integration", "sha256": hash_key(GATEWAY_KEY)}]},
            "upstreams": [
                # Models discovered from llama.cpp's own /v1/models; it ignores n and include_usage.
                {"name": "llama", "url": llama_url, "supports_n": False, "supports_stream_usage": False},
                {"name": "dead", "url": f"http://127.0.0.1:{closed_port()}/v1", "models": ["dead-model"]},
                {
                    "name": "hanging",
                    "url": f"http://127.0.0.1:{hanging_port}/v1",
                    "models": ["hanging-model"],
                    "timeouts": {"read": 1.0},
                },
                {"name": "stub", "url": stub_url},
            ],
            # The default policy (toxicity blocks, PII redacted, both ways) everywhere, except one stub
            # model with no input guards, so the output guards get something to catch.
            "guards": {
                "toxicity": {"type": "toxicity"},
                "pii": {"type": "pii"},
                "grounding": {"type": "grounding"},
            },
            "policies": {
                "models": {
                    "stub-echo-grounded": {"output": [{"guard": "grounding", "action": "flag"}]},
                    # Toxic answers are revised by the tiny llama.cpp model (the mechanics, not its wisdom).
                    "stub-echo-revised": {
                        "output": [
                            {
                                "guard": "toxicity",
                                "action": "revise",
                                "revision": {
                                    "critic_model": LLAMA_ALIAS,
                                    "max_tokens": 48,
                                    "timeout_ms": 60000,
                                },
                            },
                            {"guard": "pii", "action": "redact"},
                        ]
                    },
                    "stub-echo-unguarded-input": {
                        "output": [
                            {"guard": "toxicity", "action": "block"},
                            {"guard": "pii", "action": "redact"},
                        ]
                    },
                }
            },
        }
        path = server_logs / "gateway.yaml"
        path.write_text(yaml.safe_dump(config))
        with gateway_process(path, server_logs) as url:
            yield url


@pytest.fixture(scope="session")
def labelstudio(tmp_path_factory: pytest.TempPathFactory, server_logs: Path) -> Iterator[LabelStudioServer]:
    """A real Label Studio (its own venv, installed on first use); tests use projects of their own."""
    server = LabelStudioServer(ensure_installed(), tmp_path_factory.mktemp("ls") / "data", server_logs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sync_client(gateway_url: str) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=gateway_url, api_key=GATEWAY_KEY, max_retries=0, timeout=60) as client:
        yield client


@pytest.fixture
async def async_client(gateway_url: str) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway_url, api_key=GATEWAY_KEY, max_retries=0, timeout=60
    ) as client:
        yield client
