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
