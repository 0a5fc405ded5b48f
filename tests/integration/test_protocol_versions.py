"""The protocol as data: loading a version changes what the services enforce, without code changes."""

import os
import subprocess
from datetime import date

import asyncpg
import pytest
from sais_ingest.app import ingest_session
from sais_ingest.config import IngestSettings
from sais_shared.protocol import ProtocolError, bundled_protocol_path

from tests.helpers import REPO

pytestmark = pytest.mark.integration
PROTOCOLS = bundled_protocol_path().parent
RECEPTION = REPO / "data" / "samples" / "admissions-reception-2017.csv"


def sais(env, *args):
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "sais"), *args], env={**os.environ, **env}, capture_output=True, text=True
    )


async def ingest_reception():
    async with ingest_session(IngestSettings()) as s:
        return await s.file(RECEPTION, source="admissions-reception", reference_date=date(2017, 4, 18), actor="test")


async def test_v0_1_to_v0_2_adds_the_admissions_source(settings_env):
    r = sais(settings_env, "protocol", "load", str(PROTOCOLS / "warwickshire-cwpt-v0.1.yaml"))
    assert r.returncode == 0, r.stderr
    with pytest.raises(ProtocolError, match=r"admissions-reception.*not covered.*v0\.1"):
        await ingest_reception()
    cli = sais(
        settings_env,
        "ingest",
        "file",
        str(RECEPTION),
        "--source",
        "admissions-reception",
        "--reference-date",
        "2017-04-18",
    )
    assert cli.returncode == 3 and "not covered" in cli.stderr  # refused by the protocol in force

    assert sais(settings_env, "protocol", "load", str(PROTOCOLS / "warwickshire-cwpt-v0.2.yaml")).returncode == 0
    rep = await ingest_reception()
    assert rep.accepted == 24

    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        versions = [r["version"] for r in await conn.fetch("SELECT version FROM shared.protocols ORDER BY seq")]
        audited = await conn.fetch(
            "SELECT details->>'version' v FROM shared.audit_log WHERE action='protocol.loaded' ORDER BY id"
        )
        recorded = await conn.fetchval("SELECT protocol_version FROM ingest.extracts")
    finally:
        await conn.close()
    # the bundled version is installed on first use, then the operator's loads follow
    assert versions == ["0.2", "0.1", "0.2"] and [r["v"] for r in audited] == ["0.2", "0.1", "0.2"]
    assert recorded == "0.2"  # the version in force is recorded on the extract


async def test_bad_protocol_file_is_not_loaded_and_names_the_field(settings_env, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (PROTOCOLS / "warwickshire-cwpt-v0.2.yaml").read_text().replace("retention_months: 3", "retention_months: many")
    )
    r = sais(settings_env, "protocol", "load", str(bad))
    assert r.returncode == 2 and "retention_months" in r.stderr
    shown = sais(settings_env, "protocol", "show", "--json")
    assert shown.returncode == 0 and '"retention_months": 3' in shown.stdout


async def test_review_overdue_warns_loudly(settings_env):
    r = sais({**settings_env, "SAIS_AS_OF": "2018-05-01"}, "protocol", "show")
    said = [line for line in r.stderr.splitlines() if line.startswith("warning: ")]
    assert r.returncode == 0 and len(said) == 1 and "due for review on 30 April 2018" in said[0]  # once, in words
    r = sais({**settings_env, "SAIS_AS_OF": "2017-07-01"}, "protocol", "show")
    assert r.returncode == 0 and not [line for line in r.stderr.splitlines() if line.startswith("warning: ")]


async def test_outside_development_no_example_protocol_is_put_in_force_by_default(infra, env):
    import uuid

    db = f"noproto_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.pg_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{db}"')
    await admin.close()
    production = {
        **env,
        "SAIS_DATABASE_URL": infra.dsn(db),
        "SAIS_DEV_MODE": "false",
        "SAIS_KEK": "",
        "SAIS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    }  # fmt: skip  (these commands do not use Kafka)
    migrated = sais(production, "db", "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "no protocol is in force" in migrated.stderr and "sais protocol load" in migrated.stderr
    refused = sais(production, "audit", "verify")  # an administrative command still works …
    assert refused.returncode == 0, refused.stderr
    status = sais(production, "protocol", "show")  # … but nothing runs under a protocol no one chose
    assert status.returncode == 7 and "no protocol is in force" in status.stderr, status.stderr
    chosen = str(PROTOCOLS / "warwickshire-cwpt-v0.3.yaml")
    again = sais({**production, "SAIS_PROTOCOL_FILE": chosen}, "db", "migrate", "--json")
    assert again.returncode == 0 and '"protocol_in_force": true' in again.stdout, again.stderr
    conn = await asyncpg.connect(infra.dsn(db))
    try:
        assert await conn.fetchval("SELECT version FROM shared.protocols") == "0.3"
    finally:
        await conn.close()
