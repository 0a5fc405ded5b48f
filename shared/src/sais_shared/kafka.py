"""Kafka plumbing shared by the services: broker factory, topic creation, batch publishing and
the at-least-once batch consumer with a dead-letter path.

Delivery semantics: producers are idempotent (acks=all); consumers never auto-commit — a batch's
offsets are committed only after its handler returned, i.e. after its effects are durable.
A handler that raises is treated as transient: the batch is rewound and redelivered after a
pause. A message that cannot be parsed is permanent: a :class:`DeadLetter` pointing at it is
published and the batch goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TypedDict, TypeVar

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.protocol.admin import CreateAclsRequest_v1, DeleteAclsRequest, DescribeAclsRequest
from aiokafka.protocol.api import Request
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import BaseModel, ValidationError

from . import kafka_access, ops
from .crypto import SealedValueError
from .errors import ConfigurationError, InvalidMessageError
from .events import DeadLetter, Event, stable_id
from .kafka_quotas import set_quotas
from .settings import CommonSettings
from .topics import Topics

log = structlog.get_logger("sais.kafka")
E = TypeVar("E", bound=Event)

TRANSIENT_RETRY_PAUSE_S = 2.0
JSON_HEADERS = [("content-type", b"application/json")]


class GroupBroker(KafkaBroker):
    """FastStream's Kafka broker, with its subscribers started together rather than one after another.

    aiokafka's consumer ``start`` returns only once the group has given it partitions. Started in turn,
    every consumer after the first makes the group rebalance again, and the members already in hear of it
    at their next heartbeat: a service whose consumers share one group (retention has five) took about
    13 s to be ready. Started together, they join in one rebalance."""

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(sub.start() for sub in self.subscribers))
        for pub in self.publishers:
            await pub.start()
        self.running = True


def make_broker(settings: CommonSettings, client_id: str, service: str) -> KafkaBroker:
    """A FastStream broker that logs in as ``service``'s own Kafka user."""
    return GroupBroker(
        settings.kafka_bootstrap,
        client_id=client_id,
        security=settings.kafka_security(service),
        allow_auto_create_topics=False,  # topics are the administrator's (`sais kafka setup`); check_topics
        enable_idempotence=True,
        acks="all",
        linger_ms=settings.kafka_linger_ms,
        max_batch_size=settings.kafka_max_batch_bytes,
        logger=structlog.get_logger(f"sais.{client_id}.faststream"),
        log_level=10,
    )


async def setup_kafka(
    settings: CommonSettings, prefix: str | None = None, publishers: Iterable[str] = kafka_access.PUBLISHERS
) -> dict[str, int]:
    """As Kafka's administrator: create the product's topics (idempotent) and keep each one's
    configuration (retention) as the product sets it, and, on a broker with authentication, make the
    ACLs exactly the table of :mod:`kafka_access`: the missing ones are created, extra allow-ACLs on the
    prefix's own topics and groups are removed, and broader ones that reach them (a wildcard, a shorter
    prefix) are refused and listed, because removing them could take rights from other applications.
    ``publishers``: the Kafka users of the upstream publishers (the registry's), each allowed to write the
    inbound topic under a produce quota; one that is no longer among them loses that right."""
    topics = Topics(prefix or settings.topic_prefix)
    admin = AIOKafkaAdminClient(**settings.kafka_login(None))
    await admin.start()
    try:
        created, altered = await _ensure_topics(admin, settings, topics)
        acls: list[kafka_access.Binding] = []
        removed: list[kafka_access.Grant] = []
        quotas = 0
        if settings.kafka_security_protocol != "PLAINTEXT":
            acls, removed = await _ensure_acls(admin, topics.prefix, publishers)
            quotas = await set_quotas(admin, kafka_access.quotas(settings.kafka_publisher_byte_rate, publishers))
        await _until_visible(admin, set(topics.all()), set(acls), set(removed))
        for g in removed:
            log.warning("kafka.acl_removed", acl=str(g))
        return {
            "topics_created": created,
            "topics_altered": altered,
            "acls": len(acls),
            "acls_removed": len(removed),
            "quotas": quotas,
        }
    finally:
        await admin.close()


async def _ensure_topics(admin: AIOKafkaAdminClient, settings: CommonSettings, topics: Topics) -> tuple[int, int]:
    """Every topic of the prefix there, with the configuration the product sets: (created, altered)."""
    existing = set(await admin.list_topics())
    wanted = {
        getattr(topics, attr): kafka_access.topic_config(attr, settings.topic_retention_days) for attr in topics.names()
    }
    new = [
        NewTopic(
            name=name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            topic_configs=config,
        )
        for name, config in wanted.items()
        if name not in existing
    ]
    if new:
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(new)
    return len(new), await _keep_topic_configs(admin, {n: c for n, c in wanted.items() if n in existing})


async def _ensure_acls(
    admin: AIOKafkaAdminClient, prefix: str, publishers: Iterable[str]
) -> tuple[list[kafka_access.Binding], list[kafka_access.Grant]]:
    """The ACLs on the prefix exactly the table's: (those in force, those removed). A broader ACL that
    reaches the prefix is refused by name, never removed (it may be another application's)."""
    ours, broader = kafka_access.review_acls(await _grants(admin), prefix, publishers)
    if broader:
        raise ConfigurationError(
            f"Kafka has {len(broader)} ACL(s) that are not the product's and reach its topics or consumer "
            f"groups under {prefix!r} as well as other names: "
            + "; ".join(map(str, broader))
            + ". Remove them (kafka-acls.sh --remove), or narrow them to the other names, then run again"
        )
    acls = kafka_access.bindings(prefix, publishers)
    await _create_acls(admin, acls)
    await _delete_acls(admin, ours)
    return acls, ours


async def _keep_topic_configs(admin: AIOKafkaAdminClient, wanted: dict[str, dict[str, str]]) -> int:
    """Alter the existing topics whose retention (or clean-up policy) is not the product's; keeps the
    other settings an administrator gave them (AlterConfigs replaces a topic's whole dynamic set)."""
    if not wanted:
        return 0
    described = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name) for name in wanted])
    changes = []
    for response in described:
        for code, message, _type, name, entries in response.resources:
            if code:
                raise ConfigurationError(f"Kafka refused to describe topic {name}: {message} (error {code})")
            current = {e[0]: e[1] for e in entries}
            if all(current.get(k) == v for k, v in wanted[name].items()):
                continue
            # v0 marks defaults; v1+ names the source (1: set on this topic)
            dynamic = {e[0]: e[1] for e in entries if (not e[3] if response.API_VERSION == 0 else e[3] == 1)}
            changes.append(ConfigResource(ConfigResourceType.TOPIC, name, {**dynamic, **wanted[name]}))
    if changes:
        for response in await admin.alter_configs(changes):
            failed = [(name, message) for code, message, _type, name in response.resources if code]
            if failed:
                raise ConfigurationError(f"Kafka refused to alter topic {failed[0][0]}: {failed[0][1]}")
        for c in changes:
            log.warning("kafka.topic_config_restored", topic=c.name, config=c.configs)
    return len(changes)


class _CreateAcls(Request[CreateAclsRequest_v1]):
    """CreateAcls with many bindings in one request (aiokafka ships the message, not yet a method;
    its own builder sends one binding per request). v1 carries the pattern type (PREFIXED)."""

    API_KEY = 30

    def __init__(self, bindings: Sequence[kafka_access.Binding]) -> None:
        self.bindings = bindings

    def build(self, request_struct_class: type[CreateAclsRequest_v1]) -> CreateAclsRequest_v1:
        allow, any_host = 3, "*"
        return request_struct_class(
            [
                (int(b.resource), b.name, int(b.pattern), b.principal, any_host, int(b.operation), allow)
                for b in self.bindings
            ]
        )


async def _create_acls(admin: AIOKafkaAdminClient, bindings: Sequence[kafka_access.Binding]) -> int:
    response = await admin._send_request(_CreateAcls(bindings))
    failed = [(b, err) for b, (code, err) in zip(bindings, response.creation_responses, strict=True) if code]
    if failed:
        raise ConfigurationError(f"Kafka refused {len(failed)} ACL(s), first: {failed[0][0]} ({failed[0][1]})")
    return len(bindings)


async def _grants(admin: AIOKafkaAdminClient) -> set[kafka_access.Grant]:
    """Every ACL the broker holds."""
    any_, match = 1, 2
    response = await admin._send_request(DescribeAclsRequest(any_, None, match, None, None, any_, any_))
    if response.error_code:
        raise ConfigurationError(f"Kafka refused to list its ACLs: {response.error_message}")
    return {
        kafka_access.Grant(principal, host, rtype, name, pattern, operation, permission)
        for rtype, name, pattern, acls in response.resources
        for principal, host, operation, permission in acls
    }


async def _delete_acls(admin: AIOKafkaAdminClient, grants: Sequence[kafka_access.Grant]) -> None:
    for g in grants:  # one exact filter each: nothing but that ACL matches it
        response = await admin._send_request(
            DeleteAclsRequest(g.resource, g.name, g.pattern, g.principal, g.host, g.operation, g.permission)
        )
        failed = [(code, message) for code, message, _matches in response.filter_responses if code]
        if failed:
            raise ConfigurationError(f"Kafka refused to remove the ACL {g}: {failed[0][1]}")


async def _until_visible(
    admin: AIOKafkaAdminClient,
    topics: set[str],
    acls: set[kafka_access.Binding],
    removed: frozenset[kafka_access.Grant] | set[kafka_access.Grant] = frozenset(),
    timeout_s: float = 30.0,
) -> None:
    """The controller has accepted the topics and ACLs; wait until the broker serves them (metadata
    propagates asynchronously), so that a service started next finds them, and no longer serves the
    ACLs removed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        missing_topics = topics - set(await admin.list_topics())
        missing_acls: set = set()
        left: set = set()
        if acls or removed:
            grants = await _grants(admin)
            held = {
                kafka_access.Binding(
                    g.principal,
                    kafka_access.Resource(g.resource),
                    g.name,
                    kafka_access.Pattern(g.pattern),
                    kafka_access.Operation(g.operation),
                )
                for g in grants
                if g.permission == 3
                and g.host == "*"
                and g.resource in (2, 3)
                and g.pattern in (3, 4)
                and g.operation in (3, 4, 8)
            }
            missing_acls, left = acls - held, set(removed) & grants
        if not missing_topics and not missing_acls and not left:
            return
        if loop.time() > deadline:
            raise ConfigurationError(
                f"Kafka has not applied {len(missing_topics)} topic(s), {len(missing_acls)} ACL(s) and "
                f"{len(left)} ACL removal(s) after {timeout_s:.0f} s"
            )
        await asyncio.sleep(0.1)  # polling the broker's own view: there is no event to wait on


async def check_topics(settings: CommonSettings, service: str, timeout_s: float = 10.0) -> None:
    """Refuse to start when a topic this service uses is missing (or not visible to its user): topics
    are created by the administrator (``sais kafka setup``), never by a service. Waits briefly, as a
    broker may still be applying a setup that has just run."""
    reads, writes = kafka_access.topics_of(service, settings.topic_prefix)
    admin = AIOKafkaAdminClient(**settings.kafka_login(service))
    await admin.start()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    try:
        while (missing := sorted(set(reads + writes) - set(await admin.list_topics()))) and loop.time() < deadline:
            await asyncio.sleep(0.5)
    finally:
        await admin.close()
    if missing:
        raise ConfigurationError(
            f"Kafka topic(s) missing or not allowed for {service}: {', '.join(missing)}; "
            "run `sais kafka setup` as the Kafka administrator"
        )


def aiokafka_producer(publisher: Any) -> AIOKafkaProducer | None:
    """The aiokafka producer behind a connected FastStream publisher, or None (FastStream's test
    broker). Events are serialised once by us; FastStream's per-message pipeline (codec, headers,
    middlewares) costs as much as the send itself. The publisher object still documents the channel."""
    try:
        producer = publisher._outer_config.producer._producer.producer
    except AttributeError:
        return None
    return producer if isinstance(producer, AIOKafkaProducer) else None


async def publish_many(
    publisher: Any, items: Iterable[tuple[bytes | None, BaseModel | bytes]], *, window: int = 5000
) -> int:
    """Publish without waiting per message, confirming every ``window`` messages; returns count.
    An item's value is an event, or its JSON already serialised."""
    raw = aiokafka_producer(publisher)
    pending: list[asyncio.Future] = []
    n = 0
    for key, event in items:
        value = event if isinstance(event, bytes) else event.model_dump_json().encode()
        if raw is not None:
            pending.append(await raw.send(publisher.topic, value, key=key, headers=JSON_HEADERS))
        else:
            pending.append(await publisher.publish(value, key=key, no_confirm=True))
        n += 1
        if len(pending) >= window:
            await asyncio.gather(*pending)
            pending.clear()
    if pending:
        await asyncio.gather(*pending)
    if n:
        ops.RECORDS_PUBLISHED.labels(ops.service(), getattr(publisher, "topic", None) or "?").inc(n)
    return n


def describe_validation_error(exc: ValidationError) -> str:
    """Where and what kind of error, by schema field names and pydantic's error types only: never its
    message, which can quote the offending value ("Input tag 'Ann Smith …' found"), nor a location
    that is a value (a dict key or a union tag taken from the input)."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False, include_context=False)[:5]:
        loc = ".".join(str(p) for p in err["loc"] if isinstance(p, int) or _FIELD_NAME.fullmatch(str(p)))
        parts.append(f"{loc or '<root>'}: {err['type']}")
    return "; ".join(parts)


_FIELD_NAME = re.compile(r"[a-z][a-z0-9_-]{0,63}")  # what a schema field (or a tag of ours) looks like


async def _no_decode(msg: Any) -> None:
    # We parse record values ourselves so that one bad record cannot fail its whole batch.
    return None


# Channel title → the payload model (or TypeAdapter) a subscriber parses itself; the AsyncAPI
# generator (sais_shared.asyncapi) writes these into the document, since FastStream cannot see them.
SUBSCRIBER_PAYLOADS: dict[str, Any] = {}


def dead_letter_publisher(broker: KafkaBroker, topic: str) -> Any:
    """One dead-letter publisher per broker and topic (kept on the broker itself)."""
    cache: dict[str, Any] = broker.__dict__.setdefault("_sais_dead_letter_publishers", {})
    if topic not in cache:
        cache[topic] = broker.publisher(
            topic,
            title=f"{topic}:publish",
            schema=DeadLetter,
            description="Messages no consumer can process, by position and reason; never a copy of the value",
        )
    return cache[topic]


# How a consumer takes part in its group, from the settings (consumer_tuning): SAIS_KAFKA_HEARTBEAT_INTERVAL_MS,
# SAIS_KAFKA_MAX_POLL_INTERVAL_MS, SAIS_KAFKA_FETCH_MAX_BYTES, SAIS_KAFKA_PARTITION_FETCH_BYTES and
# SAIS_KAFKA_FETCH_MAX_WAIT_MS.
class ConsumerTuning(TypedDict, total=False):
    heartbeat_interval_ms: int
    max_poll_interval_ms: int
    fetch_max_bytes: int
    max_partition_fetch_bytes: int
    fetch_max_wait_ms: int


def consumer_tuning(settings: Any) -> ConsumerTuning:
    """The consumer settings of ``settings`` (a CommonSettings), as aiokafka's consumer takes them."""
    return ConsumerTuning(
        heartbeat_interval_ms=settings.kafka_heartbeat_interval_ms,
        max_poll_interval_ms=settings.kafka_max_poll_interval_ms,
        fetch_max_bytes=settings.kafka_fetch_max_bytes,
        max_partition_fetch_bytes=settings.kafka_partition_fetch_bytes,
        fetch_max_wait_ms=settings.kafka_fetch_max_wait_ms,
    )


async def _parse_batch(
    records: Sequence[Any], parse: Callable[[bytes], E], dlq: Any, group_id: str
) -> list[tuple[Any, E]]:
    """(record, event) of each record that parses; one that does not is dead-lettered with why, never with
    its content."""
    parsed: list[tuple[Any, E]] = []
    for rec in records:
        try:
            parsed.append((rec, parse(rec.value)))
        except ValidationError as exc:
            await _dead_letter(dlq, group_id, rec, describe_validation_error(exc))
        except (InvalidMessageError, ValueError, TypeError) as exc:
            await _dead_letter(dlq, group_id, rec, f"{type(exc).__name__}: unparseable")
    return parsed


def _handling(topic: str, records: Sequence[Any], events: list[Any]) -> Any:
    """Every log line written while handling a batch carries where it came from (correlation ids)."""
    return structlog.contextvars.bound_contextvars(
        topic=topic,
        partitions=sorted({r.partition for r in records}),
        offsets=f"{min(r.offset for r in records)}-{max(r.offset for r in records)}",
        first_event_id=str(getattr(events[0], "event_id", "")) or None,
    )


class _FailureCount:
    """Handler failures in a row, by a batch's first position. Kept on success: a batch redelivered
    after a commit lost in a rebalance goes straight to one at a time. Bounded to the last 1,000."""

    def __init__(self) -> None:
        self._tries: dict[tuple[str, int, int], int] = {}

    def one_more(self, records: Sequence[Any]) -> int:
        position = min((r.topic, r.partition, r.offset) for r in records)
        tries = self._tries[position] = self._tries.pop(position, 0) + 1
        while len(self._tries) > 1000:
            del self._tries[next(iter(self._tries))]
        return tries


async def _pause_before_retry(logger: Any, topic: str, exc: Exception, records: int, attempt: int) -> None:
    ops.BATCH_RETRIES.labels(ops.service(), topic).inc()
    logger.warning(
        "batch.retry",
        error=type(exc).__name__,
        records=records,
        attempt=attempt,
        pause_s=TRANSIENT_RETRY_PAUSE_S,
    )
    await asyncio.sleep(TRANSIENT_RETRY_PAUSE_S)


def _batch_subscriber(
    broker: KafkaBroker,
    topic: str,
    group_id: str,
    max_records: int,
    tuning: ConsumerTuning,
    title: str,
    description: str | None,
) -> Any:
    """Batches, committed only when handled (read-committed: no record of an aborted transaction)."""
    return broker.subscriber(
        topic,
        group_id=group_id,
        batch=True,
        max_records=max_records,
        batch_timeout_ms=200,
        auto_offset_reset="earliest",
        ack_policy=AckPolicy.NACK_ON_ERROR,
        isolation_level="read_committed",
        decoder=_no_decode,
        **tuning,
        title=title,
        description=description,
    )


def batch_consumer(
    broker: KafkaBroker,
    *,
    topic: str,
    group_id: str,
    parse: Callable[[bytes], E],
    handle: Callable[[list[E]], Awaitable[None]],
    dead_letter_topic: str,
    payload: Any,
    max_records: int = 1000,
    tuning: ConsumerTuning | None = None,
    title: str | None = None,
    description: str | None = None,
) -> Any:
    """Register an at-least-once batch subscriber: parse → DLQ or handle → commit.

    ``payload`` (a pydantic model or TypeAdapter) is what ``parse`` accepts: it documents the channel.
    ``tuning`` (:func:`consumer_tuning`) is how the consumer takes part in its group; aiokafka's defaults
    without it."""
    dlq = dead_letter_publisher(broker, dead_letter_topic)
    failures = _FailureCount()
    SUBSCRIBER_PAYLOADS[title or f"{topic}:{group_id}"] = payload
    logger = log.bind(topic=topic, group_id=group_id)

    @_batch_subscriber(broker, topic, group_id, max_records, tuning or {}, title or f"{topic}:{group_id}", description)
    async def consume(message: KafkaMessage) -> None:
        records: Sequence[Any] = message.raw_message  # tuple of ConsumerRecord for a batch
        ops.RECORDS_CONSUMED.labels(ops.service(), topic).inc(len(records))
        _observe_lag(message, records)
        parsed = await _parse_batch(records, parse, dlq, group_id)
        events = [e for _, e in parsed]
        if not events:
            return
        try:
            with _handling(topic, records, events), ops.BATCH_SECONDS.labels(ops.service(), topic).time():
                await handle(events)
        except PERMANENT_ERRORS:
            # Bad data the database refuses (or the handler calls invalid): the same batch would fail
            # forever. Handle the records one at a time, so only the offending ones are dead-lettered.
            await _handle_one_by_one(parsed, handle, dlq, group_id)
        except Exception as exc:
            tries = failures.one_more(records)
            if isinstance(exc, INFRASTRUCTURE_ERRORS) or tries < HANDLER_ATTEMPTS:
                await _pause_before_retry(logger, topic, exc, len(records), tries)
                raise
            # The servers answer, yet the handler failed on this batch HANDLER_ATTEMPTS times: a record it
            # cannot process (a defect met by this data). One at a time, so only that record is set aside.
            await _handle_one_by_one(parsed, handle, dlq, group_id, also=Exception, attempts=tries)
        logger.debug("batch.done", records=len(records), events=len(events))

    return consume


# Errors that retrying cannot cure: the data is wrong, not the infrastructure.
PERMANENT_ERRORS = (asyncpg.DataError, InvalidMessageError, SealedValueError)
# Errors of a server that is down, busy or in the way: retried for as long as it takes, never dead-lettered.
INFRASTRUCTURE_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
    asyncpg.AdminShutdownError,
    KafkaError,
)
# Any other failure of a handler is retried this many times in a row, then its records are handled one at
# a time and the ones that still fail are dead-lettered (SaisDeadLetters alerts; the runbook says what next).
HANDLER_ATTEMPTS = 5


async def _handle_one_by_one(
    parsed: list[tuple[Any, Any]],
    handle: Callable,
    dlq: Any,
    group_id: str,
    also: type[BaseException] | tuple[type[BaseException], ...] = (),
    attempts: int = 1,
) -> None:
    for rec, event in parsed:
        try:
            await handle([event])
        except PERMANENT_ERRORS as exc:
            await _dead_letter(
                dlq,
                group_id,
                rec,
                f"{type(exc).__name__}: refused as data ({getattr(exc, 'sqlstate', None) or 'invalid'})",
            )
        except INFRASTRUCTURE_ERRORS:
            raise  # a server went away meanwhile: the batch is retried, and what was done stays done
        except also as exc:
            await _dead_letter(
                dlq, group_id, rec, f"{type(exc).__name__}: its handler failed {attempts} times in a row (a defect?)"
            )


def _observe_lag(message: Any, records: Sequence[Any]) -> None:
    consumer = getattr(message, "consumer", None)
    if consumer is None or not hasattr(consumer, "highwater"):
        return
    last: dict[tuple[str, int], int] = {}
    for r in records:
        last[(r.topic, r.partition)] = max(last.get((r.topic, r.partition), -1), r.offset)
    for (t, p), off in last.items():
        try:
            hw = consumer.highwater(TopicPartition(t, p))
        except (AssertionError, KeyError, TypeError):
            continue
        if hw is not None:
            ops.CONSUMER_LAG.labels(ops.service(), t, str(p)).set(max(hw - off - 1, 0))


async def _dead_letter(dlq: Any, group_id: str, rec: Any, reason: str) -> None:
    value = rec.value or b""
    event = DeadLetter(
        event_id=stable_id("dlq", group_id, rec.topic, rec.partition, rec.offset),
        occurred_at=datetime.now(UTC),
        consumer_group=group_id,
        original_topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        value_sha256=hashlib.sha256(value).hexdigest(),
        reason=reason[:500],
    )
    await dlq.publish(event, key=rec.key)
    ops.DEAD_LETTERS.labels(ops.service(), rec.topic).inc()
    log.warning(
        "message.dead_lettered",
        topic=rec.topic,
        partition=rec.partition,
        offset=rec.offset,
        group_id=group_id,
        reason=reason[:200],
    )


async def claim_new(conn: Any, table: str, event_ids: Iterable[Any]) -> set[Any]:
    """Record event ids as processed inside the caller's transaction; returns the ones not seen before."""
    rows = await conn.fetch(
        f"INSERT INTO {table}(event_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id",
        list(event_ids),
    )
    return {r["event_id"] for r in rows}


async def read_topic_events(
    settings: CommonSettings, topic: str, parse: Callable[[bytes], E], timeout_s: float = 30.0
) -> list[E]:
    """Every event now on ``topic`` that ``parse`` accepts, in offset order per partition (as the Kafka
    administrator: for operators' reports, never for a service's own processing)."""
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        **settings.kafka_login(None), enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        partitions = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[E] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"reading {topic} took longer than {timeout_s:.0f} s")
            for recs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                for r in recs:
                    try:
                        found.append(parse(r.value))
                    except (ValidationError, ValueError):
                        continue  # not one of ours: say nothing about a stranger
        return found
    finally:
        await consumer.stop()


async def read_dead_letters(settings: CommonSettings, timeout_s: float = 30.0) -> list[DeadLetter]:
    """Every dead letter still on the topic, oldest first (as the Kafka administrator). Each names the
    original message by topic, partition and offset, with the reason; none holds the message itself."""
    letters = await read_topic_events(
        settings, Topics(settings.topic_prefix).dead_letter, DeadLetter.model_validate_json, timeout_s
    )
    # A batch redelivered after a lost commit sets the same message aside again, under the same id.
    once = {d.event_id: d for d in reversed(letters)}
    return sorted(once.values(), key=lambda d: d.occurred_at)
