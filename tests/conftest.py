"""Shared test fixtures: one Kafka broker and one PostgreSQL server per session (testcontainers
when a Docker engine is there, the local runner otherwise), a real SMTP server process, and per
test a fresh database and topic prefix so tests never see each other's data.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from hypothesis import settings as hypothesis_settings

# Property tests draw the same examples on every run (a fixed seed, no example database), so that a
# red run is reproducible and never a roll of the dice; `--hypothesis-profile=explore` draws anew.
hypothesis_settings.register_profile("repeatable", derandomize=True, database=None, deadline=None, print_blob=True)
hypothesis_settings.register_profile("explore", max_examples=2000, deadline=None)
hypothesis_settings.load_profile("repeatable")

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy" / "local"))
import stack
from sais_shared.devpki import ensure_dev_pki


@dataclass(frozen=True)
class Infra:
    kafka_bootstrap: str
    kafka_env: dict[str, str]  # SAIS_KAFKA_* of this broker: security protocol, CA, administrator
    pg_admin_dsn: str  # server-level DSN (database "postgres"), as the administrator
    smtp_port: int
    pki: Path
    maildir: Path
    state: Path

    @property
    def kafka_settings(self):
        return stack.kafka_admin_settings({"SAIS_KAFKA_BOOTSTRAP": self.kafka_bootstrap, **self.kafka_env})

    @property
    def kafka(self) -> dict:
        """aiokafka arguments as the Kafka administrator (tests read and write any topic)."""
        return self.kafka_settings.kafka_login(None)

    def kafka_as(self, principal: str, credentials: Path) -> dict:
        """aiokafka arguments as a service's (or the upstream publisher's) own Kafka user."""
        return stack.kafka_admin_settings(
            {"SAIS_KAFKA_BOOTSTRAP": self.kafka_bootstrap, **self.kafka_env, "SAIS_CREDENTIALS_DIR": str(credentials)}
        ).kafka_login(principal)

    def dsn(self, db: str) -> str:
        """The administrator's DSN for database ``db`` (query parameters, such as TLS, kept)."""
        base, _, query = self.pg_admin_dsn.partition("?")
        return base.rsplit("/", 1)[0] + f"/{db}" + (f"?{query}" if query else "")


def _docker_available() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def infra() -> Infra:
    """Real Kafka + PostgreSQL + SMTP for the whole session; a test fails if they are not really there."""
    lay = stack.layout()
    if _docker_available() and os.environ.get("SAIS_TEST_USE_LOCAL") != "1":
        yield from _containers(lay)
        return
    was_up = stack.status(lay) == 0
    stack.start(lay)
    yield Infra(
        f"127.0.0.1:{lay.kafka_port}",
        {k: v for k, v in lay.env().items() if k.startswith("SAIS_KAFKA_")},
        lay.admin_dsn("postgres"),
        lay.smtp_port,
        lay.pki,
        lay.maildir,
        lay.state,
    )
    if not was_up and os.environ.get("SAIS_TEST_KEEP_STACK") != "1":
        stack.stop(lay)


def _containers(lay):
    """The testcontainers path (`make test-containers`): Kafka and PostgreSQL in containers, started by
    testcontainers on the engine DOCKER_HOST names; the SMTP server is the local one, stopped after."""
    # Published ports are reached on 127.0.0.1 only (inside a container, testcontainers would use the
    # bridge's gateway address): set before testcontainers reads its configuration.
    os.environ.setdefault("TC_HOST", "127.0.0.1")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    from testcontainers.community.kafka import KafkaContainer
    from testcontainers.community.postgres import PostgresContainer

    ensure_dev_pki(lay.pki)
    # testcontainers' KafkaContainer drives Confluent's images; cp-kafka 7.9 is Apache Kafka 3.9 (KRaft),
    # the same broker version the local runner fetches from Maven Central. One broker: the transaction
    # log must fit on it, or a transactional producer waits for good.
    kafka = (
        KafkaContainer("confluentinc/cp-kafka:7.9.0")
        .with_kraft()
        .with_env("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1")
        .with_env("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1")
    )
    # PostgreSQL with TLS only, as everywhere else: the dev certificate, and a pg_hba that takes TCP
    # only over TLS (the image's entrypoint runs as root: the key is copied where only postgres reads it).
    tls = (
        "install -d -o postgres -m 700 /var/lib/postgresql/tls"
        " && install -o postgres -m 600 /pki/smtp-server.pem /var/lib/postgresql/tls/server.crt"
        " && install -o postgres -m 600 /pki/smtp-server.key /var/lib/postgresql/tls/server.key"
        " && printf 'local all all trust\\nhostssl all all all scram-sha-256\\nhost all all all reject\\n'"
        " > /var/lib/postgresql/tls/pg_hba.conf && chown postgres /var/lib/postgresql/tls/pg_hba.conf"
        " && exec docker-entrypoint.sh postgres -c ssl=on -c ssl_cert_file=/var/lib/postgresql/tls/server.crt"
        " -c ssl_key_file=/var/lib/postgresql/tls/server.key -c hba_file=/var/lib/postgresql/tls/pg_hba.conf"
    )
    pg = (
        PostgresContainer("postgres:15", driver=None)
        .with_volume_mapping(str(lay.pki), "/pki", "ro")
        .with_kwargs(entrypoint=["bash", "-c", tls])
    )
    kafka.start()
    pg.start()
    try:
        stack.start_smtp(lay)
        plain = pg.get_connection_url().rsplit("/", 1)[0] + "/postgres"  # the server, not its test db
        server_dsn = f"{plain}?sslmode=verify-full&sslrootcert={lay.pki / 'ca.pem'}"
        asyncio.run(_provision_roles(server_dsn, lay))
        yield Infra(
            kafka.get_bootstrap_server(),
            # a container broker without authentication: a development broker, which only development
            # mode accepts (outside it PLAINTEXT is refused)
            {"SAIS_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT", "SAIS_DEV_MODE": "true"},
            server_dsn,
            lay.smtp_port,
            lay.pki,
            lay.maildir,
            lay.state,
        )
    finally:
        stack.kill(lay, "smtpd")
        kafka.stop()
        pg.stop()


async def _provision_roles(server_dsn: str, lay) -> None:
    """The service roles with the local runner's passwords (what the runner does for its own server)."""
    from sais_shared.settings import SERVICES, service_principal

    conn = await asyncpg.connect(server_dsn)
    try:
        for service in SERVICES:
            role = service_principal(service)
            await conn.execute(f"DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
            await conn.execute(f"ALTER ROLE {role} LOGIN PASSWORD '{lay.secret(f'postgres-{role}')}'")
    finally:
        await conn.close()


@pytest.fixture
async def database(infra: Infra) -> str:
    """A fresh database for one test, migrated by the administrator as `sais db migrate` does (every
    service then connects as its own role); dropped afterwards. Yields the administrator's DSN."""
    from sais.dbadmin import migrate_all

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(infra.dsn(name))
    try:
        await migrate_all(conn)
    finally:
        await conn.close()
    yield infra.dsn(name)
    conn = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
def topic_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def env(infra: Infra, database: str, topic_prefix: str):
    """Environment for a service or CLI under test: real servers, isolated database and topics. The
    test's topics and their ACLs are made by the Kafka administrator, as `sais kafka setup` does."""
    from sais_shared.kafka import setup_kafka

    env = {
        **{k: v for k, v in stack.layout().env().items()},
        "SAIS_KAFKA_BOOTSTRAP": infra.kafka_bootstrap,
        **infra.kafka_env,
        "SAIS_DATABASE_URL": database,
        "SAIS_TOPIC_PREFIX": topic_prefix,
        "SAIS_TOPIC_PARTITIONS": "2",
        "SAIS_KEK_FILE": str(infra.pki / "kek.b64"),
        "SAIS_LOG_FORMAT": "json",
        "SAIS_ACTOR": "Test Operator",
        "SAIS_DELIVERY_SMTP_PORT": str(infra.smtp_port),
        "SAIS_DELIVERY_SMTP_BACKOFF_S": "0.1",
        "SAIS_RETENTION_INTERVAL_S": "3600",
        "SAIS_KAFKA_HEARTBEAT_INTERVAL_MS": "300",  # rebalances in a few hundred ms, not seconds
        **{
            f"SAIS_{svc.upper()}_GROUP_ID": f"{topic_prefix}-{svc}"
            for svc in ("ingest", "eligibility", "delivery", "retention")
        },
    }
    admin_settings = stack.kafka_admin_settings(env)
    await setup_kafka(admin_settings, topic_prefix)
    yield env
    await _delete_topics(env, topic_prefix)


async def _delete_topics(env: dict[str, str], prefix: str) -> None:
    """A test's topics go with it: a broker that kept every test's ~15 topics (two partitions each) held
    thousands by the end of a run, and every metadata request and topic creation grew slower."""
    await stack.delete_topics(env, prefix=prefix)


@pytest.fixture
def settings_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The same environment applied to this process, for settings classes built in-process."""
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


async def wait_until(predicate, timeout: float = 30.0, interval: float = 0.2, what: str = "condition"):
    """Poll an async predicate until it returns a truthy value (which is returned); each look is bounded, so a
    hung one is retried and the wait ends by ``timeout`` whatever happens."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = None
    while loop.time() < deadline:
        try:  # one look may hang (a test's own consumer waiting on a busy broker): it is taken afresh
            last = await asyncio.wait_for(predicate(), timeout=max(1.0, min(10.0, deadline - loop.time())))
        except TimeoutError:
            last = None
            continue
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def pytest_collection_modifyitems(config, items) -> None:
    """Every test carries the marker of its folder (unit, integration, e2e, deploy), so that `make test`'s
    marker selection can never skip a test that forgot to declare it."""
    for item in items:
        kind = Path(str(item.fspath)).parent.name
        if kind == "deploy" and item.get_closest_marker("compose"):
            continue
        if kind in ("unit", "integration", "e2e", "deploy") and not item.get_closest_marker(kind):
            item.add_marker(getattr(pytest.mark, kind))
