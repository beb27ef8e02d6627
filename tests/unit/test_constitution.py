"""The constitution is data: the built-in one loads, principles answer the findings they name, and a bad
file is refused naming itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedback.constitution import (
    Finding,
    critique_messages,
    load_constitution,
    revision_messages,
    revision_text,
)


def test_the_built_in_constitution_covers_harm_honesty_and_creators() -> None:
    constitution = load_constitution()
    covered = {target.split(":")[0] for p in constitution.principles for target in p.applies_to}
    assert {"toxicity", "grounding", "ip"} <= covered


def test_principles_answer_the_guard_and_the_category_they_name() -> None:
    constitution = load_constitution()
    insult = [Finding("toxicity", ["insult"])]
    threat = [Finding("toxicity", ["threat"])]
    assert [p.id for p in constitution.matching(insult)] == ["harmless-language"]
    assert [p.id for p in constitution.matching(threat)] == ["harmless-language", "no-threats"]
    assert [p.id for p in constitution.matching([Finding("grounding", ["unsupported"])])] == [
        "honest-about-sources"
    ]
    assert constitution.matching([Finding("unknown-guard", ["x"])]) == []


def test_the_critic_is_given_the_evidence_and_the_principles() -> None:
    constitution = load_constitution()
    findings = [Finding("grounding", ["unsupported"], {"unsupported": 0.91}, ['"Paris is in Spain" (doc-1)'])]
    principles = constitution.matching(findings)
    asked = critique_messages("Where is Paris?", "Paris is in Spain.", principles, findings)[-1]["content"]
    assert "Paris is in Spain." in asked
    assert '"Paris is in Spain" (doc-1)' in asked
    assert "unsupported=0.91" in asked
    assert principles[0].critique in asked
    revise = revision_messages("Where is Paris?", "Paris is in Spain.", "Wrong country.", principles)
    assert principles[0].revision in revise[-1]["content"]
    assert "Wrong country." in revise[-1]["content"]


def test_a_preamble_a_small_critic_adds_is_taken_off() -> None:
    assert revision_text("  Rewritten answer:  Be kind. ") == "Be kind."
    assert revision_text("Be kind.") == "Be kind."


@pytest.mark.parametrize(
    "text",
    [
        "principles: []\n",
        "principles:\n  - {id: a, applies_to: ['*'], critique: c, revision: r}\n"
        "  - {id: a, applies_to: ['*'], critique: c, revision: r}\n",
        "principles:\n  - {id: a, applies_to: ['*'], critique: c}\n",
        "principles:\n  - {id: a, applies_to: ['*'], critique: c, revision: r, extra: 1}\n",
    ],
)
def test_a_bad_constitution_is_refused_naming_its_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=r"mine\.yaml"):
        load_constitution(path)
