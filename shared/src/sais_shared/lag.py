"""Consumer lag as Prometheus users expect it: the log-end offset minus the group's committed offset,
per group, topic and partition, sampled on a timer, whatever the consumer is doing. A consumer that
stops (stuck in a handler, paused, rebalancing for ever) shows lag that grows; the processing-time
gauge (``sais_consumer_lag``) only moves while records are processed.

Each service samples its own group with its own Kafka user (its ACLs allow describing its topics and
its group); ``sais kafka lag`` samples every group with the administrator's.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from . import ops


async def group_lag(login: dict[str, Any], group: str, topics: Iterable[str]) -> dict[tuple[str, int], int]:
    """(topic, partition) → records the group has not committed past. A partition the group never
    committed counts from the log start (the groups start from the earliest offset). One sample, on
    clients connected for it and closed after it."""
    sampler = LagSampler(login, group, list(topics), every_s=0)
    try:
        return await sampler.lag()
    finally:
        await sampler.close()


async def _lag(admin: AIOKafkaAdminClient, consumer: AIOKafkaConsumer, group: str, topics: list[str]):
    described = await admin.describe_topics(topics)
    parts = [
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if not t.get("error_code")
        for p in t["partitions"]
    ]
    if not parts:
        return {}
    committed = await admin.list_consumer_group_offsets(group)
    end = await consumer.end_offsets(parts)
    start = await consumer.beginning_offsets(parts)
    out = {}
    for tp in parts:
        c = committed.get(tp)
        at = c.offset if c is not None and c.offset >= 0 else start[tp]
        out[(tp.topic, tp.partition)] = max(end[tp] - max(at, start[tp]), 0)
    return out


class LagSampler:
    """Sets ``sais_consumer_group_lag`` for one group's topics (each call one sample; the service's
    state timer calls it every SAIS_METRICS_INTERVAL_S). Its two clients stay connected between samples:
    a new pair each time was a TLS handshake and a SCRAM login on the broker, twice, every interval, for
    each service. A sample that fails closes them, and the next one connects again."""

    def __init__(self, login: dict[str, Any], group: str, topics: list[str], every_s: float) -> None:
        self.login, self.group, self.topics, self.every_s = login, group, topics, every_s
        self._clients: tuple[AIOKafkaAdminClient, AIOKafkaConsumer] | None = None

    async def sample(self) -> dict[tuple[str, int], int]:
        """The group's lag, set on the gauge."""
        lag = await self.lag()
        for (topic, partition), n in lag.items():
            ops.GROUP_LAG.labels(self.group, topic, str(partition)).set(n)
        return lag

    async def lag(self) -> dict[tuple[str, int], int]:
        """The group's lag, on the kept clients (connected first if they are not)."""
        try:
            admin, consumer = self._clients or await self._connect()
            return await _lag(admin, consumer, self.group, self.topics)
        except BaseException:
            await self.close()
            raise

    async def _connect(self) -> tuple[AIOKafkaAdminClient, AIOKafkaConsumer]:
        admin = AIOKafkaAdminClient(**self.login)
        consumer = AIOKafkaConsumer(**self.login, enable_auto_commit=False)
        self._clients = (admin, consumer)  # before starting: close() stops what did start
        await admin.start()
        await consumer.start()
        return self._clients

    async def close(self) -> None:
        clients, self._clients = self._clients, None
        if clients is not None:
            admin, consumer = clients
            with contextlib.suppress(Exception):
                await consumer.stop()
            with contextlib.suppress(Exception):
                await admin.close()
