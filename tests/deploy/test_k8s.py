"""Kubernetes manifests: rendered with kustomize and checked offline against the Kubernetes schemas."""

import os
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.helpers import after_background_build

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[2]
K8S_VERSION = "1.30.0"


def kustomize() -> str:
    after_background_build("kustomize")
    found = os.environ.get("KUSTOMIZE") or shutil.which("kustomize") or str(REPO / ".tools" / "bin" / "kustomize")
    if not Path(found).exists():
        pytest.fail("kustomize is not installed: run `make tools` (make test does it)")
    return found


def render(path: str) -> list[dict]:
    out = subprocess.run([kustomize(), "build", str(REPO / path)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.mark.parametrize(
    "path, kinds",
    [
        ("deploy/k8s/base", {"Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Job"}),
        ("deploy/k8s/overlays/example", {"Deployment", "Job", "ServiceMonitor", "PrometheusRule"}),
        ("deploy/k8s/kafka", {"KafkaTopic", "KafkaUser"}),
    ],
)
def test_manifests_render_and_match_the_kubernetes_schemas(path, kinds):
    docs = render(path)
    assert kinds <= {d["kind"] for d in docs}
    for d in docs:
        if d["kind"] in ("ServiceMonitor", "PrometheusRule"):  # Prometheus Operator CRDs: checked below
            assert d["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        if d["kind"] == "KafkaUser":  # Strimzi CRD: SCRAM login, simple authorisation, allow-only ACLs
            assert d["apiVersion"] == "kafka.strimzi.io/v1beta2"
            auth = d["spec"]["authentication"]
            assert auth["type"] == "scram-sha-512"
            ref = auth["password"]["valueFrom"]["secretKeyRef"]  # a password the operator sets in both places
            assert ref == {"name": f"{d['metadata']['name']}-password", "key": "password"}
            assert d["spec"]["authorization"]["type"] == "simple" and d["spec"]["authorization"]["acls"]
            assert all(a.get("type", "allow") == "allow" for a in d["spec"]["authorization"]["acls"])
            # the publishers' login is rate-limited (`sais kafka setup` sets the same quota); services never are
            quota = d["spec"].get("quotas")
            assert quota == ({"producerByteRate": 10 << 20} if d["metadata"]["name"] == "sais-publisher" else None)
            continue
        if d["kind"] == "KafkaTopic":  # Strimzi CRD: not in the core schemas, checked by hand
            assert d["apiVersion"] == "kafka.strimzi.io/v1beta2" and d["spec"]["partitions"] >= 3
            kept = int(d["spec"]["config"]["retention.ms"])
            assert kept > 0 or (kept == -1 and d["spec"]["topicName"].endswith("deletion-completed.v1"))
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


def test_strimzi_resources_go_where_the_operators_watch_and_the_application_does_not_carry_them():
    kafka = render("deploy/k8s/kafka")
    assert {d["metadata"]["namespace"] for d in kafka} == {"kafka"}  # the cluster's own namespace
    cluster = {d["metadata"]["labels"]["strimzi.io/cluster"] for d in kafka}
    app = render("deploy/k8s/overlays/example")
    assert not [d for d in app if d["apiVersion"].startswith("kafka.strimzi.io/")]
    config = next(d for d in app if d["kind"] == "ConfigMap")["data"]
    bootstrap_host = config["SAIS_KAFKA_BOOTSTRAP"].split(":")[0]
    assert bootstrap_host == f"{cluster.pop()}-kafka-bootstrap.kafka"  # Strimzi's service in that namespace
    inbound = next(d for d in kafka if d["kind"] == "KafkaTopic" and d["spec"]["topicName"].endswith("inbound.v1"))
    assert int(inbound["spec"]["config"]["retention.ms"]) == 7 * 24 * 3600 * 1000
    certificates = next(
        d for d in kafka if d["kind"] == "KafkaTopic" and d["spec"]["topicName"].endswith("deletion-completed.v1")
    )
    assert int(certificates["spec"]["config"]["retention.ms"]) == -1  # as long as a backup may be restored
    assert all(d["spec"]["replicas"] >= 3 for d in kafka if d["kind"] == "KafkaTopic")


def test_every_secret_a_pod_reads_is_in_its_own_namespace_and_database_urls_are_files():
    app = render("deploy/k8s/overlays/example")
    for d in app:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        pod = d["spec"]["template"]["spec"]
        c = pod["containers"][0]
        env = {e["name"]: e for e in c.get("env", [])}
        assert "SAIS_DATABASE_URL" not in env and env["SAIS_DATABASE_URL_FILE"]["value"].startswith("/")
        names = set()
        for v in pod["volumes"]:
            if "secret" in v:
                names.add(v["secret"]["secretName"])
            for src in v.get("projected", {}).get("sources", []):
                names.add(src["secret"]["name"])
        assert "sais-cluster-ca-cert" not in names  # Strimzi's, in the kafka namespace: a copy is used
        if d["kind"] == "Deployment":
            svc = d["metadata"]["name"].removeprefix("sais-")
            creds = {n for n in names if n.endswith("-credentials")}
            assert creds == {f"sais-{svc}-credentials"}  # its own passwords, nobody else's


def test_alerts_are_the_same_rules_in_kubernetes_and_the_job_label_matches():
    from sais.admin_cli import RULE_OUT, RULE_SOURCE, prometheus_rule

    assert (REPO / RULE_OUT).read_text() == prometheus_rule((REPO / RULE_SOURCE).read_text()), (
        "run `sais docs prometheus-rule`"
    )
    monitor = next(d for d in render("deploy/k8s/overlays/example") if d["kind"] == "ServiceMonitor")
    relabel = monitor["spec"]["endpoints"][0]["relabelings"]
    assert {"action": "replace", "targetLabel": "job", "replacement": "sais"} in relabel
    assert 'up{job="sais"}' in (REPO / RULE_SOURCE).read_text()
    services = [d for d in render("deploy/k8s/overlays/example") if d["kind"] == "Service"]
    assert all(monitor["spec"]["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items() for d in services)


SECRET_FILES = {  # the files of sais-secrets each service reads, and nothing more (security review, finding 4)
    "ingest": {"database-url", "kek.b64", "inbound.key"},
    "eligibility": {"database-url", "kek.b64"},
    "delivery": {
        "database-url",
        "kek.b64",
        "sender.pem",
        "sender.key",
        "recipient.pem",
        "recipient-ca.pem",
        "smtp-ca.pem",
    },
    "retention": {"database-url"},  # it destroys data keys and never opens one: no KEK
}


def test_each_pod_mounts_only_the_secret_files_its_service_reads():
    from sais_delivery.app import WIRING as DELIVERY
    from sais_delivery.config import DeliverySettings
    from sais_eligibility.app import WIRING as ELIGIBILITY
    from sais_eligibility.config import EligibilitySettings
    from sais_ingest.app import WIRING as INGEST
    from sais_ingest.config import IngestSettings
    from sais_retention.app import WIRING as RETENTION
    from sais_retention.config import RetentionSettings

    services = {
        "ingest": (INGEST, IngestSettings),
        "eligibility": (ELIGIBILITY, EligibilitySettings),
        "delivery": (DELIVERY, DeliverySettings),
        "retention": (RETENTION, RetentionSettings),
    }
    docs = render("deploy/k8s/overlays/example")
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    for d in (d for d in docs if d["kind"] == "Deployment"):
        svc = d["metadata"]["name"].removeprefix("sais-")
        wiring, settings = services[svc]
        pod = d["spec"]["template"]["spec"]
        [source] = [v["secret"] for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "sais-secrets"]
        assert "items" in source, f"{svc} mounts the whole of sais-secrets"
        mounted = {i["path"] for i in source["items"]}
        assert mounted == {i["key"] for i in source["items"]} == SECRET_FILES[svc], svc
        # Every file under /secrets that the service's own settings name is mounted (it would not start
        # otherwise); the KEK only where the service opens data keys.
        env = config | {e["name"]: e["value"] for e in pod["containers"][0].get("env", []) if "value" in e}
        named = {
            value.removeprefix("/secrets/")
            for name, value in env.items()
            if value.startswith("/secrets/") and name.removeprefix("SAIS_").lower() in settings.model_fields
            and (wiring.holds_kek or name != "SAIS_KEK_FILE")
        }  # fmt: skip
        assert named == mounted, svc
