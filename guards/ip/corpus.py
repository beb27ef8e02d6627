"""Reading a protected corpus: a JSON-lines manifest (``id``, ``path`` or ``text``, ``title``, ``owner``,
``licence``, ``url``), or a directory whose files become documents named by their relative paths.

In a directory every file is read whatever its name: licence texts are often named ``GPL-2.0`` or
``LGPL-2.1``, and a list of "text" suffixes silently dropped them. A file is skipped only for what its
content is (binary, empty, unreadable), and every skip is reported to the caller's ``on_skip``.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from guards.ip.index import Document

# Bytes looked at to tell text from binary: enough for any file format's magic number and header.
_SNIFF_BYTES = 1024

SkipReporter = Callable[[Path, str], None]


def binary_reason(head: bytes) -> str | None:
    """Why the first bytes of a file say it is not text, or None when they look like UTF-8 text.

    >>> binary_reason(b"GNU GENERAL PUBLIC LICENSE")
    >>> binary_reason(b"\\x89PNG\\r\\n\\x1a\\n\\x00\\x00")
    'binary (NUL bytes)'
    >>> binary_reason("naïve".encode()[:3])  # a character cut at the sniffing boundary is still text
    >>> binary_reason(b"caf\\xe9 latin-1")
    'binary (not UTF-8)'
    """
    if b"\x00" in head:
        return "binary (NUL bytes)"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "binary (not UTF-8)"
    return None


def _read_text_file(path: Path) -> tuple[str | None, str]:
    """The file's text, or None and why it was skipped."""
    try:
        with path.open("rb") as handle:
            head = handle.read(_SNIFF_BYTES)
            reason = binary_reason(head)
            if reason is not None:
                return None, reason
            data = head + handle.read()
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or type(exc).__name__})"
    text = data.decode("utf-8", errors="replace")
    if not text.strip():
        return None, "empty"
    return text, ""


def _read_directory(location: Path, on_skip: SkipReporter) -> Iterator[tuple[Document, str]]:
    for path in sorted(location.rglob("*")):
        if not path.is_file():
            continue
        text, reason = _read_text_file(path)
        if text is None:
            on_skip(path, reason)
            continue
        yield Document(str(path.relative_to(location)), title=path.name), text


def read_corpus(location: Path, on_skip: SkipReporter | None = None) -> Iterator[tuple[Document, str]]:
    """Every document of a manifest or a directory. ``on_skip(path, reason)`` hears each directory file
    left out; a bad manifest line is an error that names it, never a skip."""
    if location.is_dir():
        yield from _read_directory(location, on_skip or (lambda _path, _reason: None))
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
