"""The Kubernetes manifests (deploy/kubernetes), rendered by the real ``kubectl kustomize`` and validated
against the Kubernetes schemas by ``kubernetes-validate``; then what matters for running them: probes on the
gateway's real endpoints, non-root pods, a termination grace longer than the gateway's own drain, one sync
worker, GPUs only in the GPU overlay, and a ConfigMap the gateway accepts. No cluster runs here: this checks
the manifests, not a deployment."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gateway.server.shutdown import SERVER_MARGIN_S
from gateway.settings import settings_from_mapping

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
RENDERED = ("overlays/cpu", "overlays/gpu", "redis-trial")
# The kubectl of our machines (1.32) and the newest schemas kubernetes-validate knows.
VERSIONS = ("1.32.0", kubernetes_validate.latest_version())

Manifest = dict[str, Any]


def _render(kustomization: str) -> list[Manifest]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(KUBERNETES / kustomization)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[Manifest]]:
    return {name: _render(name) for name in RENDERED}


def _one(manifests: list[Manifest], kind: str, name: str) -> Manifest:
    found = [m for m in manifests if m["kind"] == kind and m["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def _gateway(manifests: list[Manifest]) -> tuple[Manifest, Manifest]:
    deployment = _one(manifests, "Deployment", "hhh-gateway")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return deployment, next(c for c in containers if c["name"] == "gateway")


def _gateway_settings(manifests: list[Manifest]) -> Any:
    """The ConfigMap's gateway.yaml, read as the gateway reads it, with the Secret's values as environment."""
    configs = [m for m in manifests if m["kind"] == "ConfigMap"]
    assert len(configs) == 1
    config = configs[0]
    secret = _one(manifests, "Secret", "hhh-gateway-secrets")
    return settings_from_mapping(yaml.safe_load(config["data"]["gateway.yaml"]), dict(secret["stringData"]))


@pytest.mark.parametrize("kustomization", RENDERED)
@pytest.mark.parametrize("version", VERSIONS)
def test_every_rendered_manifest_passes_the_kubernetes_schema(
    rendered: dict[str, list[Manifest]], kustomization: str, version: str
) -> None:
    assert rendered[kustomization]
    for manifest in rendered[kustomization]:
        # strict: an unknown or misspelt field (the kind a cluster silently drops) fails too.
        kubernetes_validate.validate(manifest, version, strict=True)


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_probes_knock_on_the_gateways_real_endpoints_and_port(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    _, container = _gateway(rendered[overlay])
    settings = _gateway_settings(rendered[overlay])
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports["http"] == settings.server.port
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", str(settings.server.port)]
    assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_the_kubelet_waits_longer_than_the_gateway_drains_its_streams(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    """Killed before its streams end, a pod cuts them in silence: the kubelet's grace must cover the
    preStop sleep, server.shutdown_grace_s and the server's margin after it."""
    deployment, container = _gateway(rendered[overlay])
    settings = _gateway_settings(rendered[overlay])
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = float(command[1]) + settings.server.shutdown_grace_s + SERVER_MARGIN_S
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain


def test_the_configmap_is_a_gateway_config_that_loads(rendered: dict[str, list[Manifest]]) -> None:
    settings = _gateway_settings(rendered["overlays/cpu"])
    assert settings.server.host == "0.0.0.0"
    assert settings.redis.url == "redis://hhh-redis:6379/0"  # the Secret's REDIS_URL reached it
    assert settings.upstreams


@pytest.mark.parametrize("kustomization", RENDERED)
def test_no_pod_runs_as_root_and_every_container_asks_for_resources(
    rendered: dict[str, list[Manifest]], kustomization: str
) -> None:
    dockerfile_user = re.search(r"^USER (\d+)", (ROOT / "deploy" / "Dockerfile").read_text(), re.M)
    assert dockerfile_user is not None
    workloads = [m for m in rendered[kustomization] if m["kind"] in ("Deployment", "StatefulSet")]
    assert workloads
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        if pod["containers"][0]["image"].startswith("hhh-gateway"):
            assert pod["securityContext"]["runAsUser"] == int(dockerfile_user.group(1))
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
            assert "memory" in container["resources"]["limits"]


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_one_sync_worker_never_two_and_the_autoscaler_scales_only_the_gateway(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    worker = _one(manifests, "Deployment", "hhh-sync-worker")
    assert worker["spec"]["replicas"] == 1
    assert worker["spec"]["strategy"] == {"type": "Recreate"}  # a rollout stops the old one first
    container = worker["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == ["feedback", "sync", "--watch"]
    annotations = worker["spec"]["template"]["metadata"]["annotations"]
    metrics_port = container["args"][container["args"].index("--metrics-port") + 1]
    assert annotations["prometheus.io/port"] == metrics_port
    assert container["args"][container["args"].index("--metrics-host") + 1] == "0.0.0.0"

    autoscalers = [m for m in manifests if m["kind"] == "HorizontalPodAutoscaler"]
    assert [a["spec"]["scaleTargetRef"]["name"] for a in autoscalers] == ["hhh-gateway"]
    assert autoscalers[0]["spec"]["minReplicas"] >= 2
    budget = _one(manifests, "PodDisruptionBudget", "hhh-gateway")
    deployment, _ = _gateway(manifests)
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    assert budget["spec"]["minAvailable"] < autoscalers[0]["spec"]["minReplicas"]
    assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"] == "/metrics"


def test_gpus_are_asked_for_only_in_the_gpu_overlay(rendered: dict[str, list[Manifest]]) -> None:
    gpu_deployment, gpu_container = _gateway(rendered["overlays/gpu"])
    pod = gpu_deployment["spec"]["template"]["spec"]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert gpu_container["image"].endswith(":cuda")
    worker = _one(rendered["overlays/gpu"], "Deployment", "hhh-sync-worker")
    assert worker["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":slim")

    assert "nvidia.com" not in yaml.safe_dump_all(rendered["overlays/cpu"])
    _, cpu_container = _gateway(rendered["overlays/cpu"])
    assert cpu_container["image"].endswith(":slim")


@pytest.mark.parametrize("overlay", ["overlays/cpu", "overlays/gpu"])
def test_every_configmap_and_secret_a_pod_names_is_in_the_output(
    rendered: dict[str, list[Manifest]], overlay: str
) -> None:
    manifests = rendered[overlay]
    present = {(m["kind"], m["metadata"]["name"]) for m in manifests}
    for workload in (m for m in manifests if m["kind"] == "Deployment"):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in present
        for container in pod["containers"]:
            for source in container.get("envFrom", []):
                assert ("Secret", source["secretRef"]["name"]) in present
