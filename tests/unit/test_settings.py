"""Settings: YAML + environment, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.settings import ConfigError, load_settings, settings_from_mapping


def test_defaults_need_no_file() -> None:
    settings = load_settings(None, environ={})
    assert settings.upstreams == []
    assert settings.server.port == 8080


def test_response_ids_are_bound_for_thirty_days_by_default() -> None:
    assert load_settings(None, environ={}).responses.owner_ttl_s == 30 * 24 * 3600


def test_env_configures_a_single_upstream() -> None:
    env = {"HHH_UPSTREAM_URL": "http://llm:8000/v1/", "HHH_UPSTREAM_API_KEY": "sk-x"}
    (upstream,) = load_settings(None, environ=env).upstreams
    assert upstream.url == "http://llm:8000/v1"
    assert upstream.api_key == "sk-x"
    assert upstream.models == []  # discovered from the upstream


def test_yaml_with_env_references(tmp_path: Path) -> None:
    config = tmp_path / "hhh.yaml"
    config.write_text(
        "server: {port: 9000}\n"
        "upstreams:\n"
        "  - name: openai\n"
        "    url: https://api.openai.com/v1\n"
        "    api_key: ${OPENAI_KEY}\n"
        "    models: [gpt-4o-mini]\n"
        "    timeouts: {read: 60}\n"
    )
    settings = load_settings(config, environ={"OPENAI_KEY": "sk-live"})
    assert settings.server.port == 9000
    assert settings.upstreams[0].api_key == "sk-live"
    assert settings.upstreams[0].timeouts.read == 60


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"server": {"port": "eighty"}}, "server.port"),
        ({"server": {"prot": 1}}, "server"),  # unknown key: msgspec names the object and the field
        ({"upstreams": [{"name": "a"}]}, "upstreams[0]"),
        ({"upstreams": [{"name": "a", "url": "ftp://x"}]}, "upstreams[0].url"),
        ({"upstreams": [{"name": "a", "url": "http://x"}, {"name": "a", "url": "http://y"}]}, "upstreams"),
        ({"auth": {"keys": [{"tenant": "t", "sha256": "short"}]}}, "auth.keys[0].sha256"),
        ({"upstreams": [{"name": "a", "url": "http://x", "api_key": "${NOPE}"}]}, "upstreams[0].api_key"),
        ({"responses": {"owner_ttl_s": 0}}, "responses.owner_ttl_s"),
    ],
)
def test_errors_name_the_key(raw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(raw, environ={})
    assert str(caught.value).startswith(key), str(caught.value)


def test_unknown_key_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="prot"):
        settings_from_mapping({"server": {"prot": 1}}, environ={})


def test_file_problems_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken, environ={})


def test_env_upstream_and_file_upstreams_conflict() -> None:
    with pytest.raises(ConfigError, match="HHH_UPSTREAM_URL"):
        settings_from_mapping(
            {"upstreams": [{"name": "a", "url": "http://x"}]}, environ={"HHH_UPSTREAM_URL": "http://y"}
        )


def test_the_shipped_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "deploy" / "examples" / "gateway.yaml"
    environ = {
        "OPENAI_API_KEY": "sk-test",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "LABEL_STUDIO_API_KEY": "ls-token",
        "HHH_WEBHOOK_SECRET": "a-secret-of-sixteen-or-more",
    }
    settings = load_settings(example, environ=environ)
    assert [u.name for u in settings.upstreams] == ["local", "openai"]
    assert settings.upstreams[1].api_key == "sk-test"
    assert settings.feedback.labelstudio.api_key == "ls-token"


def test_label_studio_settings_name_the_key_that_is_wrong() -> None:
    for raw, message in [
        ({"url": "ftp://x"}, "feedback.labelstudio.url: must start with http"),
        (
            {"webhook_url": "http://gw/v1/feedback/labelstudio"},
            "feedback.labelstudio.webhook_secret: required",
        ),
        ({"webhook_secret": "short"}, "feedback.labelstudio.webhook_secret: use at least 16"),
        ({"run_in_gateway": True}, "feedback.labelstudio.run_in_gateway: needs url and api_key"),
        ({"batch_size": 0}, "feedback.labelstudio.batch_size: must be at least 1"),
        ({"retention_days": 0}, "feedback.labelstudio.retention_days: must be more than 0"),
    ]:
        with pytest.raises(ConfigError, match=message):
            settings_from_mapping({"feedback": {"labelstudio": raw}}, environ={})
    from_env = settings_from_mapping(
        {}, environ={"LABEL_STUDIO_URL": "http://ls:8080", "LABEL_STUDIO_API_KEY": "k"}
    )
    assert (from_env.feedback.labelstudio.url, from_env.feedback.labelstudio.api_key) == (
        "http://ls:8080",
        "k",
    )
