"""Kubernetes manifests: rendered with kustomize and checked offline against the Kubernetes schemas."""

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"


def kustomize() -> str:
    found = os.environ.get("KUSTOMIZE") or shutil.which("kustomize") or str(REPO / ".tools" / "bin" / "kustomize")
    if not Path(found).exists():
        pytest.fail("kustomize is not installed: run `make tools` (make test does it)")
    return found


def render(path: str) -> list[dict]:
    out = subprocess.run([kustomize(), "build", str(REPO / path)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize("path", ["deploy/k8s/base", "deploy/k8s/overlays/example"])
def test_manifests_render_and_match_the_kubernetes_schemas(path):
    docs = render(path)
    kinds = {d["kind"] for d in docs}
    assert {
        "Deployment",
        "Service",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ConfigMap",
        "KafkaTopic",
        "KafkaUser",
    } <= kinds
    for d in docs:
        if d["kind"] == "KafkaUser":  # Strimzi CRD: SCRAM login, simple authorisation, allow-only ACLs
            assert d["apiVersion"] == "kafka.strimzi.io/v1beta2"
            assert d["spec"]["authentication"] == {"type": "scram-sha-512"}
            assert d["spec"]["authorization"]["type"] == "simple" and d["spec"]["authorization"]["acls"]
            assert all(a.get("type", "allow") == "allow" for a in d["spec"]["authorization"]["acls"])
            continue
        if d["kind"] == "KafkaTopic":  # Strimzi CRD: not in the core schemas, checked by hand
            assert d["apiVersion"] == "kafka.strimzi.io/v1beta2" and d["spec"]["partitions"] >= 3
            assert int(d["spec"]["config"]["retention.ms"]) > 0
            continue
        kubernetes_validate.validate(d, K8S_VERSION, strict=True)


def test_a_broken_manifest_is_caught():
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {"replicas": "two", "selector": {}, "template": {}},
    }
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_deployments_are_locked_down_with_probes_and_file_secrets():
    docs = render("deploy/k8s/overlays/example")
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {
        "sais-ingest",
        "sais-eligibility",
        "sais-delivery",
        "sais-retention",
    }
    for d in deployments:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] and not pod["automountServiceAccountToken"]
        c = pod["containers"][0]
        sc = c["securityContext"]
        assert (
            sc["readOnlyRootFilesystem"]
            and not sc["allowPrivilegeEscalation"]
            and sc["capabilities"]["drop"] == ["ALL"]
        )
        assert (
            c["readinessProbe"]["httpGet"]["path"] == "/readyz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        )
        assert c["resources"]["limits"]["memory"] and c["image"].startswith("registry.example.invalid/")
        assert {"name": "secrets", "mountPath": "/secrets", "readOnly": True} in c["volumeMounts"]
        assert d["metadata"]["namespace"] == "sais"
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    assert (
        config["SAIS_KEK_FILE"].startswith("/secrets/")
        and config["SAIS_DELIVERY_SMTP_HOST"] == "smtp.la.example.invalid"
    )
