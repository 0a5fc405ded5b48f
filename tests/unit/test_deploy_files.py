"""compose.yaml stays valid (checked offline by the real compose binary) and runs the real images."""

import subprocess
from importlib import resources
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
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
