"""The protected-corpus index: winnowed fingerprints in sorted numpy arrays, in segments on disk.

A directory holds ``manifest.json`` (shingle size, window, documents with their metadata, which document
numbers are retired) and one ``segment-N.npz`` per indexing run: adding documents writes a new segment
and never rewrites old ones; re-adding a document id retires its old number. A lookup is one binary
search per segment for all of an answer's shingles at once, so its cost grows with the answer, not the
corpus (only logarithmically with the segment sizes).

Memory: 16 bytes a fingerprint (hash, document, position), about 2/(w+1) fingerprints a word.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from guards.ip.fingerprint import shingle_hashes, winnow, words

MANIFEST = "manifest.json"


class Document(msgspec.Struct, frozen=True):
    id: str
    title: str = ""
    owner: str = ""
    licence: str = ""
    url: str = ""


class Segment(msgspec.Struct):
    hashes: Any  # uint64, sorted
    documents: Any  # uint32: document number
    positions: Any  # uint32: shingle index in the document

    @classmethod
    def empty(cls) -> Segment:
        return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint32), np.zeros(0, np.uint32))

    @property
    def nbytes(self) -> int:
        return int(self.hashes.nbytes + self.documents.nbytes + self.positions.nbytes)


class Hit(msgspec.Struct, frozen=True):
    query_position: int
    document: int
    document_position: int


class FingerprintIndex:
    def __init__(self, k: int = 4, w: int = 6) -> None:
        self.k = k
        self.w = w
        self.documents: list[Document] = []
        self.retired: set[int] = set()
        self.segments: list[Segment] = []
        self._by_id: dict[str, int] = {}

    @property
    def guaranteed_words(self) -> int:
        """A shared run of this many words always shares a fingerprint."""
        return self.w + self.k - 1

    @property
    def nbytes(self) -> int:
        return sum(segment.nbytes for segment in self.segments)

    def add(
        self, items: Iterable[tuple[Document, str]], progress: Callable[[int], None] = lambda _: None
    ) -> int:
        """Index documents as one new segment; ``progress`` hears each document's size in characters."""
        hashes, documents, positions = [], [], []
        added = 0
        for document, text in items:
            old = self._by_id.get(document.id)
            if old is not None:
                self.retired.add(old)
            number = len(self.documents)
            self.documents.append(document)
            self._by_id[document.id] = number
            shingles = shingle_hashes(words(text).words, self.k)
            kept = winnow(shingles, self.w)
            hashes.append(shingles[kept])
            documents.append(np.full(len(kept), number, dtype=np.uint32))
            positions.append(kept.astype(np.uint32))
            added += 1
            progress(len(text))
        if hashes:
            all_hashes = np.concatenate(hashes)
            order = np.argsort(all_hashes, kind="stable")
            self.segments.append(
                Segment(all_hashes[order], np.concatenate(documents)[order], np.concatenate(positions)[order])
            )
        return added

    def lookup(self, query_hashes: Any) -> list[Hit]:
        hits: list[Hit] = []
        if len(query_hashes) == 0:
            return hits
        for segment in self.segments:
            if len(segment.hashes) == 0:
                continue
            left = np.searchsorted(segment.hashes, query_hashes, side="left")
            right = np.searchsorted(segment.hashes, query_hashes, side="right")
            for query_position in np.nonzero(right > left)[0]:
                for slot in range(left[query_position], right[query_position]):
                    document = int(segment.documents[slot])
                    if document not in self.retired:
                        hits.append(Hit(int(query_position), document, int(segment.positions[slot])))
        return hits

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for number, segment in enumerate(self.segments):
            path = directory / f"segment-{number}.npz"
            if not path.exists():  # segments are immutable once written
                np.savez(
                    path, hashes=segment.hashes, documents=segment.documents, positions=segment.positions
                )
        manifest = {
            "k": self.k,
            "w": self.w,
            "segments": len(self.segments),
            "retired": sorted(self.retired),
            "documents": [msgspec.to_builtins(d) for d in self.documents],
        }
        temporary = directory / f"{MANIFEST}.tmp"
        temporary.write_text(json.dumps(manifest))
        temporary.replace(directory / MANIFEST)  # readers see the old manifest or the new, never half

    @classmethod
    def load(cls, directory: Path) -> FingerprintIndex:
        manifest = json.loads((directory / MANIFEST).read_text())
        index = cls(manifest["k"], manifest["w"])
        index.documents = [msgspec.convert(d, Document) for d in manifest["documents"]]
        index.retired = set(manifest["retired"])
        index._by_id = {d.id: n for n, d in enumerate(index.documents) if n not in index.retired}
        for number in range(manifest["segments"]):
            with np.load(directory / f"segment-{number}.npz") as data:
                index.segments.append(Segment(data["hashes"], data["documents"], data["positions"]))
        return index

    @classmethod
    def open_or_create(cls, directory: Path, k: int = 4, w: int = 6) -> FingerprintIndex:
        return cls.load(directory) if (directory / MANIFEST).exists() else cls(k, w)
