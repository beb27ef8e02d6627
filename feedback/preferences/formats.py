"""One preference pair as a row of each published layout.

- ``trl``: TRL's standard preference format, ``{"prompt", "chosen", "rejected"}`` as text. A chat prompt
  of one user message is that message; a longer conversation is rendered ``role: content`` by turn.
- ``trl-conversational``: TRL's conversational format: ``prompt`` is the message list, ``chosen`` and
  ``rejected`` are one assistant message each.
- ``openai-preference``: OpenAI's preference fine-tuning (DPO) JSONL, ``{"input": {"messages"},
  "preferred_output", "non_preferred_output"}``.
- ``hh-rlhf``: Anthropic's HH-RLHF, ``{"chosen", "rejected"}``, each the whole dialogue as
  ``\\n\\nHuman: …\\n\\nAssistant: …``. A system message has no turn of its own there: it opens the first
  Human turn.

``margin`` (optional) is TRL's column; the other layouts have no place for it.
"""

from __future__ import annotations

from typing import Any

from feedback.messages import message_text

FORMATS = ("trl", "trl-conversational", "openai-preference", "hh-rlhf")
MARGIN_FORMATS = ("trl", "trl-conversational")


def messages_of(request: dict[str, Any]) -> list[dict[str, str]]:
    """The prompt as role/content messages (a legacy completions prompt becomes one user message)."""
    if "messages" in request:
        return [{"role": str(m.get("role", "user")), "content": message_text(m)} for m in request["messages"]]
    prompt = request.get("prompt", "")
    return [{"role": "user", "content": prompt if isinstance(prompt, str) else str(prompt)}]


def dataset_prompt(messages: list[dict[str, str]]) -> str:
    """The prompt as one text (TRL's ``prompt`` column; the reward model's input): a lone user message as
    it is, else ``role: content`` a turn."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


def hh_dialogue(messages: list[dict[str, str]], answer: str) -> str:
    turns: list[str] = []
    system = [m["content"] for m in messages if m["role"] == "system"]
    pending_system = "\n\n".join(system)
    for message in messages:
        if message["role"] == "system":
            continue
        speaker = "Assistant" if message["role"] == "assistant" else "Human"
        text = message["content"]
        if speaker == "Human" and pending_system:
            text, pending_system = f"{pending_system}\n\n{text}", ""
        turns.append(f"\n\n{speaker}: {text}")
    return "".join(turns) + f"\n\nAssistant: {answer}"


def row(
    fmt: str, request: dict[str, Any], chosen: str, rejected: str, margin: float | None = None
) -> dict[str, Any]:
    """
    >>> row("hh-rlhf", {"messages": [{"role": "user", "content": "Hi"}]}, "Hello!", "Go away.")["chosen"]
    '\\n\\nHuman: Hi\\n\\nAssistant: Hello!'
    """
    messages = messages_of(request)
    result: dict[str, Any]
    if fmt == "trl":
        result = {"prompt": dataset_prompt(messages), "chosen": chosen, "rejected": rejected}
    elif fmt == "trl-conversational":
        result = {
            "prompt": messages,
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
        }
    elif fmt == "openai-preference":
        return {
            "input": {"messages": messages},
            "preferred_output": [{"role": "assistant", "content": chosen}],
            "non_preferred_output": [{"role": "assistant", "content": rejected}],
        }
    elif fmt == "hh-rlhf":
        return {"chosen": hh_dialogue(messages, chosen), "rejected": hh_dialogue(messages, rejected)}
    else:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if margin is not None:
        result["margin"] = margin
    return result
