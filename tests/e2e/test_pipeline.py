"""The whole pipeline as an operator runs it: the services as separate processes on real Kafka,
PostgreSQL and SMTP, the CLI for ingest, delivery and retention. Checks the delivered files
against an independent count of the input, proves deletion (no readable personal data of the
deleted transfer in any topic or table, the other transfer intact) and scans every log line."""

import csv
import email
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
from sais_shared.crypto import Sealed
from sais_shared.keystore import KeyStore
from sais_shared.settings import CommonSettings
from sais_shared.topics import Topics

from tests.helpers import (
    REPO,
    all_table_text,
    free_port,
    openssl_open,
    oracle,
    personal_values,
    read_topic,
)
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.e2e
SAMPLES = REPO / "data" / "samples"
SAIS = str(REPO / ".venv" / "bin" / "sais")


class Pipeline:
    def __init__(self, env: dict[str, str], logdir: Path) -> None:
        self.env = {**os.environ, **env}
        self.logdir = logdir
        self.procs: list[subprocess.Popen] = []
        self.ports: dict[str, int] = {}

    def start(self) -> None:
        for name in ("ingest", "eligibility", "delivery", "retention"):
            out = open(self.logdir / f"{name}.log", "w")  # noqa: SIM115 - a child process's log, open as long as it runs
            self.ports[name] = free_port()  # never a fixed port: another run may hold 8081–8084
            self.procs.append(
                subprocess.Popen(
                    [str(REPO / ".venv" / "bin" / "python"), "-m", f"sais_{name}"],
                    env={**self.env, "SAIS_AS_OF": "2017-07-10", "SAIS_HTTP_PORT": str(self.ports[name])},
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        self.wait_ready()

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Until every service answers /readyz, as an orchestrator waits before it sends work: a service is
        ready once each of its consumers has joined its group, which takes retention (five consumers in one
        group, joined one after another) some seconds. The work below would not wait for it; the probes do."""
        deadline = time.monotonic() + timeout
        waiting = dict(self.ports)
        while waiting and time.monotonic() < deadline:
            for name, port in list(waiting.items()):
                try:
                    if http_get(port, "/readyz") == (200, "ready"):
                        del waiting[name]
                except OSError:  # not listening yet
                    pass
            if waiting:
                time.sleep(0.2)  # a poll's interval; what is awaited is each service's answer
        assert not waiting, f"not ready after {timeout:.0f} s: {sorted(waiting)} (logs in {self.logdir})"

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            p.wait(30)

    def cli(self, *args: str, as_of: str) -> str:
        with open(self.logdir / "cli.log", "a") as log:
            r = subprocess.run(
                [SAIS, *args],
                env={**self.env, "SAIS_AS_OF": as_of, "SAIS_CLI_LOG_FORMAT": "json"},  # its log lines: scanned below
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert r.returncode == 0, f"sais {' '.join(args)} → {r.returncode}: {r.stdout}"
        return r.stdout


def http_get(port: int, path: str) -> tuple[int, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def probe_all(ports: dict[str, int]) -> dict[str, str]:
    out = {}
    for name, port in ports.items():
        assert http_get(port, "/healthz") == (200, "ok"), name
        assert http_get(port, "/readyz") == (200, "ready"), name
        status, out[name] = http_get(port, "/metrics")
        assert status == 200 and "sais_" in out[name], name
    return out


async def wait_sql(dsn: str, sql: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    conn = await asyncpg.connect(dsn)
    try:
        while time.monotonic() < deadline:
            try:
                if await conn.fetchval(sql):
                    return
            except asyncpg.UndefinedTableError:
                pass
            await __import__("asyncio").sleep(0.3)
    finally:
        await conn.close()
    raise AssertionError(f"timed out: {sql}")


async def test_whole_pipeline_delivers_exactly_the_cohorts_and_deletes_provably(env, infra, tmp_path):
    files = {
        "summer-census": SAMPLES / "may-census-2017.csv",
        "admissions-reception": SAMPLES / "admissions-reception-2017.csv",
        "admissions-year3-transfer": SAMPLES / "admissions-year3-transfer-2017.csv",
        "autumn-census": SAMPLES / "october-census-2017.csv",
    }
    refs = {
        "summer-census": "2017-05-18",
        "admissions-reception": "2017-04-18",
        "admissions-year3-transfer": "2017-04-18",
        "autumn-census": "2017-10-05",
    }
    dsn = env["SAIS_DATABASE_URL"]
    p = Pipeline(env, tmp_path)
    p.start()
    try:
        for source in ("summer-census", "admissions-reception", "admissions-year3-transfer"):
            rep = json.loads(
                p.cli(
                    "ingest",
                    "file",
                    str(files[source]),
                    "--source",
                    source,
                    "--reference-date",
                    refs[source],
                    "--json",
                    as_of="2017-06-01",
                )
            )
            assert rep["balanced"]
        await wait_sql(dsn, "SELECT count(*) = 3 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL")
        await wait_sql(
            dsn,
            "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active') AND "
            "(SELECT count(*) FROM eligibility.outbox) = 0",
        )
        july = json.loads(
            p.cli("delivery", "send", "--window", "july", "--academic-year", "2017/18", "--json", as_of="2017-07-10")
        )
        p.cli(
            "ingest",
            "file",
            str(files["autumn-census"]),
            "--source",
            "autumn-census",
            "--reference-date",
            refs["autumn-census"],
            as_of="2017-10-12",
        )
        await wait_sql(dsn, "SELECT count(*) = 4 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL")
        await wait_sql(
            dsn,
            "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active') AND "
            "(SELECT count(*) FROM eligibility.outbox) = 0",
        )
        december = json.loads(
            p.cli(
                "delivery", "send", "--window", "december", "--academic-year", "2017/18", "--json", as_of="2017-12-04"
            )
        )

        # What the SAIS received, opened with openssl, matches an independent count of the input.
        delivered: dict[str, int] = {}
        for res in (july, december):
            [msg] = [m for m in infra.maildir.glob("*.eml") if res["message_id"].encode() in m.read_bytes()]
            inner = email.message_from_bytes(openssl_open(msg, infra.pki))
            for part in inner.walk():
                name = part.get_filename()
                if name and name.endswith("-2017-18.csv"):
                    rows = list(csv.DictReader(part.get_payload(decode=True).decode("utf-8-sig").splitlines()))
                    delivered[name.removesuffix("-2017-18.csv")] = len(rows)
        assert delivered == oracle(files)

        # Every service answers its probes, and its metrics show the work (with no personal data in them).
        metrics = probe_all(p.ports)
        assert 'sais_records_consumed_total{service="sais-eligibility",topic="' in metrics["eligibility"]
        assert "sais_cohort_events_total" in metrics["eligibility"]
        assert 'sais_records_consumed_total{service="sais-delivery"' in metrics["delivery"]
        every_value = PersonalDataScan(set().union(*(personal_values(f) for f in files.values())))
        assert not any(every_value.in_text(text) for text in metrics.values())

        # Retention: both transfers scheduled; the July one is deleted on 10 October, December's kept.
        await wait_sql(dsn, "SELECT count(*) = 2 FROM retention.schedule WHERE subject LIKE 'batch:%'")
        # Keys are destroyed at once; ingest, eligibility and delivery delete their rows and confirm; the
        # certificate follows their confirmations.
        requests = json.loads(
            p.cli("retention", "run", "--now", "2017-10-11", "--json", "--wait", "90", as_of="2017-10-11")
        )
        transfers = [r for r in requests if r["subject"].startswith("batch:")]
        assert [r["subject"] for r in transfers] == [f"batch:{july['batch_id']}"]
        assert len(transfers[0]["key_ids"]) == 3 and transfers[0]["certificate_id"]
    finally:
        p.stop()

    # No readable name, DOB, address or postcode of the deleted transfer anywhere: every topic, every table.
    deleted = set().union(
        *(personal_values(files[s]) for s in ("summer-census", "admissions-reception", "admissions-year3-transfer"))
    )
    kept = personal_values(files["autumn-census"])
    deleted -= kept  # a value shared by both (a common street) is legitimately still held
    deleted_scan = PersonalDataScan(deleted)
    topics = Topics(env["SAIS_TOPIC_PREFIX"])
    settings = CommonSettings(**{"database_url": dsn, "kek_file": env["SAIS_KEK_FILE"]})
    from sais_shared.crypto import KeyEncryptionKey
    from sais_shared.db import create_pool

    pool = await create_pool(dsn)
    keys = KeyStore(pool, KeyEncryptionKey(settings.key_encryption_key_bytes()))
    readable: list[str] = []
    for topic in topics.all():
        for rec in await read_topic(infra.kafka, topic):
            found = deleted_scan.in_event(rec.value)
            assert not found, f"clear personal data in {topic} ({len(found)} values)"
            personal = json.loads(rec.value).get("personal")
            if personal:
                sealed = Sealed.model_validate(personal)
                if await keys.live_among([sealed.key_id]):
                    readable.append(topic)
    await pool.close()
    tables = await all_table_text(dsn)
    assert not deleted_scan.in_text(tables), "personal data of the deleted transfer in PostgreSQL"
    # What is still readable is exactly December's transfer (the October census key).
    conn = await asyncpg.connect(dsn)
    live = await conn.fetchval("SELECT count(*) FROM shared.data_keys WHERE wrapped IS NOT NULL")
    members = await conn.fetchval("SELECT count(*) FROM delivery.members WHERE status='active'")
    # No copy outside the data keys' reach: no stored message, no staged inbound record.
    assert await conn.fetchval("SELECT count(*) FROM delivery.batches WHERE message IS NOT NULL") == 0
    assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0
    await conn.close()
    assert live == 1 and members == sum(december["counts"].values())
    assert readable and set(readable) <= {topics.pupil_recorded, topics.cohort}

    # No personal data in any log line of any service or CLI run.
    every = PersonalDataScan(set().union(*(personal_values(f) for f in files.values())))
    for log in tmp_path.glob("*.log"):
        text = log.read_text()
        assert text, f"{log.name} is empty"
        leaked = every.in_text(text)
        assert not leaked, f"{log.name} logged personal data ({len(leaked)} values)"
