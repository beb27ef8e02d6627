"""Where text sits in an OpenAI message's ``content``: the one reader of it, for the gateway's guards and
sources and for feedback's ranking tasks and datasets alike.

``content`` is a string, or a list of parts. Text parts carry ``text``; an assistant's refusal part
carries ``refusal``; image, audio and file parts carry no text.
"""

from __future__ import annotations

from typing import Any

# The keys of a content part that hold text, in the order they are read.
TEXT_PART_KEYS = ("text", "refusal")


def text_parts(content: Any) -> list[tuple[int, str]]:
    """``(index, key)`` of each string a list of content parts holds, in order.

    >>> text_parts([{"type": "text", "text": "a"}, {"type": "image_url"}, {"refusal": "b"}])
    [(0, 'text'), (2, 'refusal')]
    """
    if not isinstance(content, list):
        return []
    return [
        (index, key)
        for index, part in enumerate(content)
        if isinstance(part, dict)
        for key in TEXT_PART_KEYS
        if isinstance(part.get(key), str)
    ]


def content_text(content: Any) -> str:
    """A message's content as one text: a string as it is, parts' texts joined by newlines.

    >>> content_text([{"type": "text", "text": "a"}, {"type": "image_url"}, {"type": "text", "text": "b"}])
    'a\\nb'
    >>> content_text(None)
    ''
    """
    if isinstance(content, str):
        return content
    return "\n".join(content[index][key] for index, key in text_parts(content))


def message_text(message: Any) -> str:
    """The text of one message's content (a message that is not a JSON object has none)."""
    return content_text(message.get("content")) if isinstance(message, dict) else ""
