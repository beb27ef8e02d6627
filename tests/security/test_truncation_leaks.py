"""A truncation must not release what another guard redacted: the text kept before the cut is the
redacted text, streamed or not. (Found while merging the hardening work: the stream path released the
raw window before the cut.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from gateway.app import create_app
from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
from guards.ip.guard import SAMPLE_CORPUS, IpConfig, IpGuard
from guards.policy import Action, GuardSpec, Policy, PolicyBook, Rule
from guards.registry import GuardResources
from guards.runner import RunnerPool
from tests.support.fake_guards import EmailGuard
from tests.support.fake_upstream import FakeUpstream

GPL = (Path(SAMPLE_CORPUS).parent / "gpl-3.0.txt").read_text()
COPY = " ".join(GPL.split()[405:460])  # 55 words of the GPL's own text, its first sentence 150 characters
# The address and the start of the copy share one stream window: no sentence ends between them.
ANSWER = "Write to ann@example.org about this, quoting " + COPY


@pytest.mark.parametrize("stream", [False, True])
async def test_text_kept_before_a_truncation_keeps_the_other_guards_redactions(
    stream: bool, tmp_path: Path
) -> None:
    ip = IpGuard("ip", IpConfig(), GuardResources(RunnerPool(), None, tmp_path))
    policy = Policy(
        output=[Rule(guard="pii", action=Action.REDACT), Rule(guard="ip", action=Action.TRUNCATE)]
    )
    settings = Settings(
        feedback=FeedbackSettings(record=False),
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={"ip": GuardSpec(type="ip"), "pii": GuardSpec(type="pii")},
        policies=PolicyBook(default=policy),
    )
    app = create_app(
        settings, upstream_transport=FakeUpstream().transport(), guards={"ip": ip, "pii": EmailGuard()}
    )
    body = {"model": "echo", "messages": [{"role": "user", "content": ANSWER}], "stream": stream}
    async with AsyncTestClient(app) as client:
        response = await client.post("/v1/chat/completions", json=body)
    if stream:
        text = "".join(re.findall(r'"content":"([^"]*)"', response.text))
        assert '"finish_reason":"content_filter"' in response.text
    else:
        choice = response.json()["choices"][0]
        text = choice["message"]["content"]
        assert choice["finish_reason"] == "content_filter"
    assert "ann@example.org" not in response.text
    assert text.startswith("Write to <EMAIL_ADDRESS> about this")
    assert COPY[:60] not in text
