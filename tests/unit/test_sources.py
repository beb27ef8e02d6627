"""Sources as a plain OpenAI client sends them, and the grounding path through the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, ClassVar

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.guarded.sources import request_sources
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
from guards.verdict import JudgeContext, Span, Stage, Verdict
from tests.support.fake_upstream import FakeUpstream


def test_sources_from_field_tool_messages_and_document_blocks() -> None:
    raw: dict[str, Any] = {
        "model": "m",
        "sources": [{"id": "a", "text": "Alpha text.", "url": "https://x.org/a"}, {"text": "Beta text."}],
        "messages": [
            {"role": "system", "content": 'Use these. <document id="d1" title="Doc">Delta text.</document>'},
            {"role": "tool", "tool_call_id": "call_7", "content": "Tool result text."},
            {"role": "user", "content": "Question?"},
        ],
    }
    sent = msgspec.json.encode(raw)
    sources = request_sources(raw)
    assert [(s.id, s.text) for s in sources] == [
        ("a", "Alpha text."), ("2", "Beta text."), ("d1", "Delta text."), ("call_7", "Tool result text."),
    ]  # fmt: skip
    assert sources[0].url == "https://x.org/a"
    assert msgspec.json.encode(raw) == sent  # read, not taken out: the prepared request leaves it out


def test_bad_sources_name_the_param() -> None:
    from gateway.errors import InvalidRequest

    with pytest.raises(InvalidRequest) as caught:
        request_sources({"sources": [{"id": "a"}], "messages": []})
    assert caught.value.param == "sources[0]"


class SourceEcho:
    """A fake grounding guard: flags any sentence not found verbatim in the sources."""

    kind: ClassVar[str] = "fake-grounding"
    stages: ClassVar[frozenset[Stage]] = frozenset({Stage.OUTPUT})
    config_type: ClassVar[type[msgspec.Struct]] = msgspec.Struct
    default_thresholds: ClassVar[Mapping[str, float]] = {"unsupported": 0.01}
    seen: list[JudgeContext | None]

    def __init__(self) -> None:
        self.seen = []

    @property
    def name(self) -> str:
        return "grounding"

    @property
    def categories(self) -> Sequence[str]:
        return ["unsupported"]

    async def start(self) -> None:
        pass

    async def judge(
        self, texts: Sequence[str], thresholds: Mapping[str, float], context: JudgeContext | None = None
    ) -> list[Verdict]:
        self.seen.append(context)
        known = " ".join(s.text for s in (context.sources if context else []))
        verdicts = []
        for text in texts:
            bad = text.strip() and text.strip() not in known
            spans = [Span(0, len(text), "unsupported", 1.0, text + " [unsupported]")] if bad else []
            verdicts.append(
                Verdict(
                    "grounding",
                    not bad,
                    {"unsupported": float(bool(bad))},
                    ["unsupported"] if bad else [],
                    spans,
                )
            )
        return verdicts

    async def close(self) -> None:
        pass


@pytest.fixture
async def client_and_guard() -> AsyncIterator[tuple[AsyncTestClient[Any], SourceEcho, FakeUpstream]]:
    guard, upstream = SourceEcho(), FakeUpstream()
    settings = Settings(
        feedback=FeedbackSettings(record=False),  # recording has its own tests
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={"grounding": GuardSpec(type="grounding")},
        policies=PolicyBook(default=Policy(output=[Rule(guard="grounding", action=Action.REDACT)])),
    )
    app = create_app(settings, upstream_transport=upstream.transport(), guards={"grounding": guard})
    async with AsyncTestClient(app) as client:
        yield client, guard, upstream


async def test_sources_reach_the_output_guard_and_never_the_upstream(
    client_and_guard: tuple[AsyncTestClient[Any], SourceEcho, FakeUpstream],
) -> None:
    client, guard, upstream = client_and_guard
    body = {
        "model": "echo",
        "messages": [{"role": "user", "content": "The moon is made of cheese."}],
        "sources": [{"id": "s1", "text": "The moon is made of rock."}],
    }
    response = await client.post("/v1/chat/completions", json=body)
    assert "sources" not in upstream.bodies[-1]
    assert guard.seen[-1] is not None
    assert [s.id for s in guard.seen[-1].sources] == ["s1"]
    content = response.json()["choices"][0]["message"]["content"]
    assert content == "The moon is made of cheese. [unsupported]"  # marked in place (action: redact)
    streamed = await client.post("/v1/chat/completions", json={**body, "stream": True})
    assert "[unsupported]" in streamed.text
    # The stream's windows see the request's sources too: a supported answer streams unmarked.
    grounded = {
        **body,
        "messages": [{"role": "user", "content": "The moon is made of rock."}],
        "stream": True,
    }
    streamed = await client.post("/v1/chat/completions", json=grounded)
    assert "made of rock." in streamed.text
    assert "[unsupported]" not in streamed.text
