"""``n`` for upstreams that ignore it: ask n times with n=1, then merge the answers as one.

The merged answer is what an upstream that supports ``n`` would have sent: choices indexed 0…n-1,
usage summed, one id.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import anyio

from gateway.relay.streaming import Chunk

_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


def _add_usage(total: dict[str, Any], usage: dict[str, Any] | None) -> None:
    for field in _USAGE_FIELDS:
        total[field] = total.get(field, 0) + int((usage or {}).get(field) or 0)


def merge_completions(bodies: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several one-choice completions → one completion with every choice.

    >>> a = {"id": "x", "choices": [{"index": 0}], "usage": {"prompt_tokens": 3, "completion_tokens": 1}}
    >>> b = {"id": "y", "choices": [{"index": 0}], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}
    >>> merged = merge_completions([a, b])
    >>> [c["index"] for c in merged["choices"]], merged["usage"]["completion_tokens"], merged["id"]
    ([0, 1], 3, 'x')
    """
    merged = dict(bodies[0])
    choices: list[dict[str, Any]] = []
    usage: dict[str, Any] = {}
    for body in bodies:
        for choice in body.get("choices") or ():
            choices.append({**choice, "index": len(choices)})
        _add_usage(usage, body.get("usage"))
    # Every copy read the same prompt, but it was billed once per copy; a single n-call reads it once.
    if usage:
        usage["prompt_tokens"] = int((bodies[0].get("usage") or {}).get("prompt_tokens") or 0)
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        merged["usage"] = usage
    merged["choices"] = choices
    return merged


_END = object()


async def merge_streams(streams: Sequence[AsyncIterator[Chunk]]) -> AsyncIterator[Chunk]:
    """Interleave n one-choice streams as they produce; stream i's choice becomes index i.

    Usage-only chunks are held back and summed into one, sent last. A failure in any stream ends the
    merged stream with that failure; leaving early cancels every stream.
    """
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int, stream: AsyncIterator[Chunk]) -> None:
        try:
            async for chunk in stream:
                await queue.put((index, chunk))
        except Exception as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            await queue.put((index, exc))
        else:
            await queue.put((index, _END))

    tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
    usage: dict[str, Any] = {}
    prompt_tokens = 0
    template: Chunk | None = None
    running = len(tasks)
    try:
        while running:
            index, item = await queue.get()
            if item is _END:
                running -= 1
                continue
            if isinstance(item, Exception):
                raise item
            chunk: Chunk = item
            template = template or chunk
            if chunk.get("usage") and not chunk.get("choices"):
                _add_usage(usage, chunk["usage"])
                prompt_tokens = int(chunk["usage"].get("prompt_tokens") or 0)
                continue
            chunk["id"] = template.get("id", chunk.get("id"))
            for choice in chunk.get("choices") or ():
                choice["index"] = index
            yield chunk
        if usage and template is not None:
            usage["prompt_tokens"] = prompt_tokens
            usage["total_tokens"] = prompt_tokens + usage["completion_tokens"]
            yield {**template, "choices": [], "usage": usage}
    finally:
        for task in tasks:
            task.cancel()
        with anyio.CancelScope(shield=True):  # a cancelled consumer must still reap its pumps
            await asyncio.gather(*tasks, return_exceptions=True)
