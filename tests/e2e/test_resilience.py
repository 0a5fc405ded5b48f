"""A service killed mid-stream, and the broker restarted under running services: nothing lost, nothing
duplicated downstream."""

import asyncio
import os
import signal
import subprocess
import sys
import time

import asyncpg
import pytest
from sais_shared.events import CohortMemberAdded
from sais_shared.topics import Topics

from tests.e2e.test_pipeline import wait_sql
from tests.helpers import REPO, cohort_member_events, oracle
from tests.synthetic import REFERENCE_DATES, write_samples

pytestmark = pytest.mark.e2e
PY = str(REPO / ".venv" / "bin" / "python")


def start(name, env, logdir):
    out = open(logdir / f"{name}.log", "a")  # noqa: SIM115 - a child process's log, open as long as it runs
    return subprocess.Popen(
        [PY, "-m", f"sais_{name}"],
        env={**os.environ, **env, "SAIS_AS_OF": "2017-07-10"},
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def ingest(env, path, source):
    r = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "sais"),
            "ingest",
            "file",
            str(path),
            "--source",
            source,
            "--reference-date",
            REFERENCE_DATES[source].isoformat(),
            "--json",
        ],
        env={**os.environ, **env, "SAIS_AS_OF": "2017-10-12" if source == "autumn-census" else "2017-06-01"},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]


async def count(dsn, sql):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql)
    except asyncpg.UndefinedTableError:
        return 0
    finally:
        await conn.close()


@pytest.mark.exclusive  # it restarts the shared broker: runs alone, after the parallel run
async def test_killed_service_and_restarted_broker_lose_and_duplicate_nothing(env, infra, tmp_path):
    env = {**env, "SAIS_HTTP_PORT": "0"}  # several services here: no fixed HTTP ports
    dsn = env["SAIS_DATABASE_URL"]
    files = write_samples(tmp_path / "data", seed=11, per_year=1200)
    expected = oracle(files)
    for source in ("summer-census", "admissions-reception", "admissions-year3-transfer"):
        ingest(env, files[source], source)  # a full backlog first, so the kill below lands early in it
    total = await count(dsn, "SELECT sum(accepted) FROM ingest.extracts")
    procs = {"eligibility": start("eligibility", env, tmp_path), "delivery": start("delivery", env, tmp_path)}
    try:
        deadline = time.monotonic() + 120
        while (done := await count(dsn, "SELECT count(*) FROM eligibility.records")) < 500:
            assert time.monotonic() < deadline, "eligibility made no progress"
            await asyncio.sleep(0.05)
        os.killpg(procs["eligibility"].pid, signal.SIGSTOP)  # frozen, so the count below is the one at the kill
        at_kill = await count(dsn, "SELECT count(*) FROM eligibility.records")
        os.killpg(procs["eligibility"].pid, signal.SIGKILL)  # no graceful shutdown: mid-batch, mid-outbox
        procs["eligibility"].wait()
        assert done <= at_kill < total, "the kill must land mid-stream for this test to mean anything"
        procs["eligibility"] = start("eligibility", env, tmp_path)
        await wait_sql(dsn, "SELECT count(*) = 3 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL", 180)

        # The broker restarts under the running services; the next extract still flows end to end.
        sys.path.insert(0, str(REPO / "deploy" / "local"))
        import stack

        lay = stack.layout()
        stack.kill(lay, "kafka")  # returns once the broker process is gone
        assert stack.port_open(lay.kafka_port) is False, "the broker must really be down"
        stack.start_kafka(lay)
        ingest(env, files["autumn-census"], "autumn-census")
        await wait_sql(dsn, "SELECT count(*) = 4 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL", 180)
        await wait_sql(
            dsn,
            "SELECT (SELECT count(*) FROM eligibility.outbox) = 0 AND "
            "(SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active')",
            120,
        )
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.wait(30)

    conn = await asyncpg.connect(dsn)
    got = {
        r["programme"]: r["n"]
        for r in await conn.fetch(
            "SELECT programme || coalesce('-dose-' || dose, '') AS programme, count(*) n FROM delivery.members "
            "WHERE status='active' GROUP BY 1"
        )
    }
    await conn.close()
    assert got == expected  # delivery holds exactly the cohort an independent count expects

    events = await cohort_member_events(infra.kafka, Topics(env["SAIS_TOPIC_PREFIX"]).cohort, timeout=60)
    # At-least-once on the wire, exactly-once in effect: a repeat is the same event (same id, same content).
    by_id: dict = {}
    for e in events:
        assert by_id.setdefault(e.event_id, e.model_dump(exclude={"personal", "occurred_at"})) == e.model_dump(
            exclude={"personal", "occurred_at"}
        )
    latest = {}
    for e in sorted({e.event_id: e for e in events}.values(), key=lambda e: e.revision):
        latest[(e.programme, e.dose, e.pupil_id)] = e
    live = [e for e in latest.values() if isinstance(e, CohortMemberAdded)]
    assert len(live) == sum(expected.values())
    print(f"records at kill {at_kill}/{total}; cohort events {len(events)} ({len(by_id)} distinct)", file=sys.stderr)


async def test_an_owner_killed_mid_deletion_confirms_after_restart_and_the_certificate_follows(env, tmp_path):
    """Retention destroys the keys at once; delivery, frozen then killed before it deletes, picks the
    request up again after a restart; the certificate waits for it and then counts every owner's rows."""
    env = {**env, "SAIS_HTTP_PORT": "0", "SAIS_RETENTION_INTERVAL_S": "3600"}
    dsn = env["SAIS_DATABASE_URL"]
    procs = {name: start(name, env, tmp_path) for name in ("ingest", "eligibility", "delivery", "retention")}
    try:
        ingest(env, REPO / "data" / "samples" / "may-census-2017.csv", "summer-census")
        await wait_sql(dsn, "SELECT count(*) = 1 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL", 120)
        await wait_sql(
            dsn,
            "SELECT count(*) > 0 AND count(*) = (SELECT count(*) FROM eligibility.cohort "
            "WHERE status='active') FROM delivery.members WHERE status='active'",
            120,
        )
        await wait_sql(dsn, "SELECT count(*) = 1 FROM retention.schedule", 60)
        members = await count(dsn, "SELECT count(*) FROM delivery.members")

        os.killpg(procs["delivery"].pid, signal.SIGSTOP)  # delivery cannot take the request
        r = subprocess.run(
            # due 3 months after the day retention (its clock on 2017-07-10) learnt of the ingest
            [str(REPO / ".venv" / "bin" / "sais"), "retention", "run", "--now", "2017-10-11", "--json"],
            env={**os.environ, **env, "SAIS_AS_OF": "2017-10-11"},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr[-2000:]
        # The immediate guarantee: the key is gone before any owner has deleted anything.
        assert await count(dsn, "SELECT count(*) FROM shared.data_keys WHERE wrapped IS NOT NULL") == 0
        await wait_sql(
            dsn,
            "SELECT count(*) = 2 FROM retention.confirmations c JOIN retention.requests r "
            "USING (request_id) WHERE r.subject LIKE 'extract:%'",
            60,
        )  # ingest, eligibility
        assert await count(dsn, "SELECT count(*) FROM retention.certificates") == 0  # waits for delivery
        os.killpg(procs["delivery"].pid, signal.SIGKILL)
        procs["delivery"].wait()
        assert await count(dsn, "SELECT count(*) FROM delivery.members") == members  # it never got to delete

        procs["delivery"] = start("delivery", env, tmp_path)
        await wait_sql(dsn, "SELECT count(*) = 1 FROM retention.certificates WHERE subject LIKE 'extract:%'", 120)
    finally:
        for p in procs.values():
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGCONT)
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            p.wait(30)
    assert await count(dsn, "SELECT count(*) FROM delivery.members") == 0
    assert await count(dsn, "SELECT count(*) FROM eligibility.records") == 0
    rows = await count(dsn, "SELECT rows_deleted FROM retention.certificates")
    import json

    counts = json.loads(rows)
    assert counts["delivery.members"] == members and counts["eligibility.records"] > 0
    assert await count(dsn, "SELECT count(*) FROM delivery.deletions") == 1  # deleted once, confirmed twice at most
