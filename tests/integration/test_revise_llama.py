"""The ``revise`` action on the real path: a stub model answers something toxic, the real toxicity guard
fires, and llama.cpp's tiny model critiques and revises it, through the official openai SDK. The tiny
model is weak: this checks the mechanics (two critic calls, the revision judged again, the report, the
fallback when it fails), not the quality of its revisions."""

from __future__ import annotations

import openai

from tests.support.servers import LLAMA_ALIAS, StubState

TOXIC = "You are a fucking idiot and everyone hates you."


def test_a_toxic_answer_is_revised_by_the_llama_cpp_critic_or_falls_back(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    raw = sync_client.chat.completions.with_raw_response.create(
        model="stub-echo-revised", messages=[{"role": "user", "content": TOXIC}], max_tokens=32
    )
    completion = raw.parse()
    choice = completion.choices[0]
    report = (completion.model_extra or {})["guardrails"]["output"][0]
    (round_,) = report["revision"]["rounds"]
    assert round_["critic_model"] == LLAMA_ALIAS
    assert round_["principles"][0] == "harmless-language"
    assert round_["before"]["toxicity"] == "revise"
    assert round_["latency_ms"] > 0
    if report["revised"]:  # the revision passed every output guard: it is what the client got
        assert round_["after"]["toxicity"] == "pass"
        assert choice.message.content
        assert choice.message.content != TOXIC
        assert choice.finish_reason == "stop"  # the upstream's
        assert raw.headers["x-hhh-guardrails"] == "output=revise(toxicity)"
    else:  # the fallback (block) applied to the original, and the report says why
        assert report["revision"]["fallback"] == "block"
        assert report["revision"]["reason"]
        assert choice.finish_reason == "content_filter"
        assert choice.message.content is None
    assert "fucking" not in raw.http_response.text  # neither the answer nor a critique that quotes it


def test_a_streamed_toxic_answer_is_revised_after_its_released_start_or_ends_filtered(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    calm = "Thanks for asking, here it is."
    stream = sync_client.chat.completions.create(
        model="stub-echo-revised",
        messages=[{"role": "user", "content": f"{calm} {TOXIC}"}],
        max_tokens=32,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    report = (chunks[-1].model_extra or {})["guardrails"]["output"][0]
    assert text.startswith(calm)  # released before the toxic window was judged, and never taken back
    assert "fucking" not in text
    (round_,) = report["revision"]["rounds"]
    assert round_["critic_model"] == LLAMA_ALIAS
    assert round_["before"]["toxicity"] == "revise"
    assert report["revision"]["shown_chars"] == len(calm) + 1
    if report["revised"]:  # the revision continues the released start
        assert round_["after"]["toxicity"] == "pass"
        assert finishes == ["stop"]
        assert len(text) > len(calm) + 1
    else:
        assert report["revision"]["fallback"] == "block"
        assert finishes == ["content_filter"]
        assert text == calm + " "
