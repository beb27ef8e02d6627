"""``hhh serve --workers``: a count below one is a usage error, and more than one worker without an
upstream or a shared Redis is a configuration error naming the options, before any worker starts."""

from __future__ import annotations

import pytest

from gateway.cli.main import main


@pytest.mark.parametrize("count", ["0", "-1", "two"])
def test_workers_below_one_or_not_a_number_is_a_usage_error(
    count: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", f"--workers={count}"])
    assert exit_info.value.code == 2
    assert "argument --workers" in capsys.readouterr().err


def test_workers_without_an_upstream_names_the_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HHH_UPSTREAM_URL", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.delenv("HHH_CONFIG", raising=False)
    assert main(["serve", "--workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "upstreams" in error
    assert "HHH_UPSTREAM_URL" in error


def test_workers_without_a_shared_redis_names_the_options(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HHH_UPSTREAM_URL", "http://127.0.0.1:1/v1")
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("HHH_CONFIG", raising=False)
    assert main(["serve", "--workers", "2"]) == 2
    error = capsys.readouterr().err
    assert "redis.url" in error
    assert "REDIS_URL" in error
