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
    "create": (
        "SELECT shared.create_data_key(gen_random_uuid(), gen_random_uuid(), 'k', md5(random()::text), '\\x00')",
        {"ingest"},
    ),
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
        for _name, (sql, allowed) in KEY_FUNCTIONS.items():
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


async def test_the_audit_trail_takes_its_id_time_and_writer_from_the_server_and_cannot_be_stalled(settings_env):
    """Finding 5: a service could insert a backdated entry under any name and id, take the ids others were
    about to use, or hold the chain's advisory lock and stall every audited change; and `audit verify`
    hashed text that a redefinable database function built. Now the server sets id, time and login role,
    the chain is serialised on a head row only the owner can lock, and verify builds the text itself."""
    from datetime import UTC, datetime, timedelta

    delivery = await connect_as("delivery")
    ingest = await connect_as("ingest")
    admin = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        for sql in (
            "INSERT INTO shared.audit_log(id, at, actor, action, subject) "
            "VALUES (1000000, '2017-01-01', 'Jo Bloggs', 'batch.sent', 'backdated')",
            "SELECT nextval('shared.audit_log_id_seq')",
            "SELECT * FROM shared.audit_head FOR UPDATE",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await delivery.execute(sql)
        await audit(delivery, "Jo Bloggs", "chain.server_facts", "x")
        row = await admin.fetchrow("SELECT id, at, db_role FROM shared.audit_log WHERE action='chain.server_facts'")
        assert row["db_role"] == "sais_delivery"  # the login, whatever name the writer gave
        assert abs(row["at"] - datetime.now(UTC)) < timedelta(minutes=5)
        # Even the owner's own INSERT gets the server's id and time, not the ones it names.
        await admin.execute(
            "INSERT INTO shared.audit_log(id, at, actor, action, subject) "
            "VALUES (1000000, '2017-01-01', 'Jo Bloggs', 'chain.owner_insert', 'backdated')"
        )
        owner_row = await admin.fetchrow("SELECT id, at FROM shared.audit_log WHERE action='chain.owner_insert'")
        assert owner_row["id"] == row["id"] + 1 and owner_row["at"].year >= 2026
        # The advisory lock the chain used to take: held by a service, it no longer stalls anyone.
        await delivery.execute("SELECT pg_advisory_lock(hashtext('shared.audit_log chain'))")
        await ingest.execute("SET lock_timeout = '3s'")
        await audit(ingest, "t", "chain.not_stalled", "y")
        await delivery.execute("SELECT pg_advisory_unlock_all()")
        assert (await verify_audit_chain(admin)).intact
        # An administrator who alters a row and then redefines the chain function is caught twice.
        await admin.execute("ALTER TABLE shared.audit_log DISABLE TRIGGER audit_log_append_only")
        await admin.execute("UPDATE shared.audit_log SET actor = 'someone else' WHERE action='chain.server_facts'")
        await admin.execute("ALTER TABLE shared.audit_log ENABLE TRIGGER audit_log_append_only")
        await admin.execute(
            "CREATE OR REPLACE FUNCTION shared.audit_log_chain() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RETURN NEW; END $$"
        )
        report = await verify_audit_chain(admin)
        assert any("was altered" in p for p in report.problems), report.problems
        assert any("shared.audit_log_chain is not the one the migrations installed" in p for p in report.problems)
        await admin.execute("ALTER TABLE shared.audit_log DISABLE TRIGGER audit_log_no_truncate")
        assert any("audit_log_no_truncate on shared.audit_log is not enabled" in p
                   for p in (await verify_audit_chain(admin)).problems)  # fmt: skip
    finally:
        for c in (delivery, ingest, admin):
            await c.close()


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
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match=r"no encryption|reject"):
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


async def test_a_service_refuses_to_run_as_another_services_role_or_as_a_superuser(settings_env, infra):
    """Finding 11: a service connected as whatever SAIS_DATABASE_URL named ran with that role's rights. Now
    another service's role is refused always, and a superuser (or any role not its own) outside development
    mode, before anything is read."""
    from sais_shared.errors import ConfigurationError
    from sais_shared.runtime import check_role, open_runtime

    ingest = CommonSettings().database_login("ingest")
    base, _, query = ingest["dsn"].partition("://")[2].partition("@")[2].partition("?")
    as_ingest = f"postgresql://{ingest['user']}:{ingest['password']}@{base}?{query}"
    settings = CommonSettings(database_url=as_ingest, credentials_dir=None, dev_mode=True)
    with pytest.raises(ConfigurationError, match="connected to PostgreSQL as the role sais_ingest; it must run as"):
        await open_runtime(settings, ("eligibility", "sais_eligibility"), service="eligibility")
    admin = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        with pytest.raises(ConfigurationError, match="as a superuser; it must run as its own role sais_retention"):
            await check_role(admin, "retention", dev_mode=False)
        await check_role(admin, "retention", dev_mode=True)  # the development fallback to the administrator
    finally:
        await admin.close()
    own = await asyncpg.connect(**CommonSettings().database_login("retention"))
    try:
        await check_role(own, "retention", dev_mode=False)
    finally:
        await own.close()


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
