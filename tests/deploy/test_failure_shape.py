"""Every failure of the CLI is one line on stderr, or with --json the documented object on stdout, with
the documented exit code: option errors too, and a --report path that exists is refused before anything."""

import json
import os
import subprocess

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.deploy
SAIS = str(REPO / ".venv" / "bin" / "sais")
MAY = str(REPO / "data" / "samples" / "may-census-2017.csv")


def run(*args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAIS_")} | {"SAIS_ACTOR": "Test"}
    return subprocess.run([SAIS, *args], capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)


def test_an_option_error_is_one_line_and_json_with_json():
    plain = run("ingest", "file", MAY, "--source", "hospital", "--reference-date", "2017-05-18")
    assert plain.returncode == 2 and plain.stdout == ""
    [line] = plain.stderr.strip().splitlines()
    assert "--source" in line and "summer-census" in line and "sais ingest file --help" in line
    js = run("ingest", "file", MAY, "--source", "hospital", "--reference-date", "2017-05-18", "--json")
    doc = json.loads(js.stdout)
    assert js.returncode == 2 and set(doc) == {"error", "exit_code", "message"} and doc["exit_code"] == 2


def test_a_report_path_that_exists_is_refused_before_anything_is_done(tmp_path):
    existing = tmp_path / "report.json"
    existing.write_text("{}")
    r = run(
        "ingest", "file", MAY, "--source", "summer-census", "--reference-date", "2017-05-18", "--report", str(existing)
    )
    assert r.returncode == 2 and "already exists" in r.stderr and existing.read_text() == "{}"
    # no server is configured here: it never got as far as connecting to one
    assert "reach" not in r.stderr
