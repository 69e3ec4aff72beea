"""Kubernetes manifests (deploy/k8s): valid against the Kubernetes API schemas offline (kubernetes-validate,
strict: unknown fields fail), and consistent with the image and with each other (ports, probes, GPU, volume,
user, scrape annotations, selectors, drain timing)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_support import ROOT

K8S = ROOT / "deploy" / "k8s"
MANIFESTS = ("deployment.yaml", "service.yaml", "models-pvc.yaml", "pdb.yaml")


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load((K8S / name).read_text())


def image_env() -> dict[str, str]:
    return dict(re.findall(r"(SENSORIUM_SERVE_[A-Z_]+)=(\S+)", (ROOT / "Dockerfile").read_text()))


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_valid_for_the_kubernetes_api(name: str) -> None:
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(load(name), version, strict=True)  # raises ValidationError on any problem


def test_strict_validation_rejects_a_misspelt_field() -> None:
    import kubernetes_validate

    broken = load("deployment.yaml")
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbe"]["grpcc"] = container["readinessProbe"].pop("grpc")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, kubernetes_validate.latest_version(), strict=True)


def test_deployment_matches_the_image_and_the_service() -> None:
    env = image_env()
    deploy = load("deployment.yaml")
    pod = deploy["spec"]["template"]
    spec = pod["spec"]
    (container,) = spec["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["grpc"] == int(env["SENSORIUM_SERVE_PORT"])
    assert ports["metrics"] == int(env["SENSORIUM_SERVE_HTTP_PORT"])
    assert ports["web"] == int(env["SENSORIUM_SERVE_WEB_PORT"])
    assert deploy["spec"]["replicas"] >= 2
    # One GPU per replica, requested and limited (extended resources must match).
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"]["nvidia.com/gpu"] == 1
    # Native gRPC probes on the gRPC port (the server's health service).
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["grpc"], probe
    # The model repository: a read-only PVC mounted where the image expects it.
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["models"]["mountPath"] == env["SENSORIUM_SERVE_REPO"] and mounts["models"]["readOnly"]
    claim = volumes["models"]["persistentVolumeClaim"]["claimName"]
    assert claim == load("models-pvc.yaml")["metadata"]["name"]
    env_repo = {e["name"]: e.get("value") for e in container["env"]}["SENSORIUM_SERVE_REPO"]
    assert env_repo == env["SENSORIUM_SERVE_REPO"]
    # Non-root as the image's user; read-only root filesystem with writable /data and /tmp.
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text()).group(1)
    assert spec["securityContext"]["runAsUser"] == int(uid) and spec["securityContext"]["runAsNonRoot"]
    assert container["securityContext"]["readOnlyRootFilesystem"]
    assert {"data", "tmp"} <= set(mounts)
    # Prometheus scrape annotations point at the metrics port.
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == ports["metrics"]
    assert annotations["prometheus.io/path"] == "/metrics"
    # Drain: preStop + the server's shutdown grace fit inside the termination grace period.
    grace = float({e["name"]: e.get("value") for e in container["env"]}["SENSORIUM_SERVE_SHUTDOWN_GRACE_S"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert spec["terminationGracePeriodSeconds"] > grace + pre_stop
    assert deploy["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_headless_service_and_pdb_select_the_pods() -> None:
    labels = load("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    service = load("service.yaml")
    assert service["spec"]["clusterIP"] == "None"  # headless: DNS lists every pod, clients balance themselves
    for selector in (service["spec"]["selector"], load("pdb.yaml")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert ports["grpc"]["targetPort"] == "grpc" and ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"


def test_kubernetes_scrape_config_keeps_annotated_pods() -> None:
    config = yaml.safe_load((K8S / "prometheus-kubernetes.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    sources = {s for r in keep for s in r["source_labels"]}
    assert "__meta_kubernetes_pod_annotation_prometheus_io_scrape" in sources
    address = next(r for r in job["relabel_configs"] if r.get("target_label") == "__address__")
    assert re.fullmatch(address["regex"], "10.1.2.3:50051;8000")  # pod IP + the annotated port
    assert re.sub(address["regex"], address["replacement"].replace("$", "\\"), "10.1.2.3:50051;8000") == (
        "10.1.2.3:8000"
    )


def test_every_manifest_is_listed() -> None:
    on_disk = {p.name for p in Path(K8S).glob("*.yaml")}
    assert on_disk == set(MANIFESTS), "validate every manifest: add new ones to MANIFESTS"
