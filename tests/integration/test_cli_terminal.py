"""The `sais` CLI at a terminal prints sentences and tables, no log lines; a warning a person must act
on (the protocol past its review date) is shown once, in plain words; `--json` stays clean JSON."""

import json
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.integration
SAIS = str(Path(sys.executable).with_name("sais"))
MAY = REPO / "data" / "samples" / "may-census-2017.csv"
ARGS = ["ingest", "file", str(MAY), "--source", "summer-census", "--reference-date", "2017-05-18"]


def at_terminal(args: list[str], env: dict[str, str]) -> str:
    """Run a command with stdout and stderr on a pseudo-terminal, as a person would; everything it printed."""
    master, slave = pty.openpty()
    p = subprocess.Popen([SAIS, *args], stdout=slave, stderr=slave, stdin=subprocess.DEVNULL, env=env)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert p.wait(60) == 0, b"".join(chunks).decode(errors="replace")
    return re.sub(r"\x1b\[[0-9;]*m", "", b"".join(chunks).decode(errors="replace"))  # colours off


def quiet_env(env: dict[str, str]) -> dict[str, str]:
    out = {**os.environ, **env, "SAIS_AS_OF": "2018-06-01", "COLUMNS": "200"}  # past the v0.2 review date
    out.pop("SAIS_LOG_FORMAT", None)  # what a person at a terminal has: nothing set
    return out


def test_sais_ingest_file_at_a_terminal_prints_no_json_and_the_review_warning_once(env):
    text = at_terminal(ARGS, quiet_env(env))
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    assert not [x for x in lines if x.startswith("{")], text  # no JSON log line
    assert "accepted" in text.lower()  # the command's own report
    warnings = [x for x in lines if x.startswith("warning:")]
    assert len(warnings) == 1 and "due for review on 30 April 2018 (ISP §15)" in text, text


def test_json_output_is_json_and_log_lines_come_only_when_asked_for(env):
    e = {**quiet_env(env), "SAIS_LOG_FORMAT": "json"}  # the services' own setting, as in a service's container
    r = subprocess.run([SAIS, *ARGS, "--json"], env=e, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["accepted"] == 49  # stdout: one JSON document
    assert not any(x.startswith("{") for x in r.stderr.splitlines()), r.stderr  # not a terminal: still no log lines
    r = subprocess.run([SAIS, "--log-format", "json", *ARGS, "--json"], env=e, capture_output=True, text=True)
    assert r.returncode == 0 and json.loads(r.stdout)["accepted"] == 49
    assert any(json.loads(x).get("event") for x in r.stderr.splitlines() if x.startswith("{"))  # asked: JSON lines
