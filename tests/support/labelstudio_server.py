"""A real Label Studio server on loopback, from its own virtual environment.

Migrating a fresh database takes 40-50 s; so a template data directory is migrated once (cached under
.cache/) and every server starts from a copy of it, in about 5 s. The copy includes the template's .env,
whose SECRET_KEY signs the API token, so the token made at ``init`` works on every copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from gateway.relay.embedded_llm import free_port

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("HHH_LABEL_STUDIO_VENV", ROOT / ".cache" / "label-studio-venv"))
TEMPLATE = ROOT / ".cache" / "label-studio-template-1.23.2"
USERNAME = "annotator@example.com"
PASSWORD = "hhh-test-password"
TOKEN = "5f0c1e2d3a4b5c6d7e8f90a1b2c3d4e5f6a7b8c9"  # a legacy token: 40 hex characters


def _environment(data_dir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
        "LABEL_STUDIO_USERNAME": USERNAME,
        "LABEL_STUDIO_PASSWORD": PASSWORD,
        "LABEL_STUDIO_USER_TOKEN": TOKEN,
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
        "LATEST_VERSION_CHECK": "false",
        "COLLECT_ANALYTICS": "false",
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        # Tests only: webhooks to 127.0.0.1 are refused otherwise.
        "SSRF_PROTECTION_ENABLED": "false",
    }


def ensure_installed() -> Path:
    """The label-studio executable; installs it (deploy/labelstudio-venv.sh) and migrates the template."""
    subprocess.run(
        ["bash", str(ROOT / "deploy" / "labelstudio-venv.sh")],
        check=True,
        env={**os.environ, "PYTHON": sys.executable, "HHH_LABEL_STUDIO_VENV": str(VENV)},
    )
    executable = VENV / "bin" / "label-studio"
    if not (TEMPLATE / "label_studio.sqlite3").exists():
        building = TEMPLATE.with_name(TEMPLATE.name + ".building")
        shutil.rmtree(building, ignore_errors=True)
        building.mkdir(parents=True)
        subprocess.run(
            [str(executable), "init", "--data-dir", str(building), "--username", USERNAME,
             "--password", PASSWORD, "--user-token", TOKEN, "--enable-legacy-api-token", "--quiet"],
            check=True, env=_environment(building), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        building.rename(TEMPLATE)
    return executable


class LabelStudioServer:
    """One server on its own copy of the template; ``stop`` and ``start`` keep its data and port."""

    def __init__(self, executable: Path, data_dir: Path, log_dir: Path) -> None:
        self.executable = executable
        self.data_dir = data_dir
        self.log_path = log_dir / f"label-studio-{data_dir.name}.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = TOKEN
        self._process: subprocess.Popen[bytes] | None = None
        shutil.copytree(TEMPLATE, data_dir)

    def start(self, timeout: float = 120) -> None:
        command = [
            str(self.executable), "start", "--no-browser", "--internal-host", "127.0.0.1",
            "--port", str(self.port), "--data-dir", str(self.data_dir),
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=_environment(self.data_dir),
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).json().get("status") == "UP":
                    return
            except (httpx.HTTPError, ValueError):
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Label Studio did not start; see {self.log_path}")
            time.sleep(0.25)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, 15)  # its own session: the server and any workers it spawned
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
