"""One composition shape for every service. A service declares a :class:`Wiring` (its name, its
schemas, the publishers it declares on a broker, and ``bootstrap()``: how its use-case object is
built from a runtime and those publishers), and gets from here:

- :func:`service_app`: the long-running FastStream app (consumers, lifespan, health, timers, workers);
- :func:`session`: the same service for a CLI command or a test, broker started and stopped.

Both open the runtime as the service's own database role, check its Kafka topics and build the
service the same way, so a command and the running service never differ in how they are assembled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Generic, TypeVar

import structlog
from faststream.kafka import KafkaBroker
from pydantic import TypeAdapter

from . import kafka, ops
from .deletion import DeleteRows, register_deletion_consumer
from .kafka import check_topics, make_broker
from .logging import configure_logging
from .ops import TIMER_RUNS, make_app
from .runtime import Runtime, open_runtime
from .settings import CommonSettings
from .topics import Topics

P = TypeVar("P")  # the service's publishers
S = TypeVar("S")  # the service's use-case object
Settings = TypeVar("Settings", bound=CommonSettings)

log = structlog.get_logger("sais.bootstrap")


@dataclass(frozen=True)
class Consume(Generic[S]):
    """One consumer of a service, as data: the topic it reads (an attribute of :class:`Topics`, or a function
    of them), the payload it accepts (a pydantic model, or a TypeAdapter of a union: what the AsyncAPI document
    shows), and the use case that takes each batch: the name of the service's method, looked up on each batch
    (so a test may replace it), or ``handle(service, events)``. :func:`service_app` registers it, in the
    service's own consumer group."""

    topic: str | Callable[[Topics], str]
    payload: Any
    handle: str | Callable[[S, list[Any]], Awaitable[Any]]
    description: str
    max_records: int | None = None  # the most records in one batch (None: SAIS_KAFKA_BATCH_RECORDS)

    def topic_of(self, topics: Topics) -> str:
        return getattr(topics, self.topic) if isinstance(self.topic, str) else self.topic(topics)

    def parse(self, data: bytes) -> Any:
        if isinstance(self.payload, TypeAdapter):
            return self.payload.validate_json(data)
        return self.payload.model_validate_json(data)


@dataclass(frozen=True)
class Wiring(Generic[P, S]):
    service: str  # ingest | eligibility | delivery | retention: its role, Kafka user, topics
    migrations: tuple[tuple[str, str], ...]  # (schema, package) it needs migrated
    declare: Callable[[KafkaBroker, Topics], P]  # its publishers, declared on a broker before it starts
    bootstrap: Callable[[Runtime, P, Any], S]  # its use-case object from runtime, publishers, settings
    holds_kek: bool = True  # whether it opens data keys (retention only destroys them: it never holds the KEK)
    consumers: tuple[Consume[S], ...] = ()  # what the long-running service consumes
    deletes: DeleteRows | None = None  # an owner of personal data: how it deletes a transfer's rows on request


def register_consumers(
    wiring: Wiring[P, S], broker: KafkaBroker, topics: Topics, settings: CommonSettings, current: Current[P, S]
) -> None:
    """Every consumer of the wiring, and (for an owner of personal data) retention's deletion requests."""
    group = settings.group_id_of(wiring.service)
    tuning = kafka.consumer_tuning(settings)
    for c in wiring.consumers:
        topic = c.topic_of(topics)
        kafka.batch_consumer(
            broker,
            topic=topic,
            group_id=group,
            parse=c.parse,
            payload=c.payload,
            handle=partial(_handle, current, c.handle),
            dead_letter_topic=topics.dead_letter,
            max_records=c.max_records or settings.kafka_batch_records,
            tuning=tuning,
            title=f"{topic}:{wiring.service}",
            description=c.description,
        )
    if wiring.deletes is not None:
        register_deletion_consumer(
            broker,
            topics=topics,
            group_id=group,
            service=wiring.service,
            schema=wiring.service,
            delete=wiring.deletes,
            pool=lambda: current().runtime.pool,
            now=lambda: current().runtime.clock.now(),
            tuning=tuning,
        )


async def _handle(
    current: Current[P, S], handle: str | Callable[[S, list[Any]], Awaitable[Any]], events: list[Any]
) -> None:
    if isinstance(handle, str):
        await getattr(current.service, handle)(events)
    else:
        await handle(current.service, events)


@dataclass
class Running(Generic[P, S]):
    settings: Any
    broker: KafkaBroker
    publishers: P
    runtime: Runtime
    service: S


async def start(wiring: Wiring[P, S], settings: CommonSettings, broker: KafkaBroker, publishers: P) -> Running[P, S]:
    """Open the runtime as the service's own role, check its topics, build the service."""
    rt = await open_runtime(settings, *wiring.migrations, service=wiring.service, holds_kek=wiring.holds_kek)
    try:
        await check_topics(settings, wiring.service)
        return Running(settings, broker, publishers, rt, wiring.bootstrap(rt, publishers, settings))
    except BaseException:
        await rt.close()
        raise


# Errors that mean a server is away (refused, reset, timed out, not yet accepting logins), not that
# the service is misconfigured: a long-running service waits for its servers instead of exiting.
def _server_away(exc: BaseException) -> bool:
    import ssl

    import asyncpg
    from aiokafka import errors as kafka

    if isinstance(exc, ssl.SSLError):  # a certificate refused: configuration, not a server away
        return False
    away = (
        OSError,
        asyncio.TimeoutError,
        kafka.KafkaConnectionError,
        kafka.KafkaTimeoutError,
        kafka.NodeNotReadyError,
        kafka.RequestTimedOutError,
        asyncpg.CannotConnectNowError,
        asyncpg.PostgresConnectionError,
        asyncpg.TooManyConnectionsError,
    )
    return isinstance(exc, away)


async def start_when_servers_answer(
    wiring: Wiring[P, S], settings: CommonSettings, broker: KafkaBroker, publishers: P
) -> Running[P, S]:
    """:func:`start`, retried with backoff (0.5 s doubling to 15 s) while Kafka or PostgreSQL is away:
    a service started before its servers, or restarted while one is down, comes up by itself once
    they answer (SAIS_STARTUP_TIMEOUT_S bounds the wait; 0, the default, waits for as long as it takes)."""
    loop = asyncio.get_running_loop()
    limit = settings.startup_timeout_s
    deadline = loop.time() + limit if limit > 0 else None
    delay, attempt = 0.5, 0
    while True:
        attempt += 1
        try:
            return await start(wiring, settings, broker, publishers)
        except Exception as exc:
            if not _server_away(exc) or (deadline is not None and loop.time() + delay > deadline):
                raise
            log.warning(
                "startup.waiting_for_servers",
                service=wiring.service,
                error=type(exc).__name__,
                attempt=attempt,
                retry_in_s=delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 15.0)


class Liveness:
    """What /healthz answers: alive while starting (up to SAIS_STARTUP_GRACE_S after the servers first
    answered), then only while every consumer of the broker has its consume task running and every
    timer or worker of the service is still running. A dead consumer or task is a process to restart, which a
    readiness probe alone never asks for."""

    def __init__(self, broker: KafkaBroker, tasks: list[asyncio.Task], grace_s: float) -> None:
        self.broker, self.tasks, self.grace_s = broker, tasks, grace_s
        self.servers_answered_at: float | None = None
        self.up = False

    def problem(self) -> str | None:
        if not self.up:
            since = self.servers_answered_at
            if since is not None and time.monotonic() - since > self.grace_s:
                return f"consumers not started {self.grace_s:.0f} s after the servers answered"
            return None
        for i, sub in enumerate(self.broker.subscribers):
            if not getattr(sub, "calls", None):
                continue
            tasks = getattr(sub, "tasks", [])
            if getattr(sub, "consumer", None) is None or not any(not t.done() for t in tasks):
                return f"consumer {i} ({', '.join(getattr(sub, 'topics', ()) or ())}) is not running"
        if any(t.done() for t in self.tasks):
            return "a timer or worker of the service has stopped"
        return None


def _stop_this_process(service: str, event: str, problem: str) -> None:
    """SIGTERM to this service's own process (only when it runs under ``ops.serve``, never a test's
    process): uvicorn shuts down as on any stop or, if that hangs on the client that died, the process
    exits with 70 after 30 s; an orchestrator that restarts exited processes starts it again."""
    log.error(event, service=service, problem=problem)
    if not ops.serving():
        return
    threading.Timer(30.0, os._exit, args=(70,)).start()
    os.kill(os.getpid(), signal.SIGTERM)


async def _exit_when_unhealthy(liveness: Liveness, service: str, after_s: float) -> None:
    """Stop the process once /healthz has failed for ``after_s`` (SAIS_EXIT_WHEN_UNHEALTHY_S), for an
    orchestrator that restarts what exits but not what is unhealthy (compose's ``restart:``)."""
    failing_since: float | None = None
    while True:
        await asyncio.sleep(min(5.0, max(after_s / 4, 0.2)))
        problem = liveness.problem()
        if problem is None:
            failing_since = None
            continue
        failing_since = failing_since or time.monotonic()
        if time.monotonic() - failing_since >= after_s:
            _stop_this_process(service, "liveness.lost_stopping", problem)
            return


@asynccontextmanager
async def session(
    wiring: Wiring[P, S], settings: CommonSettings, client_id: str | None = None
) -> AsyncIterator[Running[P, S]]:
    """The service for one command: ``async with session(WIRING, settings) as s: s.service…``."""
    broker = make_broker(settings, client_id or f"sais-{wiring.service}-cli", wiring.service)
    running = await start(wiring, settings, broker, wiring.declare(broker, Topics(settings.topic_prefix)))
    try:
        await broker.start()
        yield running
    finally:
        await broker.stop()
        await running.runtime.close()


class Current(Generic[P, S]):
    """The running service, for consumers registered before it exists."""

    def __init__(self) -> None:
        self.running: Running[P, S] | None = None

    def __call__(self) -> Running[P, S]:
        if self.running is None:
            raise RuntimeError("service not started")
        return self.running

    @property
    def service(self) -> S:
        return self().service


def service_app(
    wiring: Wiring[P, S],
    settings: Settings,
    *,
    description: str,
    after_start: Callable[[Running[P, S]], Awaitable[Any]] | None = None,
    timer: tuple[Callable[[Running[P, S]], Awaitable[Any]], float] | None = None,
    worker: Callable[[Running[P, S]], Coroutine[Any, Any, Any]] | None = None,
    check: Callable[[Settings], None] | None = None,
    gauges: Callable[[Running[P, S]], Awaitable[Any]] | None = None,
    prime: Callable[[Running[P, S]], dict[str, list[tuple[str, ...]]]] | None = None,
):
    """The long-running service: the wiring's consumers are registered (they reach the service once it has
    started); ``after_start`` runs once it is up (outbox flush); ``timer`` is (tick, seconds), a
    loop that survives a failing tick; ``worker`` runs beside the consumers for the service's life (work
    too long for a consumer's batch), and /healthz fails if it ever returns; ``check`` refuses a bad configuration before anything connects."""
    configure_logging(settings.log_level, settings.log_format)
    broker = make_broker(settings, f"sais-{wiring.service}", wiring.service)
    topics = Topics(settings.topic_prefix)
    publishers = wiring.declare(broker, topics)
    current: Current[P, S] = Current()
    register_consumers(wiring, broker, topics, settings, current)
    tasks: list[asyncio.Task] = []
    liveness = Liveness(broker, tasks, settings.startup_grace_s)

    lifespan = partial(_lifespan, wiring, settings, broker, publishers, current, liveness, tasks, check)

    async def ready() -> bool:  # PostgreSQL answers through the service's own pool
        return current.running is not None and await current.running.runtime.pool.fetchval("SELECT 1") == 1

    app = make_app(
        broker,
        title=f"sais-{wiring.service}",
        description=description,
        lifespan=lifespan,
        ready=ready,
        alive=liveness.problem,
    )

    app.after_startup(
        partial(_started, wiring, settings, topics, current, tasks, liveness, after_start, timer, worker, gauges, prime)
    )
    return app


async def _started(
    wiring: Wiring[P, S],
    settings: Settings,
    topics: Topics,
    current: Current[P, S],
    tasks: list[asyncio.Task],
    liveness: Liveness,
    after_start: Callable[[Running[P, S]], Awaitable[Any]] | None,
    timer: tuple[Callable[[Running[P, S]], Awaitable[Any]], float] | None,
    worker: Callable[[Running[P, S]], Coroutine[Any, Any, Any]] | None,
    gauges: Callable[[Running[P, S]], Awaitable[Any]] | None,
    prime: Callable[[Running[P, S]], dict[str, list[tuple[str, ...]]]] | None,
) -> None:
    """Once the broker is up: the metrics primed, the outbox flushed, the timer, the worker and the sampler
    started."""
    from .kafka_access import ACCESS

    access = ACCESS.get(wiring.service)
    if access is not None:
        ops.prime(
            [getattr(topics, t) for t in access.reads],
            [getattr(topics, t) for t in access.writes],
            **(prime(current()) if prime else {}),
        )
    if after_start is not None:
        await after_start(current())
    if timer is not None:
        tasks.append(asyncio.create_task(_loop(wiring.service, current, *timer)))
    if worker is not None:
        tasks.append(asyncio.create_task(worker(current())))
    tasks.append(asyncio.create_task(_sample_state(wiring.service, settings, topics, current, gauges)))
    liveness.up = True


def _check_consumers(wiring: Wiring[P, S], service: S, topics: Topics) -> None:
    """A consumer names a use case the service has, or nothing starts."""
    for c in wiring.consumers:
        if isinstance(c.handle, str) and not callable(getattr(service, c.handle, None)):
            raise TypeError(f"{wiring.service} has no use case {c.handle!r} to consume {c.topic_of(topics)}")


async def _loop(
    service: str, current: Current[P, S], tick: Callable[[Running[P, S]], Awaitable[Any]], every_s: float
) -> None:
    """A service's timer: a failing tick is logged and the next one runs."""
    while True:
        try:
            await tick(current())
        except Exception as exc:  # a server away, a refused window: the next tick retries
            log.error("timer.tick_failed", service=service, error=type(exc).__name__)
        TIMER_RUNS.labels(f"sais-{service}").inc()
        await asyncio.sleep(every_s)


async def _sample_state(
    service: str,
    settings: CommonSettings,
    topics: Topics,
    current: Current[P, S],
    gauges: Callable[[Running[P, S]], Awaitable[Any]] | None,
) -> None:
    """Gauges read from state, on their own timer: the group's lag from committed offsets, and what the
    service adds (``gauges``)."""
    from .kafka_access import ACCESS
    from .lag import LagSampler

    every_s = settings.metrics_interval_s
    group = settings.group_id_of(service)
    reads = [getattr(topics, t) for t in ACCESS[service].reads] if service in ACCESS else []
    sampler = LagSampler(settings.kafka_login(service), group, reads, every_s) if group and reads else None
    try:
        while True:
            try:
                if sampler is not None:
                    await sampler.sample()
                if gauges is not None:
                    await gauges(current())
            except Exception as exc:  # the broker or database away: the gauges keep their last values
                log.warning("gauges.sample_failed", service=service, error=type(exc).__name__)
            await asyncio.sleep(every_s)
    finally:
        if sampler is not None:
            await sampler.close()


@asynccontextmanager
async def _lifespan(
    wiring: Wiring[P, S],
    settings: Any,
    broker: KafkaBroker,
    publishers: P,
    current: Current[P, S],
    liveness: Liveness,
    tasks: list[asyncio.Task],
    check: Callable[[Any], None] | None,
) -> AsyncIterator[None]:
    """Start-up (the configuration checked, the servers waited for, the service built) and shut-down."""
    if check is not None:
        check(settings)
    current.running = await start_when_servers_answer(wiring, settings, broker, publishers)
    _check_consumers(wiring, current.running.service, Topics(settings.topic_prefix))
    liveness.servers_answered_at = time.monotonic()
    current.running.runtime.protocol_ref.start()
    watchdog = None
    if settings.exit_when_unhealthy_s > 0:
        watchdog = asyncio.create_task(_exit_when_unhealthy(liveness, wiring.service, settings.exit_when_unhealthy_s))
    try:
        yield
    except BaseException as exc:
        # FastStream's broker or a consumer failed after start-up: uvicorn would go on serving HTTP
        # for an app that consumes nothing. Stop, so that the orchestrator starts it afresh (and
        # start-up then waits for the servers).
        _stop_this_process(wiring.service, "service.failed_stopping", type(exc).__name__)
        raise
    finally:
        for task in [*tasks, *([watchdog] if watchdog else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await current.running.runtime.close()
