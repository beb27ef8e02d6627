"""OpenAI's moderation shape, answered by the gateway's own input guards (a check-only API)."""

from __future__ import annotations

import uuid
from typing import Any

from gateway.errors import InvalidRequest
from gateway.guarded.guardrails import REQUEST_FIELD, Guardrails, Judged

# OpenAI's categories, each answered by the guard categories that mean the same thing (the toxicity
# guard's, and the safety_llm guard's: ``guards.safety_llm_templates``).
OPENAI_CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("insult", "toxicity", "severe_toxicity", "harassment"),
    "harassment/threatening": ("threat",),
    "hate": ("identity_attack", "hate"),
    "hate/threatening": (),
    "illicit": ("illicit", "sex_crimes"),
    "illicit/violent": ("weapons", "dangerous"),
    "self-harm": ("self_harm",),
    "self-harm/intent": (),
    "self-harm/instructions": (),
    "sexual": ("sexual_explicit", "sexual"),
    "sexual/minors": ("sexual_minors",),
    "violence": ("threat", "violence"),
    "violence/graphic": (),
}


def moderation_inputs(raw: Any) -> list[str]:
    value = raw.get("input") if isinstance(raw, dict) else None
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        texts = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                texts.append(item)
            elif isinstance(item, dict) and item.get("type") == "text" and isinstance(item.get("text"), str):
                texts.append(item["text"])
            elif isinstance(item, dict) and item.get("type") == "image_url":
                raise InvalidRequest("This gateway's guards moderate text only.", param=f"input[{index}]")
            else:
                raise InvalidRequest("Each input must be a string or a text part.", param=f"input[{index}]")
        return texts
    raise InvalidRequest("'input' must be a non-empty string or array.", param="input")


def _result(judged: Judged) -> dict[str, Any]:
    """OpenAI's categories first; then every guard's own, as ``<guard>/<category>``."""
    scores: dict[str, float] = {}
    flagged: set[str] = set()
    plain_scores: dict[str, float] = {}
    plain_flagged: set[str] = set()
    for result in judged.outcome.results:
        (verdict,) = result.verdicts
        if verdict is None:
            continue
        for category, score in verdict.scores.items():
            scores[f"{result.guard}/{category}"] = round(score, 6)
            plain_scores[category] = max(score, plain_scores.get(category, 0.0))
        flagged.update(f"{result.guard}/{c}" for c in verdict.categories)
        plain_flagged.update(verdict.categories)
    categories: dict[str, bool] = {}
    category_scores: dict[str, float] = {}
    for name, sources in OPENAI_CATEGORIES.items():
        categories[name] = any(source in plain_flagged for source in sources)
        category_scores[name] = round(max((plain_scores.get(s, 0.0) for s in sources), default=0.0), 6)
    categories.update({name: name in flagged for name in scores})
    category_scores.update(scores)
    return {
        "flagged": bool(flagged) or judged.outcome.texts[0].decision == "block",
        "categories": categories,
        "category_scores": category_scores,
        "guardrails": judged.report,
    }


async def moderate(guardrails: Guardrails, tenant: str, raw: dict[str, Any]) -> dict[str, Any]:
    texts = moderation_inputs(raw)
    model = raw.get("model", "hhh-guards")
    if not isinstance(model, str):  # as OpenAI: a wrong type is refused, not silently replaced
        raise InvalidRequest("Invalid value for 'model': expected a string.", param="model")
    resolved = guardrails.resolve(tenant, model, raw.get(REQUEST_FIELD))
    judged = await guardrails.judge_each_input(resolved, texts, [f"input[{i}]" for i in range(len(texts))])
    return {"id": f"modr-{uuid.uuid4().hex}", "model": model, "results": [_result(j) for j in judged]}
