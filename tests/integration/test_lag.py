"""Lag from committed offsets against the log end, on the real broker: what a group has not committed
past, per partition; a stopped consumer's lag grows as records keep arriving."""

import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sais_shared.lag import group_lag

from tests.helpers import create_topic

pytestmark = pytest.mark.integration


async def produce(kafka: dict, topic: str, n: int, partition: int = 0) -> None:
    p = AIOKafkaProducer(**kafka)
    await p.start()
    try:
        for i in range(n):
            await p.send_and_wait(topic, f"m{i}".encode(), partition=partition)
    finally:
        await p.stop()


async def test_a_stopped_consumer_shows_growing_lag_per_partition(infra):
    topic = await create_topic(infra.kafka, f"lag-{uuid.uuid4().hex[:10]}", partitions=2)
    group = f"lag-{uuid.uuid4().hex[:10]}"
    await produce(infra.kafka, topic, 10, partition=0)
    await produce(infra.kafka, topic, 3, partition=1)

    # the group reads four records of partition 0, commits, and stops
    c = AIOKafkaConsumer(**infra.kafka, group_id=group, enable_auto_commit=False, auto_offset_reset="earliest")
    await c.start()
    try:
        tp0 = TopicPartition(topic, 0)
        c.assign([tp0])
        got = await c.getmany(tp0, timeout_ms=10_000, max_records=4)
        assert len(got[tp0]) == 4
        await c.commit({tp0: 4})
    finally:
        await c.stop()

    assert await group_lag(infra.kafka, group, [topic]) == {(topic, 0): 6, (topic, 1): 3}  # never committed: from 0
    await produce(infra.kafka, topic, 5, partition=0)  # records keep arriving; nobody consumes
    assert await group_lag(infra.kafka, group, [topic]) == {(topic, 0): 11, (topic, 1): 3}
    assert await group_lag(infra.kafka, f"never-{group}", [topic]) == {(topic, 0): 15, (topic, 1): 3}


async def test_the_services_sampler_keeps_its_clients_and_sees_every_new_offset(infra):
    """The gauge's sampler connects once, not at every interval, and a sample made on the kept clients
    still sees records and commits that came since; closed, it connects again at its next sample."""
    from sais_shared.lag import LagSampler

    topic = await create_topic(infra.kafka, f"lag-{uuid.uuid4().hex[:10]}", partitions=2)
    group = f"lag-{uuid.uuid4().hex[:10]}"
    sampler = LagSampler(infra.kafka, group, [topic], every_s=1)
    try:
        assert await sampler.sample() == {(topic, 0): 0, (topic, 1): 0}
        clients = sampler._clients
        await produce(infra.kafka, topic, 7, partition=1)
        assert await sampler.sample() == {(topic, 0): 0, (topic, 1): 7}
        c = AIOKafkaConsumer(**infra.kafka, group_id=group, enable_auto_commit=False)
        await c.start()
        try:
            c.assign([TopicPartition(topic, 1)])
            await c.commit({TopicPartition(topic, 1): 5})
        finally:
            await c.stop()
        assert await sampler.sample() == {(topic, 0): 0, (topic, 1): 2}
        assert sampler._clients is clients  # the same two connected clients all along
        await sampler.close()
        assert sampler._clients is None
        assert await sampler.sample() == {(topic, 0): 0, (topic, 1): 2}
    finally:
        await sampler.close()


async def test_kafka_lag_wait_is_not_settled_while_an_extract_waits_for_release_or_an_outbox_holds_events(env):
    """Every group at lag 0 is not yet settled: eligibility releases a complete extract after its consumer
    has committed the last record, and an outbox's events are not yet on a topic. `sais kafka lag --wait`
    waits for both, and returns as soon as they are done."""
    import asyncio
    import subprocess

    import asyncpg

    from tests.e2e.test_pipeline import SAIS

    extract, event = uuid.uuid4(), uuid.uuid4()
    conn = await asyncpg.connect(env["SAIS_DATABASE_URL"])
    try:  # all of its (no) records recorded, not yet released; and one event delivery has not yet published
        await conn.execute(
            "INSERT INTO eligibility.extracts (extract_id, source, reference_date, academic_year, accepted, key_id, "
            "completed_at, status) VALUES ($1, 'summer-census', '2017-05-18', '2017/18', 0, $2, now(), 'completed')",
            extract,
            uuid.uuid4(),
        )
        await conn.execute("INSERT INTO delivery.outbox (event_id, key, payload) VALUES ($1, 'k', '{}')", event)

        def lag(wait: str) -> subprocess.Popen:
            return subprocess.Popen(
                [SAIS, "kafka", "lag", "--wait", wait],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )

        held = lag("1")
        out, err = await asyncio.to_thread(held.communicate, timeout=120)
        assert held.returncode == 5, (out, err)
        assert "0 records behind" in " ".join(out.split()), out  # the groups had caught up
        said = " ".join(err.split())
        assert "not settled after 1 s" in said and "eligibility extracts to release: 1" in said, said
        assert "delivery outbox: 1" in said, said

        waiting = lag("120")  # released and published while it waits: it returns then, settled
        await conn.execute(
            "UPDATE eligibility.extracts SET released_at=now(), reconciled_at=now() WHERE extract_id=$1", extract
        )
        await conn.execute("DELETE FROM delivery.outbox WHERE event_id=$1", event)
        out, err = await asyncio.to_thread(waiting.communicate, timeout=180)
        assert waiting.returncode == 0, (out, err)
    finally:
        await conn.close()
