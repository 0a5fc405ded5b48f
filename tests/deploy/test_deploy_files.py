"""compose.yaml stays valid (checked offline by the real compose binary) and runs the real images."""

import re
import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.deploy
REPO = Path(__file__).resolve().parents[2]


def compose_binary() -> Path:
    return Path(str(resources.files("compose") / "docker-compose"))


def test_compose_file_is_valid():
    r = subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "compose.yaml"), "config", "-q"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr


def test_compose_uses_official_images_and_binds_to_loopback():
    doc = yaml.safe_load((REPO / "compose.yaml").read_text())
    s = doc["services"]
    assert s["kafka"]["image"] == "apache/kafka:3.9.1" and s["postgres"]["image"].startswith("postgres:")
    for name in ("ingest", "eligibility", "delivery", "retention"):
        assert s[name]["command"] == [f"sais_{name}"]
    for svc in s.values():
        assert all(str(p).startswith("127.0.0.1:") for p in svc.get("ports", []))


def test_compose_rejects_a_broken_file(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text("services:\n  x:\n    image: 3\n    depends_on: [missing]\n")
    r = subprocess.run([str(compose_binary()), "-f", str(bad), "config", "-q"], capture_output=True, text=True)
    assert r.returncode != 0


def _resolved() -> dict:
    """The compose model as the engine would run it (anchors and merges resolved by the real binary)."""
    r = subprocess.run(
        [str(compose_binary()), "-f", str(REPO / "compose.yaml"), "--profile", "cli", "config", "--format", "json"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    import json

    return json.loads(r.stdout)["services"]


def test_kafka_keeps_its_log_in_the_volume_and_answers_the_host_on_a_published_address():
    """On paper, for machines with no engine (tests/deploy/test_compose.py restarts the container for real)."""
    kafka = _resolved()["kafka"]
    script = (REPO / "deploy" / "compose" / "kafka-start.sh").read_text()
    data = re.search(r"^DATA=(\S+)$", script, re.M).group(1)
    mounted = {v["target"] for v in kafka["volumes"] if v.get("source") == "kafka-data"}
    assert data in mounted and "log.dirs=$DATA" in script  # not the image's /tmp/kraft-combined-logs
    published = {(p["host_ip"], str(p["published"]), str(p["target"])) for p in kafka["ports"]}
    host_port = kafka["environment"]["SAIS_KAFKA_HOST_PORT"]
    assert "HOST://127.0.0.1:${SAIS_KAFKA_HOST_PORT:-19092}" in script and "HOST://:19092" in script
    assert ("127.0.0.1", host_port, "19092") in published
    assert "SASL_SSL://kafka:9092" in script  # the containers' own address, with TLS and logins
    assert "allow.everyone.if.no.acl.found=false" in script


def test_every_service_has_a_readiness_healthcheck_and_a_writable_tmp():
    s = _resolved()
    for name in ("ingest", "eligibility", "delivery", "retention"):
        check = " ".join(s[name]["healthcheck"]["test"])
        assert "/readyz" in check and s[name]["environment"]["SAIS_HTTP_PORT"] in check
        assert s[name]["read_only"] is True and "/tmp" in s[name]["tmpfs"]


def test_the_cli_writes_reports_to_a_volume_its_user_owns():
    cli = _resolved()["cli"]
    targets = {v["target"]: v for v in cli["volumes"]}
    assert "/exports" in targets and not targets["/exports"].get("read_only")
    docker = (REPO / "Dockerfile").read_text()
    # a fresh named volume takes the ownership of the image's directory: the image's user must own it
    assert "chown 10001:10001 /pki /exports" in docker and "WORKDIR /exports" in docker
    assert "SAIS_ACTOR" not in cli["environment"]  # the operator names themself on each run


def test_each_service_mounts_only_its_own_secrets_volume_read_only():
    """Security review, finding 4: every service mounted the whole pki volume (every key and password).
    tests/deploy/test_compose.py lists what each container really holds."""
    s = _resolved()
    for name in ("ingest", "eligibility", "delivery", "retention"):
        assert [(v["source"], v["target"], v.get("read_only")) for v in s[name]["volumes"]] == [
            (f"pki-{name}", "/pki", True)
        ], name
    filled = {v["source"] for v in s["pki-init"]["volumes"]}
    assert {f"pki-{n}" for n in ("ingest", "eligibility", "delivery", "retention")} <= filled
