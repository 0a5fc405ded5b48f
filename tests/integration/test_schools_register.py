"""`sais schools load` takes GIAS's download as DfE ships it (a zip of 139 Windows-1252 columns, with a
malformed row and a byte Windows-1252 leaves undefined), skips and reports what it cannot read, and
`sais schools show` finds a school by its DfE number however it is written."""

import json
import os
import subprocess

import asyncpg
import pytest

from tests.helpers import REPO
from tests.unit.test_mavis import gias_zip

pytestmark = pytest.mark.integration


def sais(env, *args):
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "sais"), *args], env={**os.environ, **env}, capture_output=True, text=True
    )


async def test_a_gias_zip_loads_with_its_bad_row_reported(settings_env, tmp_path):
    r = sais(settings_env, "schools", "load", str(gias_zip(tmp_path)))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 schools (1 open, 1 closed" in r.stdout
    assert "row 3 skipped (not in the register): 3 cells; the header has 139" in r.stderr
    assert "1 byte(s) are not Windows-1252 characters" in r.stderr
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        audit = await conn.fetchval("SELECT details FROM shared.audit_log WHERE action='schools.loaded'")
    finally:
        await conn.close()
    details = json.loads(audit) if isinstance(audit, str) else audit
    assert details["rows_skipped"] == 1 and details["unreadable_bytes"] == 1
    shown = sais(settings_env, "schools", "show", "937-2001", "--json")
    assert shown.returncode == 0, shown.stderr
    assert [s["urn"] for s in json.loads(shown.stdout)["schools"]] == ["700002"]
