"""Reading a protected corpus: a JSON-lines manifest (``id``, ``path`` or ``text``, ``title``, ``owner``,
``licence``, ``url``), or a directory whose files become documents named by their relative paths."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from guards.ip.index import Document

TEXT_SUFFIXES = frozenset(
    ".txt .md .rst .py .js .ts .java .c .h .cc .cpp .hpp .go .rs .rb .php .cs .kt .swift .scala .sh .html "
    ".css .sql .yaml .yml .json .tex".split()
)


def read_corpus(location: Path) -> Iterator[tuple[Document, str]]:
    if location.is_dir():
        for path in sorted(location.rglob("*")):
            if path.is_file() and (path.suffix.lower() in TEXT_SUFFIXES or not path.suffix):
                relative = str(path.relative_to(location))
                yield Document(relative, title=path.name), path.read_text(errors="replace")
        return
    for number, line in enumerate(location.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            text = entry.pop("text", None)
            path = entry.pop("path", None)
            if text is None:
                if path is None:
                    raise ValueError("needs 'text' or 'path'")
                text = (location.parent / path).read_text(errors="replace")
            yield Document(**entry), text
        except (ValueError, TypeError, OSError) as exc:
            raise ValueError(f"{location}:{number}: {exc}") from None


def corpus_size(location: Path) -> int:
    """Characters to index, for a progress bar."""
    return sum(len(text) for _, text in read_corpus(location))
