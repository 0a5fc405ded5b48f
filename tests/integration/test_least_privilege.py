"""Each service's PostgreSQL role is confined by the server itself: its own schema only, data keys
through the key store's functions only, the audit log INSERT-only, TLS only; and the audit chain
shows any removal an administrator makes."""

from pathlib import Path

import asyncpg
import pytest
from sais_shared.keystore import audit
from sais_shared.settings import SERVICES, CommonSettings

from sais.dbadmin import verify_audit_chain
from tests.helpers import REPO

pytestmark = pytest.mark.integration

SCHEMA_TABLE = {
    "ingest": "ingest.extracts",
    "eligibility": "eligibility.records",
    "delivery": "delivery.members",
    "retention": "retention.schedule",
}
KEY_FUNCTIONS = {  # which key-store function each role may call
    "create": ("SELECT shared.create_data_key(gen_random_uuid(), gen_random_uuid(), 'k', '\\x00')", {"ingest"}),
    "read": ("SELECT * FROM shared.wrapped_data_keys(ARRAY[gen_random_uuid()])", {"ingest", "eligibility", "delivery"}),
    "list": ("SELECT * FROM shared.live_data_keys()", {"retention"}),
    "destroy": ("SELECT shared.destroy_data_keys(ARRAY[gen_random_uuid()], 't')", {"retention"}),
}


async def connect_as(service: str) -> asyncpg.Connection:
    return await asyncpg.connect(**CommonSettings().database_login(service))


@pytest.mark.parametrize("service", SERVICES)
async def test_a_service_role_reaches_its_own_schema_and_nothing_else(settings_env, service):
    conn = await connect_as(service)
    try:
        assert await conn.fetchval("SELECT current_user") == f"sais_{service}"
        await conn.fetch(f"SELECT * FROM {SCHEMA_TABLE[service]} LIMIT 1")  # its own: allowed
        for other, table in SCHEMA_TABLE.items():
            if other != service:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(f"SELECT * FROM {table} LIMIT 1")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.fetch("SELECT * FROM shared.data_keys")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(f"CREATE TABLE {service}.intruder (x int)")  # no DDL, even in its own schema
        for name, (sql, allowed) in KEY_FUNCTIONS.items():
            if service in allowed:
                await conn.fetch(sql)
            else:
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await conn.fetch(sql)
        # The audit log: INSERT and nothing else — no reading, altering, removing or switching off.
        await audit(conn, "t", "privilege.test", "x")
        for sql in (
            "SELECT * FROM shared.audit_log",
            "UPDATE shared.audit_log SET actor='z'",
            "DELETE FROM shared.audit_log",
            "TRUNCATE shared.audit_log",
            "ALTER TABLE shared.audit_log DISABLE TRIGGER audit_log_append_only",
            "INSERT INTO shared.protocols(protocol_id, version, sha256, content, loaded_by) "
            "VALUES ('x', 'x', 'x', 'x', 'x')",
        ):
            with pytest.raises((asyncpg.InsufficientPrivilegeError, asyncpg.WrongObjectTypeError)):
                await conn.execute(sql)
    finally:
        await conn.close()


async def test_the_audit_chain_shows_a_row_an_administrator_removed(settings_env):
    admin = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        conn = await connect_as("delivery")
        for i in range(3):
            await audit(conn, "t", "chain.test", f"x{i}")
        await conn.close()
        report = await verify_audit_chain(admin)
        assert report.intact and report.rows >= 4  # the protocol load at install, and these three
        # Only the table's owner can switch the guard off; what it removes still shows.
        await admin.execute("ALTER TABLE shared.audit_log DISABLE TRIGGER audit_log_append_only")
        await admin.execute("DELETE FROM shared.audit_log WHERE subject = 'x1'")
        await admin.execute("UPDATE shared.audit_log SET actor = 'someone else' WHERE subject = 'x2'")
        report = await verify_audit_chain(admin)
        assert not report.intact
        assert any("missing" in p for p in report.problems) and any("altered" in p for p in report.problems)
    finally:
        await admin.close()


async def test_the_cli_reports_the_chain(settings_env):
    import os
    import subprocess

    r = subprocess.run(
        [str(REPO / ".venv" / "bin" / "sais"), "audit", "verify", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, **settings_env},
    )
    assert r.returncode == 0, r.stderr
    assert '"intact": true' in r.stdout


async def test_postgresql_refuses_a_connection_without_tls(settings_env):
    login = CommonSettings().database_login("ingest")
    plain = login["dsn"].split("?", 1)[0] + "?sslmode=disable"
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption|reject"):
        await asyncpg.connect(plain, user=login["user"], password=login["password"])


async def test_a_service_starts_only_on_a_migrated_database(settings_env, infra):
    from sais_shared.errors import ConfigurationError
    from sais_shared.runtime import open_runtime

    admin = await asyncpg.connect(infra.pg_admin_dsn)
    name = f"bare_{Path(settings_env['SAIS_TOPIC_PREFIX']).name}"
    await admin.execute(f"CREATE DATABASE {name}")
    try:
        settings = CommonSettings(database_url=infra.dsn(name))
        with pytest.raises(ConfigurationError, match="sais db migrate"):
            await open_runtime(settings, ("ingest", "sais_ingest"), service="ingest")
    finally:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
        await admin.close()


async def test_a_role_password_reaches_the_server_only_as_a_scram_verifier(settings_env):
    """Finding 12: `sais db migrate` sent `ALTER ROLE … PASSWORD 'cleartext'` on every run (into the
    server's log). Now a verifier computed here, only when it changes; the role logs in with the password
    (a non-ASCII one too: SASLprep as the server and the client apply it)."""
    import uuid

    from sais.dbadmin import set_password

    role, password = f"t_{uuid.uuid4().hex[:12]}", "pässwörd-ﬁ-" + uuid.uuid4().hex
    admin = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    sent: list[str] = []
    admin.add_query_logger(lambda record: sent.append(record.query + repr(record.args)))
    try:
        await admin.execute(f'CREATE ROLE "{role}"')
        assert await set_password(admin, role, password) is True
        assert await set_password(admin, role, password) is False  # unchanged: not sent again
        assert sent and not [q for q in sent if password in q or "pässwörd" in q]
        assert (await admin.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname=$1", role)).startswith(
            "SCRAM-SHA-256$4096:"
        )
        conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"], user=role, password=password)
        assert await conn.fetchval("SELECT current_user") == role
        await conn.close()
        with pytest.raises(asyncpg.InvalidPasswordError):
            await asyncpg.connect(settings_env["SAIS_DATABASE_URL"], user=role, password=password + "x")
        assert await set_password(admin, role, password + "x") is True  # a new password is sent
    finally:
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()
