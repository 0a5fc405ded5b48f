"""Do the data a protocol requests cover each year's programme rules? v0.2 (the 2017 ISP) covers
2017/18 only; the example v0.3 covers every year; each gap is named."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sais_shared.protocol import bundled_protocol_path

pytestmark = pytest.mark.deploy


def sais(*args: str) -> subprocess.CompletedProcess:
    """The operator's command in its own process (its logging setup stays its own)."""
    return subprocess.run([str(Path(sys.executable).with_name("sais")), *args], capture_output=True, text=True)


def test_sais_protocol_check_reports_the_gaps_and_the_revision_none():
    r = sais("protocol", "check", "--academic-year", "2018/19", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == "0.2" and doc["gaps"]["2018/19"][0]["year_groups"] == ["5"]
    r = sais("protocol", "check", str(bundled_protocol_path().with_name("warwickshire-cwpt-v0.3.yaml")))
    assert r.returncode == 0 and "gap" not in r.stdout and "valid" in r.stdout
    assert sais("protocol", "check", "--academic-year", "2030/31").returncode == 2
