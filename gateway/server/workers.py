"""``hhh serve --workers N``: N gateway processes on one port, so one machine uses all its cores.

Each worker is a whole gateway (its own guards, models and upstream client) on its own listening socket
with ``SO_REUSEPORT``: the kernel spreads new connections over the workers that listen, and a worker
listens only once its lifespan has started, so none gets traffic while its models load. Workers are
started with ``spawn``, not ``fork``: a forked copy of a process that has started threads or loaded torch
is not safe.

What must be one per deployment is not started per worker: with more than one worker the gateway needs a
configured upstream and ``redis.url`` (``require_shared_resources``) instead of its embedded llama.cpp
server and redis-server. The rate limits, response-id bindings, events and sync lock are then in that one
Redis, so they hold across workers as they do across replicas.

The parent supervises: SIGTERM or SIGINT is passed to every worker, each drains its streams
(``server.shutdown_grace_s``), and the parent waits for all. A worker that dies is started again; one that
fails its start-up stops the whole gateway, since every restart would fail the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time
from multiprocessing.process import BaseProcess
from types import FrameType

from gateway.settings import ConfigError, Settings

log = logging.getLogger("hhh.workers")

STARTUP_FAILURE = 3  # a worker's exit code when its start-up failed (uvicorn's own number)
_POLL_S = 0.5


def require_shared_resources(settings: Settings, workers: int) -> None:
    """More than one worker needs the resources the embedded singletons would otherwise provide."""
    if workers <= 1:
        return
    if not settings.upstreams:
        raise ConfigError(
            f"--workers {workers} needs an upstream: set `upstreams` in the config file or "
            "HHH_UPSTREAM_URL (each worker would otherwise start its own embedded llama.cpp server)"
        )
    if not settings.redis.url:
        raise ConfigError(
            f"--workers {workers} needs a shared Redis: set `redis.url` in the config file or REDIS_URL "
            "(each worker would otherwise start its own redis-server, and rate limits would not be shared)"
        )


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` beside the other workers' (``SO_REUSEPORT``); uvicorn listens on it
    after the lifespan has started."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def run_worker(settings: Settings, index: int) -> None:
    """One worker (in its own spawned process): the gateway, as ``hhh serve`` runs it, on its own socket."""
    import sys

    from gateway.app import create_app
    from gateway.cli.common import configure_logging
    from gateway.server.http_limits import uvicorn_options
    from gateway.server.shutdown import serve

    configure_logging(settings.server.log_level)
    # The parent set the model threads in the environment this process inherited.
    log.info("worker %d starting (pid %d)", index, os.getpid())
    try:  # a failure here would fail the same way in every restart: report it as a failed start-up
        app = create_app(settings)
        sockets = [reuse_port_socket(settings.server.host, settings.server.port)]
    except Exception:
        log.exception("worker %d could not start", index)
        sys.exit(STARTUP_FAILURE)
    started = serve(
        app,
        app.state.drain,
        sockets=sockets,
        **uvicorn_options(settings.server.limits),
        log_config=None,
        access_log=settings.server.access_log,
        loop="auto",
    )
    if not started:
        sys.exit(STARTUP_FAILURE)


class Supervisor:
    """Starts the workers, keeps them running, and passes shutdown signals on."""

    def __init__(self, settings: Settings, workers: int) -> None:
        self.settings = settings
        self.count = workers
        self.context = multiprocessing.get_context("spawn")
        self.processes: list[BaseProcess] = []
        self.stopping = False
        self.failed = False

    def _start(self, index: int) -> BaseProcess:
        process = self.context.Process(
            target=run_worker, args=(self.settings, index), name=f"hhh-worker-{index}"
        )
        process.start()
        return process

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        """Until a signal (or a failed start-up); returns the exit code for ``hhh serve``."""
        previous = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.processes = [self._start(index) for index in range(self.count)]
            log.info(
                "supervisor pid %d: %d workers on %s:%d",
                os.getpid(),
                self.count,
                self.settings.server.host,
                self.settings.server.port,
            )
            while not self.stopping:
                time.sleep(_POLL_S)
                self._replace_dead()
            for process in self.processes:
                if process.is_alive() and process.pid is not None:
                    os.kill(process.pid, signal.SIGTERM)  # each worker drains its own streams
            for process in self.processes:
                process.join()
            log.info("all %d workers stopped", self.count)
            return 1 if self.failed else 0
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _replace_dead(self) -> None:
        for index, process in enumerate(self.processes):
            if process.is_alive() or self.stopping:
                continue
            process.join()
            if process.exitcode == STARTUP_FAILURE:
                log.error("worker %d failed to start; stopping the gateway", index)
                self.failed = self.stopping = True
                return
            log.warning(
                "worker %d (pid %s) exited with %s; starting it again", index, process.pid, process.exitcode
            )
            self.processes[index] = self._start(index)
