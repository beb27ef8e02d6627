from __future__ import annotations

from pathlib import Path

import pytest

from gateway.auth import KeyRing, hash_key, new_key
from gateway.cli.main import main
from gateway.errors import AuthenticationFailed
from gateway.settings import ApiKey, AuthSettings


def test_keys_map_to_tenants_by_hash() -> None:
    key, digest = new_key()
    assert digest == hash_key(key)
    ring = KeyRing(AuthSettings(keys=[ApiKey(tenant="acme", sha256=digest)]))
    assert ring.authenticate(f"Bearer {key}").name == "acme"
    assert ring.authenticate(f"bearer   {key}").name == "acme"
    for header in (None, "", "Bearer", f"Token {key}", "Bearer nope"):
        with pytest.raises(AuthenticationFailed):
            ring.authenticate(header)


def test_no_keys_means_open() -> None:
    ring = KeyRing(AuthSettings())
    assert ring.is_open
    assert ring.authenticate(None).name == "anonymous"


def test_cli_help_and_keys(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "serve" in capsys.readouterr().out
    assert main(["keys", "new", "--tenant", "acme"]) == 0
    out = capsys.readouterr().out
    key = out.split("\n")[1].strip()
    assert f'sha256: "{hash_key(key)}"' in out


def test_cli_config_errors_name_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  port: high\n")
    assert main(["config", "check", "--config", str(config)]) == 2
    assert "server.port" in capsys.readouterr().err


def test_cli_config_check_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "ok.yaml"
    config.write_text(
        "upstreams:\n  - {name: a, url: 'http://x/v1', api_key: sk-secret}\n"
        "feedback:\n  labelstudio:\n    {url: 'http://ls:8080', api_key: ls-secret,\n"
        "     webhook_secret: hook-secret-0123456789}\n"
    )
    assert main(["config", "check", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    for secret in ("sk-secret", "ls-secret", "hook-secret"):
        assert secret not in out
    assert '"api_key": "***"' in out
    assert '"webhook_secret": "***"' in out


def test_serve_with_a_missing_embedded_model_fails_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HHH_UPSTREAM_URL", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text(f"embedded_llm: {{model_path: {tmp_path / 'missing.gguf'}}}\n")
    assert main(["serve", "--config", str(config)]) == 2
    assert "embedded_llm.model_path: no such file" in capsys.readouterr().err
