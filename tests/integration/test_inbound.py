"""Extracts published by upstream systems on the inbound topic, through real Kafka and PostgreSQL."""

import csv
from datetime import date

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from faststream import TestApp
from sais_ingest.app import build_app
from sais_ingest.config import IngestSettings
from sais_shared.inbound import InboundExtractWriter
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import REPO, personal_values, read_topic

pytestmark = pytest.mark.integration
MAY = REPO / "data" / "samples" / "may-census-2017.csv"


def may_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(MAY.read_text(encoding="utf-8-sig").splitlines()))


async def publish(infra, topic, messages):
    p = AIOKafkaProducer(bootstrap_servers=infra.kafka_bootstrap, enable_idempotence=True)
    await p.start()
    try:
        for m in messages:
            await p.send(topic, m.model_dump_json().encode(), key=m.extract_ref.encode())
        await p.flush()
    finally:
        await p.stop()


def writer(infra, ref):
    return InboundExtractWriter((infra.pki / "inbound.pub.pem").read_bytes(), "inbound-1", ref, "summer-census",
                                date(2017, 5, 18), "SIMS (test)")


async def status(dsn, ref):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT status, problem FROM ingest.inbound_extracts WHERE extract_ref=$1", ref)
    finally:
        await conn.close()


async def test_a_complete_inbound_extract_is_ingested_like_a_file(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "sims-937-may-2017-001")
    msgs = [w.started, *[w.record(r) for r in may_rows()], w.completed()]
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        await wait_until(lambda: status(dsn, "sims-937-may-2017-001"), what="staged")
        row = await wait_until(lambda: _ingested(dsn, "sims-937-may-2017-001"), what="ingested")
        # The same rows again, re-encrypted under another reference: recognised, nothing new published.
        w2 = writer(infra, "sims-937-may-2017-001-resend")
        await publish(infra, topics.inbound, [w2.started, *[w2.record(r) for r in may_rows()], w2.completed()])
        await wait_until(lambda: _ingested(dsn, "sims-937-may-2017-001-resend"), what="resend handled")
    assert row["accepted"] == 49 and row["rejected"] == 2 and row["out_of_scope"] == 1
    pupils = await read_topic(infra.kafka_bootstrap, topics.pupil_recorded)
    assert len(pupils) == 49
    raw = b"\n".join(r.value for r in await read_topic(infra.kafka_bootstrap, topics.inbound)).decode()
    assert not any(v in raw for v in personal_values(MAY))  # nothing readable on the inbound topic either
    conn = await asyncpg.connect(dsn)
    assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0  # staging emptied
    assert await conn.fetchval("SELECT count(*) FROM ingest.extracts") == 1
    await conn.close()


async def _ingested(dsn, ref):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT e.* FROM ingest.inbound_extracts i JOIN ingest.extracts e "
                                   "USING (extract_id) WHERE i.extract_ref=$1 AND i.status='ingested'", ref)
    finally:
        await conn.close()


async def test_a_partial_extract_is_never_treated_as_complete(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "adm-partial-1")
    records = [w.record(r) for r in may_rows()[:6]]
    done = w.completed()
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, *records[:3], *records[4:], done])  # seq 4 lost
        st = await wait_until(lambda: _status_is(dsn, "adm-partial-1", "incomplete"), what="incomplete")
        assert "received 5 of 6" in st["problem"] and "missing seq [4]" in st["problem"]
        assert await read_topic(infra.kafka_bootstrap, topics.pupil_recorded) == []
        await publish(infra, topics.inbound, [records[3], done])  # the publisher re-sends what was missing
        await wait_until(lambda: _ingested(dsn, "adm-partial-1"), what="completed after re-send")
    assert len(await read_topic(infra.kafka_bootstrap, topics.pupil_recorded)) == 6


async def test_a_checksum_mismatch_is_refused(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "bad-sum-1")
    records = [w.record(r) for r in may_rows()[:3]]
    forged = w.completed().model_copy(update={"checksum": "0" * 64})
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, *records, forged])
        st = await wait_until(lambda: _status_is(dsn, "bad-sum-1", "incomplete"), what="refused")
    assert "checksum" in st["problem"]
    assert await read_topic(infra.kafka_bootstrap, topics.pupil_recorded) == []


async def _status_is(dsn, ref, wanted):
    row = await status(dsn, ref)
    return row if row is not None and row["status"] == wanted else None
