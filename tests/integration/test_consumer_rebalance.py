"""A batch handled for longer than the poll interval takes its consumer out of its group. The batch's
commit is then refused. The consumer goes on, and the batch comes again: it is not left behind with a
dead consume task. At 1,000,000 pupils, eligibility's release of the May census inside one batch ran past
five minutes, and its pupil consumer stopped for good."""

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.kafka import KafkaBroker
from sais_shared import kafka, ops

from tests.helpers import create_topic

pytestmark = pytest.mark.integration

POLL_INTERVAL_MS = 3000  # short, so that the broker takes the held consumer out in seconds


async def _topics_of_members(admin: AIOKafkaAdminClient, group: str) -> list[bytes]:
    """What each member of the group subscribes to, as the broker has it (its metadata bytes)."""
    [described] = await admin.describe_consumer_groups([group])
    return [member[3] for member in described.groups[0][5]]


async def _until(condition, timeout_s: float = 60.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await condition():
            await asyncio.sleep(0.1)  # polling a condition the broker reports, not waiting for time to pass


async def test_a_batch_held_past_the_poll_interval_is_delivered_again_and_its_consumer_goes_on(infra, monkeypatch):
    tag = uuid.uuid4().hex[:8]
    topic = await create_topic(infra.kafka, f"t-slow-{tag}")
    other = await create_topic(infra.kafka, f"t-slow-other-{tag}")  # a second consumer in the group, as a service has
    dead_letters = await create_topic(infra.kafka, f"t-slow-dlq-{tag}")
    group = f"g-slow-{tag}"
    monkeypatch.setitem(kafka.CONSUMER_TUNING, "max_poll_interval_ms", POLL_INTERVAL_MS)
    refused = ops.COMMITS_REFUSED.labels(ops.service(), topic)
    refused_before = refused._value.get()

    batches: list[list[int]] = []
    held, release, all_again = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def handle(events: list[dict]) -> None:
        batches.append([e["n"] for e in events])
        if len(batches) == 1:
            held.set()
            await release.wait()  # held until the group has taken this consumer out
        elif sorted(n for b in batches[1:] for n in b) == list(range(5)):
            all_again.set()

    broker = KafkaBroker(infra.kafka_bootstrap, security=infra.kafka_settings.kafka_security(None))
    kafka.batch_consumer(
        broker,
        topic=topic,
        group_id=group,
        parse=json.loads,
        handle=handle,
        dead_letter_topic=dead_letters,
        payload=None,
        max_records=10,
    )
    kafka.batch_consumer(
        broker,
        topic=other,
        group_id=group,
        parse=json.loads,
        handle=handle,
        dead_letter_topic=dead_letters,
        payload=None,
    )
    producer = AIOKafkaProducer(**infra.kafka, enable_idempotence=True)
    await producer.start()
    try:
        for n in range(5):
            await producer.send_and_wait(topic, json.dumps({"n": n}).encode())
    finally:
        await producer.stop()

    admin = AIOKafkaAdminClient(**infra.kafka)
    await admin.start()
    await broker.start()
    try:
        await asyncio.wait_for(held.wait(), 60)

        async def taken_out() -> bool:
            members = await _topics_of_members(admin, group)
            return bool(members) and not any(topic.encode() in m for m in members)

        await _until(taken_out)  # the broker gave up on the held consumer; the group went on without it
        release.set()  # its commit is refused now
        await asyncio.wait_for(all_again.wait(), 60)  # and the batch came again, to the same consumer

        [subscriber] = [s for s in broker.subscribers if topic in s.topic_names]
        assert any(not t.done() for t in subscriber.tasks), "the consume task ended"
        assert refused._value.get() == refused_before + 1
        assert sorted(batches[0]) == list(range(5))
    finally:
        await broker.stop()
        await admin.close()
