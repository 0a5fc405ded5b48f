"""The compose stack as an operator runs it: the README's walkthrough, as written, on a private Docker
engine with the images `make images` builds (the project's own from its Dockerfile); then what compose
promises and the local runner never shows: a restart of every container keeps its data, and Kafka's
log survives its container. Skipped, with the reason, only where no container engine can be started.

The containers talk only to each other (on the network compose makes for this test's project) and to
127.0.0.1 through their published ports; the host ports are chosen by the kernel for this test."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import REPO, free_port, openssl_open, read_topic, readme_block

pytestmark = pytest.mark.compose

ENGINE = REPO / "deploy" / "images" / "engine.sh"
RUNNING = ("kafka", "postgres", "smtp", "ingest", "eligibility", "delivery", "retention")


@pytest.fixture(scope="module")
def engine() -> dict[str, str]:
    """A private dockerd with the stand-in and project images built (cached); stopped after, if this
    test started it."""
    was_up = subprocess.run(["bash", str(ENGINE), "status"], capture_output=True).returncode == 0
    built = subprocess.run(["bash", "deploy/images/build.sh"], cwd=REPO, capture_output=True, text=True)
    if built.returncode != 0:
        if subprocess.run(["bash", str(ENGINE), "status"], capture_output=True).returncode != 0:
            pytest.skip("no container engine can be started here: " + built.stderr.strip().splitlines()[-1:][0])
        pytest.fail("make images failed:\n" + built.stderr[-4000:])
    line = subprocess.run(["bash", str(ENGINE), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(kv.split("=", 1) for kv in shlex.split(line.removeprefix("export ")))
    yield env
    if not was_up:
        subprocess.run(["bash", str(ENGINE), "stop"], check=True)


@pytest.fixture(scope="module")
def project(engine: dict[str, str]):
    """A compose project of this test's own (name, host ports), with a person's clean shell: none of
    this session's SAIS_* settings. Removed with its volumes afterwards, whatever happened."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAIS_", "DOCKER_", "COMPOSE_"))}
    env |= engine | {
        "COMPOSE_PROJECT_NAME": f"sais-t{uuid.uuid4().hex[:8]}",
        "SAIS_KAFKA_HOST_PORT": str(free_port()),
        "SAIS_POSTGRES_HOST_PORT": str(free_port()),
        "SAIS_MAILPIT_HOST_PORT": str(free_port()),
        "DOCKER_BUILDKIT": "0",
        "COLUMNS": "160",
    }
    yield env
    subprocess.run(["docker", "compose", "down", "-v", "--timeout", "10"], cwd=REPO, env=env, capture_output=True)


def compose(env: dict[str, str], *args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(
        ["docker", "compose", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert done.returncode == 0, f"docker compose {' '.join(args)}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    return done.stdout


def cli(env: dict[str, str], *args: str, entrypoint: str | None = None) -> str:
    over = ["--entrypoint", entrypoint] if entrypoint else ["-e", "SAIS_ACTOR=Compose Test"]
    return compose(env, "run", "--rm", "--no-deps", "-T", *over, "cli", *args)


def health(env: dict[str, str]) -> dict[str, str]:
    rows = [json.loads(x) for x in compose(env, "ps", "--all", "--format", "json").splitlines() if x.strip()]
    return {r["Service"]: r.get("Health") or r["State"] for r in rows}


def wait_healthy(env: dict[str, str], timeout: float = 240) -> dict[str, str]:
    """Every long-running container healthy (a restarted broker makes the services unready for a while,
    and they recover by themselves: this waits for that, and fails with the last states if they don't)."""
    deadline = time.monotonic() + timeout
    while True:
        states = health(env)
        if all(states.get(s) == "healthy" for s in RUNNING):
            return states
        assert time.monotonic() < deadline, f"not healthy after {timeout:.0f} s: {states}"
        time.sleep(2)


SECRET_FILES = {  # besides the CA and its own passwords (security review, finding 4)
    "ingest": {"kek.b64", "inbound.key"},
    "eligibility": {"kek.b64"},
    "delivery": {"kek.b64", "sender.pem", "sender.key", "recipient.pem"},
    "retention": set(),  # it destroys data keys and never opens one
}


def walkthrough() -> list[str]:
    return readme_block("### With Docker Compose", "make images")


def secrets(env: dict[str, str], folder: Path) -> Path:
    """The dev PKI's CA, recipient key and Kafka administrator's password, copied out of the pki volume."""
    folder.mkdir(mode=0o700, exist_ok=True)
    for name in ("ca.pem", "recipient.pem", "recipient.key", "credentials/kafka-admin"):
        (folder / Path(name).name).write_text(cli(env, f"/pki/{name}", entrypoint="cat"))
    return folder


async def kafka_snapshot(env: dict[str, str], pki: Path) -> tuple[dict[str, int], list]:
    """Messages on each of the product's topics, and every record of the pupil topic (which only an
    ingest writes), read from the host as the Kafka administrator over TLS with SCRAM (HOST listener)."""
    import sys

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    sys.path.insert(0, str(REPO / "deploy" / "local"))
    import stack

    login = stack.kafka_client(
        {
            "SAIS_KAFKA_BOOTSTRAP": f"127.0.0.1:{env['SAIS_KAFKA_HOST_PORT']}",
            "SAIS_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "SAIS_KAFKA_CA_FILE": str(pki / "ca.pem"),
            "SAIS_KAFKA_ADMIN_PASSWORD_FILE": str(pki / "kafka-admin"),
        }
    )
    admin, consumer = AIOKafkaAdminClient(**login), AIOKafkaConsumer(**login)
    await admin.start()
    await consumer.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if t.startswith("sais."))
        assert topics, "no product topics on the broker"
        parts = [TopicPartition(t["topic"], p["partition"]) for t in await admin.describe_topics(topics)
                 for p in t["partitions"]]  # fmt: skip
        ends = await consumer.end_offsets(parts)
    finally:
        await consumer.stop()
        await admin.close()
    out: dict[str, int] = {}
    for tp, n in ends.items():
        out[tp.topic] = out.get(tp.topic, 0) + n
    pupils = await read_topic(login, "sais.ingest.pupil-recorded.v1", timeout=30)
    return out, sorted((r.partition, r.offset, r.value) for r in pupils)


async def database_counts(env: dict[str, str], pki: Path) -> dict[str, int]:
    """Rows the pipeline keeps, read from the host over TLS as the database owner."""
    tls = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    conn = await asyncpg.connect(
        host="127.0.0.1", port=int(env["SAIS_POSTGRES_HOST_PORT"]), user="sais", password="sais", database="sais",
        ssl=tls,
    )  # fmt: skip
    try:
        return {
            "extracts": await conn.fetchval("SELECT count(*) FROM ingest.extracts"),
            "records": await conn.fetchval("SELECT count(*) FROM eligibility.records"),
            "batches": await conn.fetchval("SELECT count(*) FROM delivery.batches"),
            "audit": await conn.fetchval("SELECT count(*) FROM shared.audit_log"),
        }
    finally:
        await conn.close()


def mailpit(env: dict[str, str], path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{env['SAIS_MAILPIT_HOST_PORT']}{path}", timeout=10) as r:
        return r.read()


@pytest.mark.timeout(900)  # a whole stack, restarted: minutes, not the suite's 300 s per test
def test_the_compose_walkthrough_runs_as_written_and_a_restart_of_every_container_loses_nothing(project, tmp_path):
    lines = walkthrough()
    assert lines[-1].startswith("docker compose down -v"), "the walkthrough ends by removing the stack"
    script = "\n".join(["set -euo pipefail", "shopt -s expand_aliases", *lines[:-1]]) + "\n"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=REPO,
        env=project,
        capture_output=True,
        text=True,
        timeout=900,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    project["SAIS_AS_OF"] = "2017-07-10"  # as the walkthrough exported it: the same configuration from here on
    said = " ".join(done.stdout.split())
    assert "rows in 52 = accepted 49 + rejected 2 + out of scope 1" in said, said[:4000]
    assert re.search(r"batch [0-9a-f-]{36} → \S+@nhs\.net: sent", said), said[-3000:]

    # Every service is healthy: its /readyz reached Kafka (TLS + its own SCRAM login) and PostgreSQL.
    assert wait_healthy(project, timeout=60)
    # … holding only the secret files it reads: the CA, its own two passwords, and its own keys.
    for service, own in SECRET_FILES.items():
        found = set(compose(project, "exec", "-T", service, "find", "/pki", "-type", "f").split())
        mine = {"/pki/ca.pem", f"/pki/credentials/postgres-sais_{service}", f"/pki/credentials/kafka-sais-{service}"}
        assert found == mine | {f"/pki/{f}" for f in own}, (service, found)

    # The CLI's report is in the exports volume, and it is the ingest's.
    report = json.loads(cli(project, "/exports/may.json", entrypoint="cat"))
    assert (report["rows_in"], report["accepted"], report["rejected"], report["status"]) == (52, 49, 2, "completed")

    # The message Mailpit took opens with the recipient's key and verifies against the CA, by stock openssl.
    pki = secrets(project, tmp_path / "pki")
    messages = json.loads(mailpit(project, "/api/v1/messages"))["messages"]
    assert len(messages) == 1, messages
    raw = tmp_path / "message.eml"
    raw.write_bytes(mailpit(project, f"/api/v1/message/{messages[0]['ID']}/raw"))
    opened = openssl_open(raw, pki)  # which also checks every Mavis file in it against Mavis's rules
    assert b"Content-Disposition: attachment" in opened

    before_db = asyncio.run(database_counts(project, pki))
    before_kafka, before_pupils = asyncio.run(kafka_snapshot(project, pki))
    assert before_db["extracts"] == 1 and before_db["records"] == 49 and before_db["batches"] == 1
    assert len(before_pupils) == 49, len(before_pupils)

    # Restart every container: the servers (their named volumes keep PostgreSQL's data and Kafka's
    # log) and each service. They come back healthy by themselves, with everything still there.
    compose(project, "restart", "--timeout", "20", "postgres", "kafka", "smtp")
    compose(project, "restart", "--timeout", "20", "ingest", "eligibility", "delivery", "retention")
    wait_healthy(project)
    after_db = asyncio.run(database_counts(project, pki))
    after_kafka, after_pupils = asyncio.run(kafka_snapshot(project, pki))
    assert after_db == before_db
    # The log is the one from before the restart (a new one would have no topics and no pupils): every
    # pupil event is there, byte for byte, at its offset; other topics have only grown (transaction
    # markers, the services' periodic events).
    assert after_pupils == before_pupils
    assert all(after_kafka.get(t, 0) >= n for t, n in before_kafka.items()), (before_kafka, after_kafka)

    # … and the pipeline carries on where it was: the same window again sends nothing twice.
    again = " ".join(cli(project, "delivery", "send", "--window", "july", "--academic-year", "2017/18").split())
    assert not re.search(r"batch [0-9a-f-]{36} → \S+: sent", again), again
    assert len(json.loads(mailpit(project, "/api/v1/messages"))["messages"]) == 1
    assert "audit trail intact" in cli(project, "audit", "verify")
