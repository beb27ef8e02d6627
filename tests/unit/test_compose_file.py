"""deploy/compose.yaml: valid against the Compose specification's schema (the one docker-compose 1.29 checks
with, tests/data/compose_spec.json, Apache-2.0), and everything it refers to exists: build contexts and the
Dockerfile, mounted files, the image variants it runs, the model file inside the llm image, the services the
load balancer and the gateway config name. ``docker-compose config`` itself needs Docker's packages, which a
test machine may not have; deploy/image-check.sh's machine ran it (docs/deploy.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from gateway.server.shutdown import SERVER_MARGIN_S
from gateway.settings import settings_from_mapping

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
SCHEMA = ROOT / "tests" / "data" / "compose_spec.json"


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return loaded


def _seconds(duration: str) -> float:
    match = re.fullmatch(r"(\d+)s", duration)
    assert match, duration
    return float(match.group(1))


def _gateway_config(service: dict[str, Any]) -> Any:
    mount = next(v for v in service["volumes"] if v.endswith(":/etc/hhh/gateway.yaml:ro"))
    raw = yaml.safe_load((DEPLOY / mount.split(":")[0]).read_text())
    return settings_from_mapping(raw, {k: str(v) for k, v in service["environment"].items()})


def test_the_compose_file_is_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft201909Validator(schema).validate(compose)


def test_a_misspelt_key_would_fail_the_schema(compose: dict[str, Any]) -> None:
    """The schema check can fail: services forbid unknown keys."""
    broken = {**compose, "services": {**compose["services"], "redis": {"image": "redis", "restrat": "no"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft201909Validator(json.loads(SCHEMA.read_text())).validate(broken)


def test_builds_mounts_and_images_refer_to_what_exists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    built: dict[str, str] = {}
    for name, service in services.items():
        if "build" in service:
            context = (DEPLOY / service["build"]["context"]).resolve()
            assert context == ROOT, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
            built[service["image"]] = service["build"]["args"]["VARIANT"]
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), f"{name}: {source}"
            else:
                assert source in compose["volumes"], f"{name}: volume {source}"
    assert built == {"hhh-gateway:slim": "slim", "hhh-gateway:llm": "llm"}
    assert "ARG VARIANT=slim" in dockerfile
    assert '"$VARIANT" = "llm"' in dockerfile
    for name, service in services.items():
        if service["image"].startswith("hhh-gateway"):
            assert service["image"] in built, name


def test_two_gateway_replicas_share_one_persistent_redis_behind_the_load_balancer(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    gateways = [name for name, s in services.items() if s.get("command", [None])[0] == "serve"]
    assert sorted(gateways) == ["gateway-a", "gateway-b"]
    nginx = (DEPLOY / "compose" / "nginx.conf").read_text()
    assert sorted(re.findall(r"server (\S+):8080;", nginx)) == gateways
    assert "proxy_buffering off;" in nginx  # streams are not held back
    redis_urls = {services[name]["environment"]["REDIS_URL"] for name in [*gateways, "sync-worker"]}
    assert redis_urls == {"redis://redis:6379/0"}
    redis = services["redis"]
    assert redis["command"][redis["command"].index("--appendonly") + 1] == "yes"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    for name in gateways:
        settings = _gateway_config(services[name])
        assert settings.server.port == 8080
        assert settings.server.host == "0.0.0.0"
        drain = settings.server.shutdown_grace_s + SERVER_MARGIN_S
        assert _seconds(services[name]["stop_grace_period"]) > drain


def test_the_gateways_upstream_is_the_model_server_from_the_llm_image(compose: dict[str, Any]) -> None:
    services = compose["services"]
    settings = _gateway_config(services["gateway-a"])
    upstream = urlsplit(settings.upstreams[0].url)
    model_server = services[upstream.hostname or ""]
    command = model_server["command"]
    assert model_server["entrypoint"] == ["python", "-m", "llama_cpp.server"]
    assert command[command.index("--port") + 1] == str(upstream.port)
    # The model file is the link the Dockerfile makes in the llm variant.
    assert command[command.index("--model") + 1] in (DEPLOY / "Dockerfile").read_text()


def test_one_sync_worker_syncs_with_the_label_studio_of_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    workers = [n for n, s in services.items() if s.get("command", [])[:2] == ["feedback", "sync"]]
    assert workers == ["sync-worker"]
    worker = services["sync-worker"]
    assert "--watch" in worker["command"]
    settings = _gateway_config(worker)
    label_studio = urlsplit(settings.feedback.labelstudio.url or "")
    assert label_studio.hostname in services
    # The worker's key is the token Label Studio creates its user with.
    token = services["label-studio"]["environment"]["LABEL_STUDIO_USER_TOKEN"]
    assert worker["environment"]["LABEL_STUDIO_API_KEY"] == token
