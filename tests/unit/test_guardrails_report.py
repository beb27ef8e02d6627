"""The typed ``guardrails`` report: a streamed choice's windows folded into one report, and the summary
header (the report's bytes on the wire are pinned in test_guardrails_report_wire)."""

from __future__ import annotations

from feedback.events import ChoiceReport, ClaimReport, GuardrailsReport, GuardReport, SpanReport, StageReport
from gateway.guarded.guardrails import Guardrails, summary_header
from guards.pipeline import most_severe


def _span(where: str, start: int) -> SpanReport:
    return SpanReport(where, start, start + 3, "EMAIL_ADDRESS", 1.0)


def _claim(where: str) -> ClaimReport:
    return ClaimReport(where, "unsupported", "no source", None, 0, 4, 0.5)


def test_windows_fold_into_one_report_per_guard() -> None:
    first = StageReport(
        "flag",
        [
            GuardReport(guard="claims", action="flag", decision="flag", categories=["b"], scores={"b": 0.5},
                        claims=[_claim("choices[0]")], latency_ms=0.555),
            GuardReport(guard="pii", action="redact", decision="pass", scores={"x": 0.1}, latency_ms=1.004,
                        error="timeout: first"),
        ],
    )  # fmt: skip
    second = StageReport(
        "redact",
        [
            GuardReport(guard="pii", action="redact", decision="redact", categories=["x"], scores={"x": 0.9},
                        spans=[_span("choices[0]", 4)], latency_ms=1.004, error="timeout: second"),
            GuardReport(guard="claims", action="flag", decision="pass", categories=["a"],
                        scores={"b": 0.2, "a": 0.7}, claims=[_claim("choices[1]")], latency_ms=0.555),
        ],
    )  # fmt: skip
    merged = ChoiceReport.merge(2, [first, second], most_severe)
    assert (merged.index, merged.decision, merged.windows) == (2, "redact", 2)
    claims, pii = merged.guards  # in the order the guards first appeared
    assert (claims.guard, claims.action, claims.decision) == ("claims", "flag", "flag")
    assert claims.categories == ["a", "b"]
    assert claims.scores == {"b": 0.5, "a": 0.7}
    assert claims.claims == [_claim("choices[0]"), _claim("choices[1]")]  # every window's findings
    assert claims.latency_ms == 1.12  # rounded as it adds up: 0.56, then 1.115 → 1.12 (not 1.11)
    assert (pii.decision, pii.scores, pii.spans) == ("redact", {"x": 0.9}, [_span("choices[0]", 4)])
    assert pii.latency_ms == 2.0  # 1.0 + 1.004 (not 2.01)
    assert pii.error == "timeout: first"
    assert first.guards[1].decision == "pass"  # the windows' own reports are left as they were


def test_a_choice_with_no_windows_passed() -> None:
    merged = Guardrails.stream_choice_report(0, [])
    assert (merged.decision, merged.windows, merged.guards) == ("pass", 0, [])


def test_the_summary_header_names_the_deciding_guards_per_stage() -> None:
    entry = GuardReport(guard="pii", action="redact", decision="redact")
    report = GuardrailsReport(
        policy="p",
        input=StageReport("redact", [entry]),
        output=[
            ChoiceReport(index=0, decision="pass", guards=[]),
            ChoiceReport(
                index=1, decision="block", guards=[GuardReport(guard="tox", action="block", decision="block")]
            ),
        ],
    )
    assert summary_header(report) == "input=redact(pii); output=block(tox)"
    assert summary_header(GuardrailsReport(policy="p", output=[])) == "output=pass"  # judged, no choices
    assert summary_header(GuardrailsReport(policy="p")) == ""
