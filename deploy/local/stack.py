"""Local runner: real Apache Kafka (KRaft), PostgreSQL and an SMTP server, no Docker needed.

    python deploy/local/stack.py start|stop|status|env

Idempotent: ``start`` starts what is not running, ``stop`` stops what is. Everything lives in
the state directory (``SAIS_STATE_DIR``, default ``<repo>/.state``): data, logs, pid files,
the dev PKI and received mail. Kafka's jars are fetched once with Maven into
``~/.cache/sais/kafka-<version>``. Servers listen on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
KAFKA_VERSION = "3.9.1"


@dataclass(frozen=True)
class Layout:
    state: Path
    kafka_port: int = int(os.environ.get("SAIS_LOCAL_KAFKA_PORT", "19092"))
    pg_port: int = int(os.environ.get("SAIS_LOCAL_PG_PORT", "15432"))
    smtp_port: int = int(os.environ.get("SAIS_LOCAL_SMTP_PORT", "10025"))

    @property
    def kafka_libs(self) -> Path:
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        return cache / "sais" / f"kafka-{KAFKA_VERSION}" / "libs"

    def pidfile(self, name: str) -> Path:
        return self.state / "run" / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.state / "logs" / f"{name}.log"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def maildir(self) -> Path:
        return self.state / "mail"

    @property
    def pgdata(self) -> Path:
        return self.state / "pg" / "data"

    @property
    def credentials(self) -> Path:
        """Per-principal passwords: postgres-<role>, kafka-<user> (the services' SAIS_CREDENTIALS_DIR)."""
        return self.pki / "credentials"

    def secret(self, name: str) -> str:
        """A password, created (random, mode 600) the first time it is asked for."""
        path = self.credentials / name
        if not path.exists():
            import secrets

            self.credentials.mkdir(parents=True, exist_ok=True)
            self.credentials.chmod(0o700)
            path.write_text(secrets.token_urlsafe(24) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    def admin_dsn(self, db: str = "sais") -> str:
        """The database administrator over TLS (verify-full against the dev CA)."""
        return (
            f"postgresql://postgres:{self.secret('postgres-postgres')}@127.0.0.1:{self.pg_port}/{db}"
            f"?sslmode=verify-full&sslrootcert={self.pki / 'ca.pem'}"
        )

    def env(self) -> dict[str, str]:
        from sais_shared.devpki import RECIPIENT_EMAIL, SENDER_EMAIL

        return {
            "SAIS_KAFKA_BOOTSTRAP": f"127.0.0.1:{self.kafka_port}",
            "SAIS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SAIS_KAFKA_CA_FILE": str(self.pki / "ca.pem"),
            "SAIS_KAFKA_ADMIN_PASSWORD_FILE": str(self.credentials / "kafka-admin"),
            "SAIS_DATABASE_URL": self.admin_dsn(),
            "SAIS_CREDENTIALS_DIR": str(self.credentials),
            "SAIS_KEK_FILE": str(self.pki / "kek.b64"),
            "SAIS_DELIVERY_SMTP_HOST": "127.0.0.1",
            "SAIS_DELIVERY_SMTP_PORT": str(self.smtp_port),
            "SAIS_DELIVERY_SMTP_CA_FILE": str(self.pki / "ca.pem"),
            "SAIS_DELIVERY_SENDER_CERT": str(self.pki / "sender.pem"),
            "SAIS_DELIVERY_SENDER_KEY": str(self.pki / "sender.key"),
            "SAIS_DELIVERY_RECIPIENT_CERT": str(self.pki / "recipient.pem"),
            "SAIS_DELIVERY_SENDER_ADDRESS": SENDER_EMAIL,  # the example protocol names no recipient:
            "SAIS_DELIVERY_RECIPIENT": RECIPIENT_EMAIL,  # the local stack's own mailbox stands in
            "SAIS_DELIVERY_RECIPIENT_CA_FILE": str(self.pki / "ca.pem"),
            "SAIS_INGEST_INBOUND_PRIVATE_KEY": str(self.pki / "inbound.key"),
            "SAIS_INGEST_PUBLISHERS_FILE": str(self.pki / "publishers.yaml"),
            "SAIS_LOCAL_MAILDIR": str(self.maildir),
            "SAIS_LOCAL_PKI": str(self.pki),
            "SAIS_DEV_MODE": "true",  # the local runner is for development: dev PKI, SAIS_AS_OF
        }


def layout() -> Layout:
    return Layout(Path(os.environ.get("SAIS_STATE_DIR", REPO / ".state")).resolve())


def say(msg: str) -> None:
    print(f"[stack] {msg}", flush=True)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_port(port: int, what: str, timeout: float, log: Path | None = None, pidfile: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pidfile is not None and not pid_alive(pidfile):
            break  # it died: say why
        if port_open(port):
            return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
    raise SystemExit(f"[stack] {what} did not open 127.0.0.1:{port} within {timeout:.0f}s\n{tail}")


def pid_alive(pidfile: Path) -> int | None:
    """The pid if that process is running; a zombie (an exited child not yet reaped) is reaped and is not."""
    try:
        pid = int(pidfile.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return None  # it was our child and has exited
    except ChildProcessError:
        pass  # not our child
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return pid
    return None if state == "Z" else pid


def ensure_port_free(port: int, what: str) -> None:
    if port_open(port):
        raise SystemExit(
            f"[stack] 127.0.0.1:{port} is already in use by another process, so {what} cannot start; "
            f"stop it or choose another port (SAIS_LOCAL_*_PORT)"
        )


def spawn(lay: Layout, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
    lay.log(name).parent.mkdir(parents=True, exist_ok=True)
    lay.pidfile(name).parent.mkdir(parents=True, exist_ok=True)
    with open(lay.log(name), "ab") as out:
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    lay.pidfile(name).write_text(str(proc.pid))


def kill(lay: Layout, name: str, timeout: float = 20) -> None:
    pid = pid_alive(lay.pidfile(name))
    if pid is None:
        lay.pidfile(name).unlink(missing_ok=True)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and pid_alive(lay.pidfile(name)):
        time.sleep(0.2)
    if pid_alive(lay.pidfile(name)):
        os.killpg(pid, signal.SIGKILL)
    lay.pidfile(name).unlink(missing_ok=True)
    say(f"{name} stopped")


def stop_processes(procs, timeout: float = 30) -> None:
    """Stop started service processes (each in its own session): SIGTERM to all, then wait, SIGKILL if need be."""
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


# --- Kafka -------------------------------------------------------------------------------


def fetch_kafka(lay: Layout) -> None:
    if lay.kafka_libs.exists() and any(lay.kafka_libs.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        return
    if not shutil.which("mvn") or not shutil.which("java"):
        if os.geteuid() != 0:
            raise SystemExit("[stack] Java 17 and Maven are needed to fetch and run Apache Kafka")
        say("installing Java 17 and Maven from Debian (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "openjdk-17-jre-headless", "maven"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    say(f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central (once)")
    tmp = lay.kafka_libs.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(HERE / "kafka" / "pom.xml"),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={tmp}",
        ],
        check=True,
    )
    tmp.rename(lay.kafka_libs)


KAFKA_SECURITY_MARK = "# sais: SASL_SSL + ACLs v2"


def kafka_properties(lay: Layout, data: Path) -> str:
    """A single KRaft node. Clients: TLS + SCRAM-SHA-512 on one port, authorised by ACLs only
    (allow.everyone.if.no.acl.found=false). The controller port takes mutual TLS: only the broker's
    own certificate (principal kafka-broker) gets in. Both on 127.0.0.1."""
    from sais_shared.devpki import KAFKA_BROKER_CN
    from sais_shared.settings import KAFKA_ADMIN

    keystore, ca = lay.pki / "kafka-broker.pem", lay.pki / "ca.pem"
    admin_pw = lay.secret(f"kafka-{KAFKA_ADMIN}")
    return "\n".join(
        [
            KAFKA_SECURITY_MARK,
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.voters=1@127.0.0.1:{lay.kafka_port + 1}",
            f"listeners=SASL_SSL://127.0.0.1:{lay.kafka_port},CONTROLLER://127.0.0.1:{lay.kafka_port + 1}",
            f"advertised.listeners=SASL_SSL://127.0.0.1:{lay.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=SASL_SSL",
            "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL",
            "sasl.enabled.mechanisms=SCRAM-SHA-512",
            "sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule"
            f' required username="{KAFKA_ADMIN}" password="{admin_pw}";',
            "ssl.keystore.type=PEM",
            f"ssl.keystore.location={keystore}",
            "ssl.truststore.type=PEM",
            f"ssl.truststore.location={ca}",
            "listener.name.controller.ssl.client.auth=required",
            "ssl.principal.mapping.rules=RULE:^CN=([^,]+)$/$1/,DEFAULT",
            "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            f"super.users=User:{KAFKA_ADMIN};User:{KAFKA_BROKER_CN}",
            "allow.everyone.if.no.acl.found=false",
            f"log.dirs={data}",
            "num.partitions=3",
            "auto.create.topics.enable=false",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "transaction.state.log.num.partitions=5",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
    )


def kafka_users(lay: Layout) -> list[str]:
    """StorageTool --add-scram arguments: the administrator, each service and the upstream publisher."""
    from sais_shared.settings import KAFKA_ADMIN, SERVICES, kafka_user

    users = [KAFKA_ADMIN] + [kafka_user(s) for s in (*SERVICES, "publisher")]
    out = []
    for user in users:
        out += ["--add-scram", f"SCRAM-SHA-512=[name={user},password={lay.secret(f'kafka-{user}')}]"]
    return out


def add_kafka_user(lay: Layout, user: str, password: str) -> None:
    """A SCRAM-SHA-512 login on the running broker, made by Kafka's own tool (kafka-configs) as the
    administrator: what a Kafka administrator does for a new upstream publisher."""
    from sais_shared.settings import KAFKA_ADMIN

    fd, name = tempfile.mkstemp(dir=lay.state / "kafka", suffix=".properties")  # mode 0600: it holds a password
    with os.fdopen(fd, "w") as f:
        f.write(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\n"
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="{KAFKA_ADMIN}" password="{lay.secret(f"kafka-{KAFKA_ADMIN}")}";\n'
            f"ssl.truststore.type=PEM\nssl.truststore.location={lay.pki / 'ca.pem'}\n"
        )
    try:
        subprocess.run(
            ["java", "-cp", f"{lay.kafka_libs}/*", "kafka.admin.ConfigCommand",
             "--bootstrap-server", f"127.0.0.1:{lay.kafka_port}", "--command-config", name, "--alter",
             "--add-config", f"SCRAM-SHA-512=[iterations=4096,password={password}]",
             "--entity-type", "users", "--entity-name", user],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        os.unlink(name)


def start_kafka(lay: Layout) -> None:
    if pid_alive(lay.pidfile("kafka")):
        return
    fetch_kafka(lay)
    from sais_shared.devpki import ensure_dev_pki

    ensure_dev_pki(lay.pki)
    data = lay.state / "kafka" / "data"
    props = lay.state / "kafka" / "server.properties"
    props.parent.mkdir(parents=True, exist_ok=True)
    if data.exists() and not (props.exists() and props.read_text().startswith(KAFKA_SECURITY_MARK)):
        say("the Kafka data predates TLS, SCRAM users and ACLs: starting it afresh (development data only)")
        shutil.rmtree(data)
    props.write_text(kafka_properties(lay, data))
    props.chmod(0o600)  # it holds the broker's own SCRAM password
    cp = f"{lay.kafka_libs}/*"
    java = [
        "java",
        "-Xms256m",
        "-Xmx1g",
        f"-Dlog4j.configuration=file:{HERE / 'kafka' / 'log4j.properties'}",
        "-cp",
        cp,
    ]
    if not (data / "meta.properties").exists():
        cluster = (
            subprocess.run(
                [*java, "kafka.tools.StorageTool", "random-uuid"], check=True, capture_output=True, text=True
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        subprocess.run(
            [*java, "kafka.tools.StorageTool", "format", "-t", cluster, "-c", str(props), *kafka_users(lay)],
            check=True,
            capture_output=True,
        )
    ensure_port_free(lay.kafka_port, "Kafka")
    say(f"starting Apache Kafka {KAFKA_VERSION} (KRaft; TLS, SCRAM, ACLs) on 127.0.0.1:{lay.kafka_port}")
    spawn(lay, "kafka", [*java, "kafka.Kafka", str(props)])
    wait_port(lay.kafka_port, "Kafka", 90, lay.log("kafka"), lay.pidfile("kafka"))


def kafka_admin_settings(env: dict[str, str]):
    """CommonSettings from an environment like ``Layout.env()`` (not this process's)."""
    from sais_shared.settings import CommonSettings

    fields = {k.removeprefix("SAIS_").lower(): v for k, v in env.items() if k.startswith("SAIS_")}
    return CommonSettings(**{k: v for k, v in fields.items() if k in CommonSettings.model_fields})


def setup_kafka(env: dict[str, str]) -> dict[str, int]:
    """Topics and ACLs under env's topic prefix, as the Kafka administrator (`sais kafka setup`)."""
    from sais_shared.kafka import setup_kafka as setup

    return asyncio.run(setup(kafka_admin_settings(env)))


async def create_topics(env: dict[str, str], *names: str, partitions: int = 3) -> None:
    """Topics outside the product's set (benchmarks' raw baselines), made by the administrator."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka_client(env))
    await admin.start()
    try:
        await admin.create_topics([NewTopic(n, partitions, 1) for n in names])
    finally:
        await admin.close()


async def delete_topics(env: dict[str, str], *, prefix: str = "", names: tuple[str, ...] = ()) -> int:
    """As the administrator: delete the topics named, and every topic whose name starts with ``prefix.``
    (a run's or a test's whole set). The broker keeps a topic's log until its retention otherwise: a
    1,000,000-pupil bench leaves gigabytes, and a broker holding thousands of topics answers metadata
    requests ever slower. Returns how many it deleted; a broker that is down deletes nothing."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**kafka_client(env))
    try:
        await admin.start()
        ours = [t for t in await admin.list_topics() if t in names or (prefix and t.startswith(f"{prefix}."))]
        if ours:
            await admin.delete_topics(ours)
        return len(ours)
    except KafkaError:
        return 0  # the broker was stopped, or the topics are gone already: nothing of them is left to tidy
    finally:
        await admin.close()


def publish_inbound(
    env: dict[str, str], rows, *, extract_ref: str, source: str, reference_date: str, originator: str
) -> int:
    """As an upstream system would: an extract as sealed, signed events on the inbound topic, as the
    development publisher (its Kafka user may write that topic and nothing else). Returns the events sent."""
    from datetime import date

    from aiokafka import AIOKafkaProducer
    from sais_shared.devpki import DEV_PUBLISHER
    from sais_shared.inbound import InboundExtractWriter

    pki = Path(env["SAIS_LOCAL_PKI"])
    w = InboundExtractWriter(
        (pki / "inbound.pub.pem").read_bytes(), "inbound-1", extract_ref, source, date.fromisoformat(reference_date),
        originator, publisher=DEV_PUBLISHER, signing_key_pem=(pki / "publisher.key").read_bytes(),
    )  # fmt: skip
    topic = f"{env['SAIS_TOPIC_PREFIX']}.ingest.inbound.v1"

    async def send() -> int:
        p = AIOKafkaProducer(**kafka_client(env, "publisher"), enable_idempotence=True, linger_ms=5)
        await p.start()
        n = 0
        try:
            for m in [w.started, *(w.record(r) for r in rows), w.completed()]:
                await p.send(topic, m.model_dump_json().encode(), key=m.extract_ref.encode())
                n += 1
            await p.flush()
        finally:
            await p.stop()
        return n

    return asyncio.run(send())


def kafka_client(env: dict[str, str], principal: str | None = None) -> dict:
    """aiokafka arguments for a script: as a service, the upstream ``publisher`` or the administrator."""
    return kafka_admin_settings(env).kafka_login(principal)


# --- Prometheus (promtool for the alert tests; the server for the monitoring test) ----------------


def ensure_prometheus() -> None:
    """Debian's prometheus package (promtool and the server binary), installed when missing. No
    daemon is started by the install (policy-rc.d refuses it, no recommended exporters): the tests
    start their own Prometheus on 127.0.0.1."""
    if shutil.which("promtool") and shutil.which("prometheus"):
        return
    if os.geteuid() != 0:
        raise SystemExit("[stack] Prometheus is not installed: apt-get install --no-install-recommends prometheus")
    say("installing Prometheus from Debian (apt-get)")
    policy = Path("/usr/sbin/policy-rc.d")
    made = not policy.exists()
    if made:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "prometheus"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    finally:
        if made:
            policy.unlink()


# --- PostgreSQL --------------------------------------------------------------------------


def pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        if os.geteuid() != 0:
            raise SystemExit("[stack] PostgreSQL is not installed: apt-get install postgresql")
        say("installing PostgreSQL from Debian (apt-get)")
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return found[-1].parent


def as_pg_user(argv: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the postgres system user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


def start_postgres(lay: Layout) -> None:
    if port_open(lay.pg_port) and (lay.pgdata / "postmaster.pid").exists():
        return
    ensure_port_free(lay.pg_port, "PostgreSQL")
    bindir = pg_bin()
    pgroot = lay.pgdata.parent
    if not (lay.pgdata / "PG_VERSION").exists():
        pgroot.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(pgroot, "postgres", "postgres")
        say("initialising a throwaway PostgreSQL cluster")
        subprocess.run(
            as_pg_user(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(lay.pgdata),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                ]
            ),
            check=True,
            capture_output=True,
        )
    sock = pgroot / "sock"
    sock.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(sock, "postgres", "postgres")
    configure_postgres_access(lay, pgroot)
    log = pgroot / "postgres.log"
    say(f"starting PostgreSQL (TLS, SCRAM) on 127.0.0.1:{lay.pg_port}")
    opts = (
        f"-p {lay.pg_port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off "
        "-c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB "
        "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track_planning=on "
        f"-c ssl=on -c ssl_cert_file={pgroot / 'server.crt'} -c ssl_key_file={pgroot / 'server.key'} "
        f"-c hba_file={pgroot / 'pg_hba.conf'} -c password_encryption=scram-sha-256"
    )
    subprocess.run(
        as_pg_user(
            [str(bindir / "pg_ctl"), "-D", str(lay.pgdata), "-l", str(log), "-o", opts, "-w", "-t", "60", "start"]
        ),
        check=True,
        capture_output=True,
    )
    provision_roles(lay, sock)


def configure_postgres_access(lay: Layout, pgroot: Path) -> None:
    """TLS with the dev server certificate, and an hba that admits only TLS + SCRAM over TCP (the
    postgres OS user keeps peer access on the Unix socket, for this runner)."""
    for src, dst in ((lay.pki / "smtp-server.pem", "server.crt"), (lay.pki / "smtp-server.key", "server.key")):
        target = pgroot / dst
        target.write_bytes(src.read_bytes())
        target.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(target, "postgres", "postgres")
    (pgroot / "pg_hba.conf").write_text(
        "local   all  postgres                peer\n"
        "hostssl all  all       127.0.0.1/32   scram-sha-256\n"
        "host    all  all       127.0.0.1/32   reject\n"
    )


def provision_roles(lay: Layout, sock: Path) -> None:
    """Passwords for the administrator and the service roles (sais_<service>, LOGIN), and the
    database ``sais`` migrated: what a DBA does once per installation."""
    from sais_shared.settings import SERVICES, service_principal

    statements = [f"ALTER ROLE postgres PASSWORD '{lay.secret('postgres-postgres')}'"]
    for service in SERVICES:
        role = service_principal(service)
        password = lay.secret(f"postgres-{role}")
        statements.append(f"DO $$ BEGIN CREATE ROLE {role}; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        statements.append(f"ALTER ROLE {role} LOGIN PASSWORD '{password}'")
    psql = as_pg_user(
        [
            "psql",
            "-h",
            str(sock),
            "-p",
            str(lay.pg_port),
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
        ]
    )
    subprocess.run(psql, input=";\n".join(statements) + ";\n", text=True, check=True, capture_output=True)
    exists = subprocess.run(
        [*psql, "-tAc", "SELECT 1 FROM pg_database WHERE datname='sais'"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not exists:
        subprocess.run([*psql, "-c", "CREATE DATABASE sais"], check=True, capture_output=True)
    migrate_database(lay.admin_dsn("sais"))


def psql(lay: Layout, sql: str, db: str = "sais") -> str:
    """Run SQL as the administrator over TLS; the first column of the first row (``-tA``)."""
    return subprocess.run(
        ["psql", lay.admin_dsn(db), "-tAc", sql], capture_output=True, text=True, check=True
    ).stdout.strip()


def fresh_database(lay: Layout, db: str) -> str:
    """Drop and re-create a database, migrated (roles confined, protocol in force); its admin DSN."""
    subprocess.run(
        [
            "psql",
            lay.admin_dsn("postgres"),
            "-qc",
            f"DROP DATABASE IF EXISTS {db} WITH (FORCE)",
            "-c",
            f"CREATE DATABASE {db}",
        ],
        check=True,
        capture_output=True,
    )
    migrate_database(lay.admin_dsn(db))
    return lay.admin_dsn(db)


def migrate_database(dsn: str) -> None:
    import asyncio

    import asyncpg

    from sais.dbadmin import migrate_all

    async def go() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate_all(conn)
        finally:
            await conn.close()

    asyncio.run(go())


def stop_postgres(lay: Layout) -> None:
    if not (lay.pgdata / "postmaster.pid").exists():
        return
    subprocess.run(
        as_pg_user([str(pg_bin() / "pg_ctl"), "-D", str(lay.pgdata), "-m", "fast", "-w", "stop"]), capture_output=True
    )
    say("PostgreSQL stopped")


# --- SMTP --------------------------------------------------------------------------------


def start_smtp(lay: Layout) -> None:
    if pid_alive(lay.pidfile("smtpd")):
        return
    ensure_port_free(lay.smtp_port, "the SMTP server")
    say(f"starting SMTP server (STARTTLS required) on 127.0.0.1:{lay.smtp_port}")
    spawn(
        lay,
        "smtpd",
        [
            sys.executable,
            str(HERE / "smtpd.py"),
            "--port",
            str(lay.smtp_port),
            "--cert",
            str(lay.pki / "smtp-server.pem"),
            "--key",
            str(lay.pki / "smtp-server.key"),
            "--maildir",
            str(lay.maildir),
        ],
    )
    wait_port(lay.smtp_port, "SMTP server", 30, lay.log("smtpd"), lay.pidfile("smtpd"))


# --- commands ----------------------------------------------------------------------------


def start(lay: Layout) -> None:
    from sais_shared.devpki import ensure_dev_pki

    lay.state.mkdir(parents=True, exist_ok=True)
    ensure_dev_pki(lay.pki)
    ensure_prometheus()
    start_postgres(lay)
    start_kafka(lay)
    setup_kafka(lay.env())
    start_smtp(lay)
    (lay.state / "env.json").write_text(json.dumps(lay.env(), indent=2))
    say("stack is up")


def stop(lay: Layout) -> None:
    kill(lay, "smtpd")
    kill(lay, "kafka", timeout=30)
    stop_postgres(lay)


def status(lay: Layout) -> int:
    rows = {
        "kafka": port_open(lay.kafka_port) and bool(pid_alive(lay.pidfile("kafka"))),
        "postgres": port_open(lay.pg_port),
        "smtpd": port_open(lay.smtp_port) and bool(pid_alive(lay.pidfile("smtpd"))),
    }
    for name, up in rows.items():
        print(f"{name:9} {'up' if up else 'down'}")
    return 0 if all(rows.values()) else 3


def main(argv: list[str]) -> int:
    lay = layout()
    cmd = argv[0] if argv else "status"
    if cmd == "start":
        start(lay)
    elif cmd == "stop":
        stop(lay)
    elif cmd == "status":
        return status(lay)
    elif cmd == "env":
        for k, v in lay.env().items():
            print(f"export {k}={shlex.quote(v)}")
    elif cmd == "reset":
        stop(lay)
        shutil.rmtree(lay.state, ignore_errors=True)
        say(f"removed {lay.state}")
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
