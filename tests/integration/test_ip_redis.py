"""The IP index in a real Redis, shared by replicas: written by `hhh ip index`, loaded by the guard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.cli.main import main
from guards.ip.guard import SAMPLE_CORPUS, IpConfig, IpGuard
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import JudgeContext
from tests.support.redis_server import redis_server

GPL_WORDS = (Path(SAMPLE_CORPUS).parent / "gpl-3.0.txt").read_text().split()


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def test_index_written_to_redis_serves_a_replica(redis_url: str, tmp_path: Path) -> None:
    location = f"{redis_url}?name=sample"
    assert main(["ip", "index", "--corpus", str(SAMPLE_CORPUS), "--out", location]) == 0
    extra = tmp_path / "extra.jsonl"
    (tmp_path / "poem.txt").write_text(
        "Across the silent harbour the lanterns swing, and every rope remembers the sea it came from, "
        "while the keeper counts the ships that never came home again."
    )
    extra.write_text(
        '{"id": "poem", "path": "poem.txt", "title": "Harbour Lanterns", "licence": "All rights reserved"}\n'
    )
    assert main(["ip", "index", "--corpus", str(extra), "--out", location]) == 0  # incremental
    asyncio.run(_replica_finds_both(location, tmp_path))


async def _replica_finds_both(location: str, tmp_path: Path) -> None:
    replica = IpGuard("ip", IpConfig(index=location), GuardResources(RunnerPool(), None, tmp_path))
    await replica.start()
    assert len(replica.index.segments) == 2
    poem = "He sang: across the silent harbour the lanterns swing, and every rope remembers the sea."
    for text, source in [(" ".join(GPL_WORDS[1000:1040]), "gpl-3.0"), (poem, "poem")]:
        (verdict,) = await replica.judge([text], replica.default_thresholds, JudgeContext())
        assert verdict.categories == ["copy"]
        assert [e.source for e in verdict.evidence if e.kind == "copy"] == [source]


async def test_a_missing_redis_index_is_a_clear_error(redis_url: str, tmp_path: Path) -> None:
    guard = IpGuard(
        "ip", IpConfig(index=f"{redis_url}?name=nothing"), GuardResources(RunnerPool(), None, tmp_path)
    )
    with pytest.raises(ValueError, match="no IP index named 'nothing'"):
        await guard.start()
