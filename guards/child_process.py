"""A model's predict function run in a child process of its own, called like the function itself.

Why: a guard whose work is mostly Python (presidio's recognisers, spaCy's pipeline around its matrix
products) holds the GIL while it runs, so in the gateway's process it takes turns with the event loop:
under load a prompt's PII check took three to four times its own CPU time, and every request waits for
it before the upstream is asked. In a child it has its own GIL and its own share of the cores, and the
event loop keeps all of the parent's (docs/performance-throughput.md has the figures).

How: the child is spawned (never forked: the parent has threads, and fork copies their locks held), builds
the predict function from a picklable ``build(argument)`` (so the model is loaded in the child only),
answers ``ready``, then serves one batch at a time over a pipe. It is called from one thread at a time
(the batching runner's worker), which blocks on the pipe without holding the GIL.

Fail modes, all surfacing as an exception from the call (a guard's ``on_error`` decides what the client
gets):
- ``predict`` raises in the child: that batch fails with the child's message; the child lives on.
- the child dies (killed, out of memory, a crash in native code), or a call outlasts
  ``call_timeout_s`` (then it is killed): that batch fails with ``ChildProcessDied``, and the next call
  starts a new child (counted, logged).
- ``build`` fails (a model that is not there): the call fails with the child's message, so start-up
  fails naming it.
- children that keep dying young (a crash loop: a model that kills its process on some input, a memory
  limit too small) are not started again at once: from the second death in a row of a child younger
  than a minute, calls fail at once (``ChildProcessDied``) for a back-off that doubles from
  ``restart_backoff_s`` up to a minute, instead of each paying a model load.
The child exits by itself when the parent goes (its end of the pipe closes), and ignores Ctrl-C (the
parent shuts it down in order).
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Generic, TypeVar

log = logging.getLogger("hhh.runner")

In = TypeVar("In")
Out = TypeVar("Out")
Arg = TypeVar("Arg")

# How long the child gets to exit after it is asked to, before it is killed.
_EXIT_GRACE_S = 5.0
# A child that lived this long before it died was not crash-looping: the next start is at once.
_STABLE_S = 60.0
_MAX_BACKOFF_S = 60.0


class ChildProcessDied(RuntimeError):
    """The child process went away during a call."""


class ChildProcessError(RuntimeError):
    """The child answered with an error: its build or its predict raised."""


class ChildPredictor(Generic[Arg, In, Out]):
    """``build(argument)``'s predict function, run in a spawned child process."""

    def __init__(
        self,
        name: str,
        build: Callable[[Arg], Callable[[list[In]], list[Out]]],
        argument: Arg,
        on_restart: Callable[[], None] | None = None,
        call_timeout_s: float | None = 120.0,
        blocked_modules: tuple[str, ...] = (),
        restart_backoff_s: float = 1.0,
    ) -> None:
        self.name = name
        self._build = build
        self._argument = argument
        self._on_restart = on_restart
        # A call that takes longer than this (a stuck model) has its child killed and started afresh,
        # instead of holding the runner for good. Far above any guard's time-out: a last resort.
        self._call_timeout_s = call_timeout_s
        # Modules the child must not import: libraries that only probe for them (thinc imports torch when
        # it is installed) would otherwise load them, at hundreds of MiB, for nothing.
        self._blocked_modules = blocked_modules
        self._first_backoff_s = restart_backoff_s
        self._quick_deaths = 0  # children in a row that died before they had lived _STABLE_S
        self._not_before = 0.0  # monotonic time before which no child is started
        self._started_at = 0.0  # when the current child was started (0: none was yet)
        self._lock = threading.Lock()  # one call or close at a time
        self._process: BaseProcess | None = None
        self._connection: Connection | None = None
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process id, while one runs."""
        return self._process.pid if self._process is not None and self._process.is_alive() else None

    def __call__(self, items: list[In]) -> list[Out]:
        with self._lock:
            if self._closed:
                raise ChildProcessDied(f"{self.name}: closed")
            if self._connection is None and time.monotonic() < self._not_before:
                wait = self._not_before - time.monotonic()
                message = f"{self.name}: the child process keeps dying; next start in {wait:.1f} s"
                raise ChildProcessDied(message)
            connection = self._connection or self._start()
            try:
                connection.send(items)
                if not connection.poll(self._call_timeout_s):
                    self._kill()
                    raise ChildProcessDied(
                        f"{self.name}: a call took over {self._call_timeout_s:g} s; the child was killed"
                    )
                kind, value = connection.recv()
            except (EOFError, OSError) as exc:
                code = self._forget()
                raise ChildProcessDied(f"{self.name}: the child process died (exit code {code})") from exc
        if kind == "error":
            raise ChildProcessError(f"{self.name}: {value}")
        result: list[Out] = value
        return result

    def _start(self) -> Connection:
        if self._started_at:
            log.warning("runner %s: starting a new child process", self.name)
            if self._on_restart is not None:
                self._on_restart()
        self._started_at = time.monotonic()
        started = time.perf_counter()
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(
            target=_serve,
            args=(theirs, self._build, self._argument, self._blocked_modules),
            name=f"hhh-{self.name}"[:60],
            daemon=True,  # ended with the parent's interpreter, should it exit without closing us
        )
        process.start()
        theirs.close()  # the child holds its own copy: when it dies, our recv sees the end
        self._process, self._connection = process, ours
        try:
            kind, value = ours.recv()
        except (EOFError, OSError) as exc:
            code = self._forget()
            message = f"{self.name}: the child process died starting (exit code {code})"
            raise ChildProcessDied(message) from exc
        if kind == "error":
            self._forget()
            raise ChildProcessError(f"{self.name}: could not start: {value}")
        seconds = time.perf_counter() - started
        log.info("runner %s: child process %s ready in %.1f s", self.name, process.pid, seconds)
        return ours

    def _forget(self) -> int | None:
        """Drop the child (dead or unwanted): close our end, reap it. Returns its exit code."""
        process, connection = self._process, self._connection
        self._process = self._connection = None
        if process is not None:
            self._schedule_next_start()
        if connection is not None:
            connection.close()
        if process is None:
            return None
        process.join(_EXIT_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
        code = process.exitcode
        process.close()
        return code

    def _schedule_next_start(self) -> None:
        """After a child went: the next starts at once if it had lived a while or is the first to die
        young; after that, each young death doubles the wait."""
        lived = time.monotonic() - self._started_at
        self._quick_deaths = 0 if lived >= _STABLE_S else self._quick_deaths + 1
        backoff = 0.0
        if self._quick_deaths >= 2:
            backoff = min(_MAX_BACKOFF_S, self._first_backoff_s * 2 ** (self._quick_deaths - 2))
        self._not_before = time.monotonic() + backoff

    def _kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
        self._forget()

    def close(self) -> None:
        """End the child. A call in progress ends with ``ChildProcessDied``; none start after."""
        self._closed = True
        process = self._process
        if process is not None and process.is_alive():
            process.terminate()  # a call in progress sees the pipe end and gives the lock back
        with self._lock:
            self._forget()


def _serve(
    connection: Connection, build: Callable[[Any], Any], argument: Any, blocked: tuple[str, ...]
) -> None:
    """The child's loop: build, say ready, then answer each batch until the parent's end closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent ends us
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # "import name" raises ImportError
    try:
        predict = build(argument)
    except Exception as exc:  # noqa: BLE001 - said to the parent, which fails its start-up with it
        connection.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    gc.collect()  # the model is loaded for good: keep the collector from walking it (gateway.server.heap)
    gc.freeze()
    connection.send(("ready", None))
    while True:
        try:
            items = connection.recv()
        except (EOFError, OSError):
            return  # the parent is gone or closed us
        try:
            answer: tuple[str, Any] = ("ok", predict(items))
        except Exception as exc:  # noqa: BLE001 - this batch fails in the parent; the child serves on
            answer = ("error", f"{type(exc).__name__}: {exc}")
        connection.send(answer)
