"""Benchmark: Kafka clients and their settings, side by side on the same broker, in the same run.

    uv run --group bench python bench/kafka_clients.py [--messages 262380] [--size 1000]

Issue 28 asks whether FastStream's confluent-kafka broker (librdkafka) would carry the pipeline's events
for less than its aiokafka broker, and what linger and batch sizes are worth. Each case produces
``--messages`` keyed values of ``--size`` bytes to a fresh topic (3 partitions, as the product's) as the
administrator, over the local stack's TLS + SCRAM listener, idempotent with acks=all as the services
produce, then consumes them all in a fresh group, read-committed, in batches of 1,000 as the services
consume. It prints, per case, seconds and messages per second for each half, and the CPU seconds of the
client process (every thread: librdkafka's too) and of the broker.

The cases: the raw clients the services use (aiokafka's producer; a consumer taking batches with
``getmany``) at linger 5, 20 and 50 ms; confluent-kafka's ``Producer`` and ``Consumer``
(librdkafka, its own threads) at linger 5 ms; and FastStream's two brokers end to end: its
``faststream.kafka`` broker (aiokafka, what the services run) and its ``faststream.confluent`` broker,
publishing each message and consuming through a batch subscriber. confluent-kafka is in the ``bench``
dependency group only (``make install`` does not install it); without it the librdkafka cases are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "deploy" / "local")]
import stack
from pipeline import raw_consumer, server_pids, tree_cpu_s

BATCH = 1000  # records a service's consumer takes at once (SAIS_KAFKA_BATCH_RECORDS)
WINDOW = 5000  # sends in flight before the producer waits for them (sais_shared.kafka.publish_many)


def self_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def confluent_config(env: dict[str, str]) -> dict[str, str]:
    """librdkafka's settings for the same login as the administrator's aiokafka one."""
    settings = stack.kafka_admin_settings(env)
    login = settings.kafka_login(None)
    conf = {"bootstrap.servers": settings.kafka_bootstrap}
    if "sasl_plain_username" in login:
        conf |= {
            "security.protocol": "sasl_ssl",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": login["sasl_plain_username"],
            "sasl.password": login["sasl_plain_password"],
        }
        if settings.kafka_ca_file:
            conf["ssl.ca.location"] = str(settings.kafka_ca_file)
    return conf


# --- the cases: each (produce, consume) of n values on a topic ---------------------------------------


async def aiokafka_case(env, topic: str, n: int, value: bytes, linger_ms: int) -> tuple[float, float]:
    from aiokafka import AIOKafkaProducer

    login = stack.kafka_client(env)
    producer = AIOKafkaProducer(
        **login, enable_idempotence=True, acks="all", linger_ms=linger_ms, max_batch_size=256 * 1024
    )
    await producer.start()
    t0 = time.perf_counter()
    try:
        pending = []
        for i in range(n):
            pending.append(await producer.send(topic, value, key=str(i % 997).encode()))
            if len(pending) >= WINDOW:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    t1 = time.perf_counter()
    consumer = raw_consumer(topic, login)
    await consumer.start()
    try:
        seen = 0
        while seen < n:
            got = await consumer.getmany(timeout_ms=500, max_records=BATCH)
            if got:
                seen += sum(len(rs) for rs in got.values())
                await consumer.commit()
    finally:
        await consumer.stop()
    return t1 - t0, time.perf_counter() - t1


def confluent_case(env, topic: str, n: int, value: bytes, linger_ms: int) -> tuple[float, float]:
    from confluent_kafka import Consumer, KafkaException, Producer

    conf = confluent_config(env)
    errors: list[str] = []

    def delivered(err, _msg) -> None:
        if err is not None:
            errors.append(str(err))

    producer = Producer(
        {**conf, "enable.idempotence": True, "acks": "all", "linger.ms": linger_ms, "batch.size": 256 * 1024}
    )
    t0 = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, value, key=str(i % 997).encode(), on_delivery=delivered)
                break
            except BufferError:  # its local queue is full: serve delivery reports, then go on
                producer.poll(0.05)
        producer.poll(0)
    if producer.flush(60) or errors:
        raise SystemExit(f"confluent-kafka did not deliver every message: {errors[:3]}")
    t1 = time.perf_counter()
    consumer = Consumer(
        {
            **conf,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    consumer.subscribe([topic])
    try:
        seen = 0
        while seen < n:
            msgs = consumer.consume(num_messages=BATCH, timeout=0.5)
            for m in msgs:
                if m.error():
                    raise KafkaException(m.error())
            if msgs:
                seen += len(msgs)
                consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    return t1 - t0, time.perf_counter() - t1


async def faststream_case(env, topic: str, n: int, value: bytes, flavour: str) -> tuple[float, float]:
    """FastStream end to end: publish every message through a publisher, consume through a batch
    subscriber (as sais_shared.kafka.batch_consumer does), in FastStream's aiokafka or confluent broker."""
    settings = stack.kafka_admin_settings(env)
    if flavour == "aiokafka":
        from faststream.kafka import KafkaBroker

        broker = KafkaBroker(
            settings.kafka_bootstrap,
            security=settings.kafka_security(None),
            enable_idempotence=True,
            acks="all",
            linger_ms=5,
            logger=None,  # (its access log at INFO is a line per batch)
        )
    else:  # librdkafka takes its login as settings (it cannot use an SSLContext)
        from faststream.confluent import KafkaBroker  # type: ignore[no-redef]

        conf = confluent_config(env)
        broker = KafkaBroker(  # type: ignore[call-arg]
            conf.pop("bootstrap.servers"), enable_idempotence=True, acks="all", linger_ms=5, config=conf, logger=None
        )
    done = asyncio.Event()
    seen = 0

    @broker.subscriber(
        topic,
        group_id=f"g-{topic}",
        batch=True,
        max_records=BATCH,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    async def take(msgs: list[bytes]) -> None:
        nonlocal seen
        seen += len(msgs)
        if seen >= n:
            done.set()

    publisher = broker.publisher(topic)
    await broker.connect()
    t0 = time.perf_counter()
    pending = []
    for i in range(n):
        pending.append(await publisher.publish(value, key=str(i % 997).encode(), no_confirm=True))
        if len(pending) >= WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    await asyncio.gather(*pending)
    t1 = time.perf_counter()
    await broker.start()
    try:
        await asyncio.wait_for(done.wait(), timeout=600)
    finally:
        await broker.stop()
    return t1 - t0, time.perf_counter() - t1


CASES = {
    "aiokafka, linger 5 ms": ("aiokafka", 5),
    "aiokafka, linger 20 ms (the services' default)": ("aiokafka", 20),
    "aiokafka, linger 50 ms": ("aiokafka", 50),
    "confluent-kafka (librdkafka), linger 5 ms": ("confluent", 5),
    "FastStream aiokafka broker (publisher + batch subscriber)": ("fs-aiokafka", 5),
    "FastStream confluent broker (publisher + batch subscriber)": ("fs-confluent", 5),
}


def has_confluent() -> bool:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        return False
    return True


async def run_case(env, kind: str, linger: int, topic: str, n: int, value: bytes) -> tuple[float, float]:
    if kind == "aiokafka":
        return await aiokafka_case(env, topic, n, value, linger)
    if kind == "confluent":
        return await asyncio.to_thread(confluent_case, env, topic, n, value, linger)
    return await faststream_case(env, topic, n, value, kind.removeprefix("fs-"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=262_380, help="values per case (default: the 100k bench's rows)")
    ap.add_argument("--size", type=int, default=1000, help="bytes per value (default 1,000)")
    a = ap.parse_args()
    lay = stack.layout()
    started = stack.status(lay) != 0
    stack.start(lay)
    env = {**os.environ, **lay.env()}
    value = b"x" * a.size
    confluent = has_confluent()
    if confluent:
        import confluent_kafka

        print(f"confluent-kafka {confluent_kafka.__version__}, librdkafka {confluent_kafka.libversion()[0]}")
    else:
        print("confluent-kafka is not installed (uv run --group bench …): its cases are skipped")
    results = []
    try:
        broker_pid = server_pids(lay)["broker"]
        for label, (kind, linger) in CASES.items():
            if "confluent" in kind and not confluent:
                continue
            topic = f"bench-clients-{uuid.uuid4().hex[:8]}"
            asyncio.run(stack.create_topics(env, topic))
            cpu0, broker0 = self_cpu_s(), tree_cpu_s(broker_pid)
            produce_s, consume_s = asyncio.run(run_case(env, kind, linger, topic, a.messages, value))
            cpu, broker = self_cpu_s() - cpu0, tree_cpu_s(broker_pid) - broker0
            results.append((label, produce_s, consume_s, cpu, broker))
            print(f"  {label:60} done", flush=True)
    finally:
        if started:
            stack.stop(lay)
    n = a.messages
    print(f"\n== {n:,} messages of {a.size:,} bytes per case ==")
    print(f"{'case':60} {'produce':>16} {'consume':>16} {'client CPU':>16} {'broker CPU':>16}")
    for label, p, c, cpu, broker in results:
        print(
            f"{label:60} {p:6.1f} s {n / p:7,.0f}/s {c:6.1f} s {n / c:7,.0f}/s "
            f"{cpu:5.1f} s {cpu / n * 1e6:4.0f} µs {broker:5.1f} s {broker / n * 1e6:4.0f} µs"
        )


if __name__ == "__main__":
    main()
