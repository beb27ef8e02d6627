"""AI feedback in a preference export, kept apart from people's judgements.

Three sources, selected by name (``--sources``), never mixed without saying so:

- ``human``: people's rankings in Label Studio (comparison sources ``ranking``, ``majority``,
  ``bradley-terry``);
- ``user-feedback``: what an application's users said (``preferred_choice``, ``thumbs``);
- ``ai-feedback``: a critic's revision of an answer (``RevisionEvent``, comparison source ``revision``):
  the revision is ``chosen``, the answer it replaced ``rejected`` (RLAIF).

``rankings`` and ``feedback``, the names of the first two before AI feedback existed, still work.

**Agreement between AI feedback and people.** A revision can be ranked by people next to the answer it
replaced (both go to Label Studio in the prompt's task). For every such task, each annotator's ranking
of the two answers is one judgement: it *agrees* when it puts the AI's ``chosen`` above its ``rejected``,
*disagrees* when below; a tie counts as neither agreeing nor disagreeing but is in the total. The rate is
agreements over all judgements.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

import msgspec

from feedback.events import RevisionEvent
from feedback.preferences.pairs import Comparison, preference
from feedback.ranking import AnnotationRecord, Candidate, RankingTask, revision_candidate

SOURCES = ("human", "user-feedback", "ai-feedback")
DEFAULT_SOURCES = ("human", "user-feedback")
ALIASES = {"rankings": "human", "feedback": "user-feedback"}
GROUP_OF = {
    "ranking": "human",
    "majority": "human",
    "bradley-terry": "human",
    "preferred_choice": "user-feedback",
    "thumbs": "user-feedback",
    "revision": "ai-feedback",
}
REVISION_MARGIN = 1.0  # a revision carries no strength of preference: one step, like neighbours in a ranking


def canonical_sources(names: Iterable[str]) -> tuple[str, ...]:
    """Selected source names, aliases resolved, in the canonical order; unknown names raise naming them.

    >>> canonical_sources(["ai-feedback", "rankings"])
    ('human', 'ai-feedback')
    """
    given = {ALIASES.get(name, name) for name in names}
    if unknown := given - set(SOURCES):
        raise ValueError(f"--sources: unknown {', '.join(sorted(unknown))} (one of {', '.join(SOURCES)})")
    return tuple(source for source in SOURCES if source in given)


def group_of(comparison_source: str) -> str:
    """The selectable source a comparison comes from.

    >>> group_of("bradley-terry"), group_of("thumbs"), group_of("revision")
    ('human', 'user-feedback', 'ai-feedback')
    """
    return GROUP_OF[comparison_source]


def revision_sides(revision: RevisionEvent) -> tuple[Candidate, Candidate, Comparison]:
    """A revision as a pair: (chosen: the revision, rejected: the answer it replaced, the comparison)."""
    chosen = revision_candidate(revision)
    rejected = Candidate(id=f"{revision.id}:original", text=revision.rejected, model=revision.model,
                         origin="answer")  # fmt: skip
    comparison = Comparison(chosen.id, rejected.id, REVISION_MARGIN, revision.critic_model, "revision")
    return chosen, rejected, comparison


class AiHumanAgreement(msgspec.Struct, kw_only=True):
    ai_pairs: int = 0  # AI pairs whose two answers people also ranked
    judgements: int = 0  # annotators' rankings of those two answers
    agree: int = 0
    disagree: int = 0
    ties: int = 0

    @property
    def rate(self) -> float | None:
        return self.agree / self.judgements if self.judgements else None


Ranked = tuple[str, RankingTask, Sequence[AnnotationRecord]]  # (prompt id, task, its annotations)


def ai_human_agreement(
    ai_pairs: Sequence[tuple[str, str, str]], ranked: Sequence[Ranked]
) -> AiHumanAgreement:
    """``ai_pairs``: (prompt id, chosen text, rejected text) of each AI pair; ``ranked``: people's ranked
    tasks. Candidates are matched by text within the same prompt."""
    by_prompt: dict[str, list[tuple[dict[str, str], Sequence[AnnotationRecord]]]] = defaultdict(list)
    for prompt, task, records in ranked:
        by_prompt[prompt].append(({c.text: c.id for c in task.candidates}, records))
    report = AiHumanAgreement()
    for prompt, chosen, rejected in ai_pairs:
        compared = False
        for ids, records in by_prompt.get(prompt, []):
            if chosen not in ids or rejected not in ids:
                continue
            compared = True
            for record in records:
                verdict = preference(record.places, ids[chosen], ids[rejected])
                report.judgements += 1
                report.agree += verdict > 0
                report.disagree += verdict < 0
                report.ties += verdict == 0
        report.ai_pairs += compared
    return report
