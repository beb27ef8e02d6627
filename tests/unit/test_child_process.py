"""A predict function in a child process of its own (``guards.child_process``): it answers like the
function, and every way the child can fail ends one call with an error, never the runner."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from guards.child_process import ChildPredictor, ChildProcessDied, ChildProcessError
from guards.runner import BatchingRunner
from tests.support.child_models import build_broken, build_echo
from tests.support.processes import wait_gone

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def echo() -> ChildPredictor[str, str, str]:
    predictor: ChildPredictor[str, str, str] = ChildPredictor("echo", build_echo, "> ")
    yield predictor  # type: ignore[misc]
    predictor.close()


def test_answers_like_the_function_from_another_process(echo: ChildPredictor[str, str, str]) -> None:
    assert echo(["a", "b"]) == ["> a", "> b"]
    [pid] = echo(["pid"])
    assert int(pid) == echo.pid != os.getpid()


def test_the_child_loads_only_what_its_build_needs(echo: ChildPredictor[str, str, str]) -> None:
    """Spawned, not forked: the parent's models and web framework are not copied into it."""
    import litestar  # noqa: F401 - loaded here, so a fork would carry it

    assert echo(["modules"]) == [""]


def test_blocked_modules_cannot_be_imported_in_the_child() -> None:
    """A library that imports torch when it is installed (thinc) does not drag it into the PII child."""
    predictor: ChildPredictor[str, str, str] = ChildPredictor(
        "echo", build_echo, "", blocked_modules=("json.tool",)
    )
    try:
        assert predictor(["import:json.tool", "import:json"]) == ["blocked", "imported"]
    finally:
        predictor.close()


def test_an_error_in_predict_fails_that_call_and_the_child_serves_on(
    echo: ChildPredictor[str, str, str],
) -> None:
    [before] = echo(["pid"])
    with pytest.raises(ChildProcessError, match="ValueError: asked to fail"):
        echo(["x", "fail"])
    assert echo(["pid"]) == [before]


def test_a_model_that_cannot_load_fails_the_start_naming_why() -> None:
    predictor: ChildPredictor[str, str, str] = ChildPredictor("broken", build_broken, "no such model: /m")
    with pytest.raises(ChildProcessError, match="could not start: FileNotFoundError: no such model: /m"):
        predictor(["x"])
    predictor.close()


def test_a_killed_child_fails_one_call_and_the_next_starts_a_new_one() -> None:
    restarts: list[int] = []
    predictor: ChildPredictor[str, str, str] = ChildPredictor(
        "echo", build_echo, "> ", on_restart=lambda: restarts.append(1)
    )
    try:
        [first] = predictor(["pid"])
        os.kill(int(first), 9)
        assert wait_gone(int(first))
        with pytest.raises(ChildProcessDied, match="exit code -9"):
            predictor(["x"])
        [second] = predictor(["pid"])
        assert second != first
        assert restarts == [1]
    finally:
        predictor.close()


def test_a_crash_looping_child_is_not_started_again_at_every_call() -> None:
    """The threat: a text that kills the child (or a memory limit too small) would otherwise make every
    batch pay a model load. The first young death restarts at once; from the second, calls fail at once
    for a back-off, then a child starts again."""
    starts: list[int] = []
    predictor: ChildPredictor[str, str, str] = ChildPredictor(
        "loop", build_echo, "> ", on_restart=lambda: starts.append(1), restart_backoff_s=0.5
    )
    try:
        assert predictor(["a"]) == ["> a"]
        with pytest.raises(ChildProcessDied, match="exit code 3"):
            predictor(["die"])
        with pytest.raises(ChildProcessDied, match="exit code 3"):
            predictor(["die"])  # started again at once, and died again
        assert starts == [1]
        with pytest.raises(ChildProcessDied, match="keeps dying; next start in"):
            predictor(["a"])
        assert starts == [1]  # no start during the back-off
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                assert predictor(["a"]) == ["> a"]
                break
            except ChildProcessDied:
                time.sleep(0.1)
        assert starts == [1, 1]
    finally:
        predictor.close()


def test_a_stuck_call_has_its_child_killed_and_the_runner_is_not_held() -> None:
    predictor: ChildPredictor[str, str, str] = ChildPredictor("echo", build_echo, "> ", call_timeout_s=0.5)
    try:
        [stuck] = predictor(["pid"])
        with pytest.raises(ChildProcessDied, match=r"took over 0\.5 s"):
            predictor(["sleep"])
        assert wait_gone(int(stuck))
        assert predictor(["a"]) == ["> a"]
    finally:
        predictor.close()


def test_close_ends_the_child_and_later_calls_fail(echo: ChildPredictor[str, str, str]) -> None:
    [pid] = echo(["pid"])
    echo.close()
    assert wait_gone(int(pid))
    with pytest.raises(ChildProcessDied, match="closed"):
        echo(["a"])


def test_a_child_exits_when_its_parent_is_killed() -> None:
    """A gateway killed outright (SIGKILL, the OOM killer) leaves no presidio child holding memory."""
    script = (
        "import os, sys\n"
        "from guards.child_process import ChildPredictor\n"
        "from tests.support.child_models import build_echo\n"
        "p = ChildPredictor('echo', build_echo, '')\n"
        "print(p(['pid'])[0], flush=True)\n"
        "os.kill(os.getpid(), 9)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == -9, done.stderr
    assert wait_gone(int(done.stdout.strip()))


async def test_the_runner_closes_its_child() -> None:
    predictor: ChildPredictor[str, str, str] = ChildPredictor("echo", build_echo, "> ")
    runner = BatchingRunner("echo", predictor, close_predict=predictor.close)
    await runner.start()
    assert await runner.run(["a", "b"]) == ["> a", "> b"]
    [pid] = await runner.run(["pid"])
    await runner.close()
    assert wait_gone(int(pid))
