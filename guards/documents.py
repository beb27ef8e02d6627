"""``<document id="..." title="..." url="...">text</document>`` blocks in a message: where a client
pastes retrieved text (the gateway's sources, ``gateway.guarded.sources``; the injection guard reads them
as indirect input)."""

from __future__ import annotations

import re

# One pass over the tags, never a search from each opening tag to the end of the text (which was
# quadratic: "<document>" repeated 12,000 times froze the event loop for seconds). An opening tag's
# attributes stop at the next "<" or ">", so no scan crosses another tag, and each attribute name starts
# at a word boundary: every pattern here is linear in the text.
_TAG = re.compile(r"<document\b([^<>]*)>|</document>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r'(?<!\w)(\w+)\s*=\s*"([^"]*)"')


def document_blocks(text: str) -> list[tuple[dict[str, str], str]]:
    """``<document ...>text</document>`` blocks: each opening tag ends at the first closing tag after it
    (an opening tag inside a block is part of its text), and an opening tag never closed is no block.

    >>> document_blocks('a <document id="1" title="T">one</document> <DOCUMENT>two</Document> <document>')
    [({'id': '1', 'title': 'T'}, 'one'), ({}, 'two')]
    """
    blocks: list[tuple[dict[str, str], str]] = []
    opening: re.Match[str] | None = None
    for tag in _TAG.finditer(text):
        if tag.group(0).startswith("</"):
            if opening is not None:
                attributes = dict(_ATTRIBUTE.findall(opening.group(1)))
                blocks.append((attributes, text[opening.end() : tag.start()].strip()))
                opening = None
        elif opening is None:
            opening = tag
    return blocks
