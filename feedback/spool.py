"""A local, append-only spool for events Redis could not take: JSON lines in numbered segment files,
replayed in order and deleted once delivered. Writes are flushed and fsynced, since the spool exists
for the moments something is already wrong."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path

_SEGMENT_BYTES = 8 * 1024 * 1024


class DiskSpool:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._pending = sum(len(path.read_bytes().splitlines()) for path in self._segments())

    @property
    def pending(self) -> int:
        return self._pending

    def _segments(self) -> list[Path]:
        return sorted(self.directory.glob("spool-*.jsonl"), key=lambda p: int(p.stem.split("-")[1]))

    def append(self, records: list[bytes]) -> None:
        segments = self._segments()
        target = segments[-1] if segments and segments[-1].stat().st_size < _SEGMENT_BYTES else None
        if target is None:
            number = int(segments[-1].stem.split("-")[1]) + 1 if segments else 0
            target = self.directory / f"spool-{number:08d}.jsonl"
        with target.open("ab") as out:
            out.write(b"".join(record.rstrip(b"\n") + b"\n" for record in records))
            out.flush()
            os.fsync(out.fileno())
        self._pending += len(records)

    async def replay(self, deliver: Callable[[list[bytes]], Awaitable[None]], batch: int = 500) -> int:
        """Send every spooled record, oldest first, through ``deliver``; a segment is deleted once all of
        it went. If ``deliver`` raises, what was not delivered stays. (A record may be handed over twice if
        the process dies between a delivery and this bookkeeping: the delivery dedupes by event id.)"""
        delivered = 0
        for segment in self._segments():
            records = segment.read_bytes().splitlines()
            for start in range(0, len(records), batch):
                try:
                    await deliver(records[start : start + batch])
                except BaseException:
                    self._keep(segment, records[start:])  # only what did not go stays
                    raise
                delivered += len(records[start : start + batch])
                self._pending -= len(records[start : start + batch])
            segment.unlink()
        return delivered

    @staticmethod
    def _keep(segment: Path, records: list[bytes]) -> None:
        temporary = segment.with_suffix(".tmp")
        temporary.write_bytes(b"".join(record + b"\n" for record in records))
        temporary.replace(segment)
