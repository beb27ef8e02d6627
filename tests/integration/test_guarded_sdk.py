"""The default guards (toxicity, PII) on real traffic, through the official openai SDK."""

from __future__ import annotations

import openai
import pytest

from tests.support.servers import LLAMA_ALIAS, StubState

TOXIC = "You are a fucking idiot and everyone hates you."


def test_toxic_input_is_refused_before_the_upstream(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    _, state = stub
    before = len(state.bodies)
    with pytest.raises(openai.BadRequestError) as caught:
        sync_client.chat.completions.create(model="stub-echo", messages=[{"role": "user", "content": TOXIC}])
    assert caught.value.code == "content_filter"
    assert caught.value.param == "messages[0].content"
    assert len(state.bodies) == before


def test_pii_is_redacted_before_the_upstream_sees_it(
    sync_client: openai.OpenAI, stub: tuple[str, StubState]
) -> None:
    _, state = stub
    message = "Please email Maria Lopez at maria.lopez@example.com about the invoice."
    raw = sync_client.chat.completions.with_raw_response.create(
        model="stub-echo", messages=[{"role": "user", "content": message}]
    )
    sent = state.bodies[-1]["messages"][0]["content"]
    assert "maria.lopez@example.com" not in sent
    assert "<EMAIL_ADDRESS_1>" in sent
    completion = raw.parse()
    assert completion.choices[0].message.content == message  # the echo's placeholders, restored
    assert raw.headers["x-hhh-guardrails"].startswith("input=redact(pii)")
    assert (completion.model_extra or {})["guardrails"]["input"]["decision"] == "redact"


def test_toxic_output_is_cut_from_a_stream(sync_client: openai.OpenAI) -> None:
    text = "Here is a perfectly polite opening. " + TOXIC + " And a polite ending."
    stream = sync_client.chat.completions.create(
        model="stub-echo-unguarded-input", messages=[{"role": "user", "content": text}], stream=True
    )
    chunks = list(stream)
    received = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "idiot" not in received
    assert received.startswith("Here is a perfectly polite opening.")
    finishes = [c.choices[0] for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [f.finish_reason for f in finishes] == ["content_filter"]
    assert "toxicity" in (finishes[0].delta.refusal or "")


def test_toxic_output_is_refused_whole(sync_client: openai.OpenAI) -> None:
    completion = sync_client.chat.completions.create(
        model="stub-echo-unguarded-input", messages=[{"role": "user", "content": TOXIC}]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    assert choice.message.content is None
    assert choice.message.refusal


def test_real_llm_answer_carries_the_report(sync_client: openai.OpenAI) -> None:
    completion = sync_client.chat.completions.create(
        model=LLAMA_ALIAS, messages=[{"role": "user", "content": "Name a fruit."}], max_tokens=8
    )
    report = (completion.model_extra or {})["guardrails"]
    assert report["policy"] == "default"
    assert {g["guard"] for g in report["input"]["guards"]} == {"toxicity", "pii"}
    assert report["output"][0]["index"] == 0


def test_moderations_api(sync_client: openai.OpenAI) -> None:
    result = sync_client.moderations.create(input=[TOXIC, "What a lovely day for a picnic."])
    toxic, clean = result.results
    assert toxic.flagged
    assert toxic.categories.harassment
    assert not clean.flagged
    assert clean.category_scores.harassment < 0.5


def test_grounding_flags_a_contradicted_claim_with_its_source(sync_client: openai.OpenAI) -> None:
    sources = [
        {
            "id": "doc-harbor",
            "title": "Vela",
            "text": "The Vela harbour opened in 1893. It handles 4,000 ships a year.",
        }
    ]
    answer = "The Vela harbour opened in 1893. It handles 5,000 ships a year [doc-harbor]."
    completion = sync_client.chat.completions.create(
        model="stub-echo-grounded",
        messages=[{"role": "user", "content": answer}],
        extra_body={"sources": sources},
    )
    assert completion.choices[0].message.content == answer  # flag: reported, not changed
    (grounding,) = (completion.model_extra or {})["guardrails"]["output"][0]["guards"]
    assert grounding["decision"] == "flag"
    assert grounding["scores"]["groundedness"] == 0.5
    claims = {claim["kind"]: claim for claim in grounding["claims"]}
    assert set(claims) == {"supported", "contradicted"}
    assert claims["contradicted"]["source"] == "doc-harbor"
    assert answer[claims["contradicted"]["start"] : claims["contradicted"]["end"]].startswith(
        "It handles 5,000"
    )
