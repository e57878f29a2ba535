"""The Helm chart lints, renders, validates against the Kubernetes schemas and keeps what it promises."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from guard.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "guardtune"
K8S_VERSION = "1.35.0"  # the Kubernetes version helm v4.1 targets
REQUIRED = ["--set", "secrets.dbUrl=postgresql+psycopg://guard:pw@postgres:5432/guard"]
EVERYTHING_ON = [
    *REQUIRED,
    "--set",
    "serviceMonitor.enabled=true",
    "--set",
    "retrain.enabled=true",
    "--set",
    "networkPolicy.enabled=true",
    "--set",
    "limits.keyRequests=10/second",
]


def helm() -> str:
    found = shutil.which("helm") or str(Path(sys.executable).with_name("helm"))
    if not Path(found).is_file():
        pytest.skip("helm not installed (python scripts/install_helm.py, run by `make test`)")
    return found


def run_helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([helm(), *args], capture_output=True, text=True, timeout=120)


def render(*args: str) -> list[dict[str, Any]]:
    out = run_helm("template", "guard", str(CHART), *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return by_kind(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def test_chart_passes_helm_lint() -> None:
    out = run_helm("lint", "--strict", str(CHART), *REQUIRED)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "[ERROR]" not in out.stdout and "[WARNING]" not in out.stdout, out.stdout


VARIANTS = [[], ["-f", str(CHART / "values-gpu.yaml")], ["--set", "autoscaling.inFlightPerPod=8"]]


@pytest.mark.parametrize("extra", VARIANTS, ids=["default", "gpu", "hpa-in-flight"])
def test_rendered_manifests_validate_against_the_kubernetes_schemas(extra: list[str]) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate not installed (dev extra)")
    docs = render(*EVERYTHING_ON, *extra)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "ConfigMap",
        "Secret",
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "Job",
        "CronJob",
        "ServiceMonitor",
        "NetworkPolicy",
    } <= kinds
    for doc in docs:
        if doc["apiVersion"] == "monitoring.coreos.com/v1":
            continue  # a CRD: no schema in the Kubernetes set; its shape is checked below
        kv.validate(doc, K8S_VERSION, strict=True)


def test_service_monitor_scrapes_the_metrics_port_of_the_service() -> None:
    docs = render(*EVERYTHING_ON)
    monitor, service = by_kind(docs, "ServiceMonitor"), by_kind(docs, "Service")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"


def test_deployment_probes_resources_and_locked_down_security_context() -> None:
    docs = render(*REQUIRED)
    c = container(docs)
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["resources"]["requests"]["cpu"] and c["resources"]["limits"]["memory"]
    pod = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts  # the only writable places


def test_rails_config_map_is_mounted_as_a_directory_so_updates_reach_the_pods() -> None:
    docs = render(*REQUIRED)
    c = container(docs)
    rails = next(m for m in c["volumeMounts"] if m["name"] == "rails")
    assert "subPath" not in rails  # subPath mounts never see ConfigMap updates
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["GUARD_RAILS_DIR"] == rails["mountPath"] and env["GUARD_RAILS_RELOAD"] != "false"
    data = by_kind(docs, "ConfigMap")["data"]
    shipped = ROOT / "rails" / "configs" / "default"
    assert data == {p.name: p.read_text() for p in shipped.iterdir() if p.is_file()}


def test_migration_job_runs_before_install_and_upgrade_after_its_secret() -> None:
    docs = render(*REQUIRED)
    job, secret = by_kind(docs, "Job"), by_kind(docs, "Secret")
    assert job["spec"]["template"]["spec"]["containers"][0]["command"] == ["guard", "db", "upgrade"]
    for doc in (job, secret):
        assert doc["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    weight = lambda d: int(d["metadata"]["annotations"]["helm.sh/hook-weight"])  # noqa: E731
    assert weight(secret) < weight(job)


def test_chart_refuses_to_render_without_a_database() -> None:
    out = run_helm("template", "guard", str(CHART))
    assert out.returncode != 0 and "secrets.dbUrl" in out.stderr


def test_gpu_values_select_the_gpu_image_and_device() -> None:
    c = container(render(*REQUIRED, "-f", str(CHART / "values-gpu.yaml")))
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert c["image"].endswith(":proxy-gpu") and env["GUARD_TRIAGE_DEVICE"] == "cuda"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1


def test_every_guard_setting_the_chart_sets_exists() -> None:
    docs = render(*EVERYTHING_ON)
    fields = set(Settings.model_fields)
    names = {
        e["name"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "CronJob")
        for c in _containers(d)
        for e in c["env"]
        if e["name"].startswith("GUARD_")
    }
    unknown = sorted(n for n in names if n.removeprefix("GUARD_").lower() not in fields)
    assert unknown == []


def test_the_pods_read_the_secret_keys_the_chart_writes() -> None:
    docs = render(
        *EVERYTHING_ON,
        "--set",
        "secrets.redisUrl=redis://redis:6379/0",
        "--set",
        "secrets.adminKey=a",
        "--set",
        "secrets.upstreamApiKey=u",
    )
    written = set(by_kind(docs, "Secret")["stringData"])
    read = {
        e["valueFrom"]["secretKeyRef"]["key"]
        for d in docs
        if d["kind"] in ("Deployment", "Job", "CronJob")
        for c in _containers(d)
        for e in c["env"]
        if "valueFrom" in e
    }
    read |= {
        i["key"]
        for v in by_kind(docs, "Deployment")["spec"]["template"]["spec"]["volumes"]
        if "secret" in v
        for i in v["secret"]["items"]
    }
    assert read == written


def _containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    spec = doc["spec"]
    if doc["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]["containers"]
