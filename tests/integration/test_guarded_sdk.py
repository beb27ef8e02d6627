"""The default guards (toxicity, PII) on real traffic, through the official openai SDK."""

from __future__ import annotations

import httpx
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


def _cache_counts(gateway_url: str) -> dict[str, float]:
    """``hhh_verdict_cache_total`` by guard and outcome, from the gateway's /metrics."""
    scraped = httpx.get(gateway_url.removesuffix("/v1") + "/metrics", timeout=30).text
    counts = {}
    for line in scraped.splitlines():
        if line.startswith("hhh_verdict_cache_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.removeprefix("hhh_verdict_cache_total")] = float(value)
    return counts


def test_a_conversations_history_is_judged_once(
    sync_client: openai.OpenAI, gateway_url: str, stub: tuple[str, StubState]
) -> None:
    """Each turn resends the conversation; the input guards judge only its new messages."""
    _, state = stub
    history = [
        {"role": "system", "content": "You answer questions about gardening in one sentence."},
        {"role": "user", "content": "When do I plant tulip bulbs? Ask Maria Lopez at maria@example.org."},
    ]
    sync_client.chat.completions.create(model="stub-echo", messages=history)  # type: ignore[arg-type]
    before = _cache_counts(gateway_url)
    history += [
        {"role": "assistant", "content": "Plant them in autumn, before the ground freezes."},
        {"role": "user", "content": "And how deep should they go?"},
    ]
    sync_client.chat.completions.create(model="stub-echo", messages=history)  # type: ignore[arg-type]
    after = _cache_counts(gateway_url)
    for guard in ("toxicity", "pii"):
        hit, miss = f'{{guard="{guard}",outcome="hit"}}', f'{{guard="{guard}",outcome="miss"}}'
        judged = (after.get(hit, 0) - before.get(hit, 0), after[miss] - before.get(miss, 0))
        assert judged == (2, 2), guard  # kept: the system prompt and the first question; judged: the rest
    sent = state.bodies[-1]["messages"]
    assert "maria@example.org" not in sent[1]["content"]  # a cached verdict still redacts
    assert "<EMAIL_ADDRESS_1>" in sent[1]["content"]
