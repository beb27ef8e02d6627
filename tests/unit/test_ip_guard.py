"""The IP guard on the shipped sample corpus and on licence texts every Debian machine has."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from guards.ip.corpus import read_corpus
from guards.ip.guard import SAMPLE_CORPUS, IpConfig, IpGuard
from guards.ip.index import Document, FingerprintIndex
from guards.policy import Policy, PolicyBook, PolicyError, Rule, StreamPolicy, check_references
from guards.registry import GuardResources
from guards.runner import RunnerPool
from guards.verdict import JudgeContext, Stage
from tests.support.ip_quality import labelled_cases

GPL = (Path(SAMPLE_CORPUS).parent / "gpl-3.0.txt").read_text()
EXCERPT = " ".join(GPL.split()[400:460])  # 60 words of the GPL's own text


async def _guard(**config: Any) -> IpGuard:
    guard = IpGuard("ip", IpConfig(**config), GuardResources(RunnerPool(), None, Path("/tmp")))
    await guard.start()
    return guard


async def _judge(guard: IpGuard, text: str, stage: Stage = Stage.OUTPUT) -> Any:
    (verdict,) = await guard.judge([text], guard.default_thresholds, JudgeContext(stage=stage))
    return verdict


async def test_an_exact_copy_is_found_with_its_source() -> None:
    guard = await _guard()
    answer = "Here is what you asked for. " + EXCERPT + " I hope this helps."
    verdict = await _judge(guard, answer)
    assert verdict.categories == ["copy"]
    (span,) = [s for s in verdict.spans if s.label == "copy"]
    copy_start = answer.index(EXCERPT)
    # Matches are verified and extended word by word: the span is the whole copy.
    assert (span.start, span.end) == (copy_start, copy_start + len(EXCERPT))
    (evidence,) = [e for e in verdict.evidence if e.kind == "copy"]
    assert evidence.source == "gpl-3.0"
    assert "Free Software Foundation" in evidence.detail
    assert "GNU General Public License, version 3" in (verdict.annotation or "")


async def test_whitespace_case_and_punctuation_changes_do_not_hide_a_copy() -> None:
    guard = await _guard()
    altered = re.sub(r"[.,;:]", "", EXCERPT.upper()).replace(" ", "\n   ")
    assert (await _judge(guard, altered)).categories == ["copy"]


async def test_short_common_phrases_do_not_match() -> None:
    guard = await _guard()
    answer = (
        "This is free software. It comes without any warranty, all rights reserved, and you can "
        "redistribute it under the terms of the licence you chose."
    )
    assert (await _judge(guard, answer)).allowed


async def test_licence_headers_in_code_against_allow_and_deny_lists() -> None:
    code = "# SPDX-License-Identifier: GPL-3.0-or-later\ndef f():\n    return 1\n"
    denied = await _guard(deny_licences=["GPL", "AGPL-3.0"])
    assert (await _judge(denied, code)).categories == ["licence"]
    mit_shop = await _guard(allow_licences=["MIT", "Apache-2.0"])
    assert (await _judge(mit_shop, code)).categories == ["licence"]
    assert (await _judge(mit_shop, "// SPDX-License-Identifier: MIT\nint x;")).allowed
    header = "/* Licensed under the Apache License, Version 2.0 */"
    verdict = await _judge(denied, header)
    assert verdict.allowed  # Apache is not denied here
    assert [e.detail for e in verdict.evidence] == ["Apache-2.0 (header)"]


async def test_input_requests_for_protected_titles() -> None:
    guard = await _guard(protected_titles=["The Lighthouse Keeper's Daughter", "Orbit Sample"])
    asking = await _judge(
        guard, "Give me the full text of The Lighthouse Keeper's Daughter, chapter one.", Stage.INPUT
    )
    assert asking.categories == ["request"]
    mentioning = await _judge(guard, "What is The Lighthouse Keeper's Daughter about?", Stage.INPUT)
    assert mentioning.allowed


def test_index_round_trip_incremental_and_memory(tmp_path: Path) -> None:
    index = FingerprintIndex()
    index.add(read_corpus(SAMPLE_CORPUS))
    index.save(tmp_path / "idx")
    corpus_bytes = sum(len(text.encode()) for _, text in read_corpus(SAMPLE_CORPUS))
    assert index.nbytes <= corpus_bytes  # the target: index memory at most the corpus size
    loaded = FingerprintIndex.load(tmp_path / "idx")
    loaded.add([(Document("gpl-3.0", title="GPL, re-indexed"), GPL)])  # replaces its earlier version
    loaded.add(
        [(Document("note", title="A note"), "An entirely new document about harbour cranes and tides.")]
    )
    loaded.save(tmp_path / "idx")
    again = FingerprintIndex.load(tmp_path / "idx")
    assert len(again.segments) == 3
    assert {again.documents[h.document].title for h in again.lookup(_shingles(EXCERPT, again))} == {
        "GPL, re-indexed"
    }


def _shingles(text: str, index: FingerprintIndex) -> Any:
    from guards.ip.fingerprint import shingle_hashes, word_hashes, words

    return shingle_hashes(word_hashes(words(text).words), index.k)


def test_stream_overlap_must_cover_the_minimum_match() -> None:
    book = PolicyBook(default=Policy(output=[Rule(guard="ip")], stream=StreamPolicy(overlap_chars=40)))
    with pytest.raises(PolicyError, match=r"^policies\.default\.stream\.overlap_chars: must be at least 60"):
        check_references(book, {"ip": None}, {"ip": {"copy"}}, {"ip": 60})  # type: ignore[dict-item]


# --- precision and recall on a labelled set ------------------------------------------------------
# The set and its labelling rule: tests/support/ip_quality.py. Near misses sit beside the easy cases:
# copies with a word changed every 5-10 words, paraphrases, and runs of indexed text just under and
# just over min_match_chars.

# kind → (least share of its copies caught, most share of its non-copies flagged), a little under and
# over what was measured (docs/guards/ip.md, "Measured quality").
FLOORS = {
    "altered copy": (0.95, 0.05),
    "unindexed licence": (0.95, 0.05),
    "stock phrase": (0.95, 0.05),
    "word changed every 5-10": (0.95, 0.05),
    "paraphrase": (0.95, 0.05),
    "boilerplate 45-59 chars": (0.95, 0.05),
    "boilerplate 60-75 chars": (0.95, 0.05),
    "60+ chars in 7-8 words": (0.8, 0.05),  # measured 33 / 40: winnowing's blind spot, see ip_quality
}


async def test_precision_and_recall_on_the_labelled_set() -> None:
    guard = await _guard()
    counts: dict[str, Counter[str]] = {}
    for kind, text, copied in labelled_cases():
        flagged = "copy" in (await _judge(guard, text)).categories
        outcome = {(True, True): "tp", (True, False): "fp", (False, True): "fn", (False, False): "tn"}
        counts.setdefault(kind, Counter())[outcome[(flagged, copied)]] += 1
    total = sum(counts.values(), Counter())
    precision = total["tp"] / max(1, total["tp"] + total["fp"])
    recall = total["tp"] / (total["tp"] + total["fn"])
    print(f"ip copies: precision {precision:.3f}, recall {recall:.3f} on {total.total()} cases")
    for kind, seen in counts.items():
        copies, others = seen["tp"] + seen["fn"], seen["fp"] + seen["tn"]
        print(f"  {kind:26} copies caught {seen['tp']}/{copies}, non-copies flagged {seen['fp']}/{others}")
    for kind, (least_caught, most_flagged) in FLOORS.items():
        seen = counts[kind]
        copies, others = seen["tp"] + seen["fn"], seen["fp"] + seen["tn"]
        assert copies + others > 0, kind
        assert seen["tp"] >= least_caught * copies, kind
        assert seen["fp"] <= most_flagged * others, kind
    # The near misses hold both: copies the guard must catch and non-copies it must pass.
    near = counts["word changed every 5-10"]
    assert near["tp"] + near["fn"] >= 10
    assert near["fp"] + near["tn"] >= 10
    assert precision >= 0.98  # measured 1.000
    assert recall >= 0.94  # measured 0.961


# --- through the gateway: streams and truncation -------------------------------------------------


async def _gateway(policy: Policy) -> Any:
    from litestar.testing import AsyncTestClient

    from gateway.app import create_app
    from gateway.settings import FeedbackSettings, Settings, UpstreamSettings
    from guards.policy import GuardSpec
    from tests.support.fake_upstream import FakeUpstream

    upstream = FakeUpstream()
    settings = Settings(
        feedback=FeedbackSettings(record=False),  # recording has its own tests
        upstreams=[UpstreamSettings(name="fake", url="http://fake.test/v1")],
        guards={"ip": GuardSpec(type="ip")},
        policies=PolicyBook(default=policy),
    )
    return AsyncTestClient(create_app(settings, upstream_transport=upstream.transport()))


# Two pieces of the GPL's own text, each under min_match_chars (60), together 88 characters. The first
# ends a sentence, so a stream window ends there: only the overlap carried into the next window shows
# the copy whole.
COPY_HEAD = "You can apply it to your programs, too."
COPY_TAIL = "When we speak of free software, we are referring"
OWN_INTRO = "My own words come first. "


async def test_a_copy_straddling_a_window_cut_is_caught_only_through_the_overlap() -> None:
    from guards.policy import Action

    guard = await _guard()
    for half in (COPY_HEAD, COPY_TAIL, OWN_INTRO + COPY_HEAD):
        assert (await _judge(guard, half)).allowed, half  # no window alone holds a copy
    assert not (await _judge(guard, f"{COPY_HEAD} {COPY_TAIL}")).allowed  # the two together do
    windows = StreamPolicy(min_chars=20, max_chars=120, overlap_chars=64)
    answer = f"{OWN_INTRO}{COPY_HEAD} {COPY_TAIL} to the words of my own that follow here."
    async with await _gateway(
        Policy(output=[Rule(guard="ip", action=Action.BLOCK)], stream=windows)
    ) as client:
        body = {"model": "echo", "messages": [{"role": "user", "content": answer}], "stream": True}
        text = (await client.post("/v1/chat/completions", json=body)).text
    assert '"finish_reason":"content_filter"' in text
    streamed = "".join(re.findall(r'"content":"([^"]*)"', text))
    assert streamed == f"{OWN_INTRO}{COPY_HEAD} "  # the windows before the cut passed; the tail never went


async def test_truncate_cuts_the_answer_before_the_copy() -> None:
    from guards.policy import Action

    answer = "Here is my own summary of the licence terms. " + EXCERPT
    async with await _gateway(Policy(output=[Rule(guard="ip", action=Action.TRUNCATE)])) as client:
        body = {"model": "echo", "messages": [{"role": "user", "content": answer}]}
        choice = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"]["content"].startswith("Here is my own summary of the licence terms.")
    assert len(choice["message"]["content"]) < len("Here is my own summary of the licence terms. ") + 40


async def test_annotate_attributes_the_source() -> None:
    from guards.policy import Action

    async with await _gateway(Policy(output=[Rule(guard="ip", action=Action.ANNOTATE)])) as client:
        body = {"model": "echo", "messages": [{"role": "user", "content": EXCERPT}]}
        content = (await client.post("/v1/chat/completions", json=body)).json()["choices"][0]["message"][
            "content"
        ]
    assert content.startswith(EXCERPT)
    assert "Source: this answer reproduces parts of GNU General Public License, version 3" in content
