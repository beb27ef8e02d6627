"""A client that leaves before its answer begins cancels the work done for it, the upstream call first.

An ASGI server does not cancel a handler when its client goes away; it only answers the next
``receive()`` with ``http.disconnect``. Until the response starts nothing reads ``receive()``, so a
handler waiting on a slow upstream would hold that upstream's connection (and its generation) for up to
the read timeout, for nobody. vLLM's ``with_cancellation`` is the model: race the work against the
disconnect, and cancel the loser. Once the response has started, the stream relay's own disconnect
handling takes over (see ``gateway.relay.streaming.closing``).

Call it only after the request body has been read: from then on, ``receive()`` has nothing else to say.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from litestar.types import Receive

from gateway.errors import ClientDisconnected

log = logging.getLogger("hhh.disconnect")

T = TypeVar("T")


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """``await work``, unless the client disconnects first: then cancel it and raise ``ClientDisconnected``
    (its response goes nowhere, but the status is logged and counted)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        await asyncio.wait((task, watcher), return_when=asyncio.FIRST_COMPLETED)
        if not task.done() and watcher.exception() is not None:
            await asyncio.wait((task,))  # the watcher itself failed: the work goes on, unwatched
    finally:
        # Also reached when this request is cancelled itself: neither task may outlive it.
        for pending in (task, watcher):
            pending.cancel()
        await asyncio.gather(task, watcher, return_exceptions=True)
    if task.cancelled():
        log.info("client disconnected before its answer began; the upstream call was cancelled")
        raise ClientDisconnected("The client disconnected before the answer began.")
    return task.result()
