"""The broker is real Apache Kafka: idempotent and transactional producers work against it."""

import uuid

import pytest
from aiokafka import AIOKafkaProducer

from tests.helpers import create_topic, read_topic

pytestmark = pytest.mark.integration


async def test_idempotent_and_transactional_producers_work(infra):
    topic = await create_topic(infra.kafka, f"t-broker-{uuid.uuid4().hex[:8]}")
    idem = AIOKafkaProducer(**infra.kafka, enable_idempotence=True, acks="all")
    await idem.start()
    try:
        await idem.send_and_wait(topic, b"idempotent")
    finally:
        await idem.stop()

    tx = AIOKafkaProducer(**infra.kafka, transactional_id=f"tx-{uuid.uuid4().hex}")
    await tx.start()
    try:
        async with tx.transaction():
            await tx.send(topic, b"committed")
        await tx.begin_transaction()
        await tx.send(topic, b"aborted")
        await tx.abort_transaction()
    finally:
        await tx.stop()

    values = [r.value for r in await read_topic(infra.kafka, topic)]
    assert sorted(values) == [b"committed", b"idempotent"]  # read_committed never sees the aborted record


async def test_events_are_sent_through_aiokafka_directly_once_the_broker_is_connected(infra):
    """publish_many skips FastStream's per-message pipeline; this fails if a FastStream upgrade moves
    the producer, instead of silently halving publishing speed."""
    from faststream.kafka import KafkaBroker
    from sais_shared.kafka import aiokafka_producer, publish_many

    topic = await create_topic(infra.kafka, f"t-raw-{uuid.uuid4().hex[:8]}")
    broker = KafkaBroker(infra.kafka_bootstrap, security=infra.kafka_settings.kafka_security(None))
    publisher = broker.publisher(topic)
    await broker.start()
    try:
        assert aiokafka_producer(publisher) is not None
        assert await publish_many(publisher, [(b"k", b'{"n": 1}'), (None, b'{"n": 2}')]) == 2
    finally:
        await broker.stop()
    assert sorted(r.value for r in await read_topic(infra.kafka, topic)) == [b'{"n": 1}', b'{"n": 2}']


async def test_queued_events_are_published_from_memory_once_and_a_row_held_by_another_flush_is_left_to_it(
    infra, settings_env
):
    """publish_queued reads only the rows of the events it is given (locked, SKIP LOCKED): those still queued
    go to the topic, in order, and leave the outbox; one another flush holds stays with it; one gone is skipped."""
    from faststream.kafka import KafkaBroker
    from sais_eligibility.adapters.repository import PgOutbox
    from sais_eligibility.app import MIGRATIONS

    from tests.helpers import service_pool

    topic = await create_topic(infra.kafka, f"t-outbox-{uuid.uuid4().hex[:8]}")
    broker = KafkaBroker(infra.kafka_bootstrap, security=infra.kafka_settings.kafka_security(None))
    publisher = broker.publisher(topic)
    events = [(uuid.uuid4(), f"k{n}".encode(), f'{{"n": {n}}}') for n in range(4)]
    async with service_pool(MIGRATIONS) as pool:
        await pool.execute(
            "INSERT INTO eligibility.outbox(event_id, key, payload) SELECT * FROM unnest($1::uuid[], $2::bytea[], "
            "$3::text[])",
            *map(list, zip(*events[:3], strict=True)),  # the fourth was never queued (or went already)
        )
        await broker.start()
        other = await pool.acquire()
        try:
            tx = other.transaction()
            await tx.start()  # another flush holds the second row
            await other.execute("SELECT 1 FROM eligibility.outbox WHERE event_id=$1 FOR UPDATE", events[1][0])
            assert await PgOutbox(pool, publisher).publish(events) == 2
            await tx.rollback()
            left = await pool.fetch(
                "SELECT event_id FROM eligibility.outbox WHERE event_id = ANY($1)", [e[0] for e in events]
            )
        finally:
            await pool.release(other)
            await broker.stop()
    assert [r["event_id"] for r in left] == [events[1][0]]
    assert [(r.key, r.value) for r in await read_topic(infra.kafka, topic)] == [
        (b"k0", b'{"n": 0}'),
        (b"k2", b'{"n": 2}'),
    ]
