"""Composition root of retention: schedules deletions, runs them on its own timer."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.events import (
    DeletionCompleted,
    DeletionConfirmed,
    DeletionRequested,
    DeliveryCompleted,
    ExtractCompleted,
)
from sais_shared.kafka import batch_consumer, ensure_topics, make_broker
from sais_shared.logging import configure_logging
from sais_shared.ops import TIMER_RUNS, db_ready, make_app
from sais_shared.runtime import Runtime, open_runtime
from sais_shared.topics import Topics

from .config import RetentionSettings
from .service_layer.retention import RetentionService

MIGRATIONS = (("retention", "sais_retention"),)
log = structlog.get_logger("sais.retention")


def certificate_publisher(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.deletion_completed, schema=DeletionCompleted, title=f"{topics.deletion_completed}:publish",
        description="Deletion certificates: what was destroyed, when, by which rule, with every owner's counts. "
                    "Key: certificate id.")


def request_publisher(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.deletion_requested, schema=DeletionRequested, title=f"{topics.deletion_requested}:publish",
        description="Asks ingest, eligibility and delivery to delete their own rows (the data keys are already "
                    "destroyed). Key: request id.")


def publishers(broker: KafkaBroker, topics: Topics) -> tuple:
    return certificate_publisher(broker, topics), request_publisher(broker, topics)


def build_service(rt: Runtime, pubs: tuple, settings: RetentionSettings | None = None) -> RetentionService:
    """The one way retention is assembled (app, CLI, tests): runtime + the two publishers."""
    timeout = timedelta(seconds=settings.retention_confirmation_timeout_s) if settings else timedelta(hours=1)
    return RetentionService(rt.pool, rt.protocol_ref, rt.clock, pubs[0], pubs[1], timeout)


def build_app(settings: RetentionSettings | None = None):
    settings = settings or RetentionSettings()
    configure_logging(settings.log_level, settings.log_format)
    topics = Topics(settings.topic_prefix)
    broker = make_broker(settings, "sais-retention")
    pubs = publishers(broker, topics)
    state: dict = {}

    batch_consumer(
        broker, topic=topics.delivery_completed, group_id=settings.retention_group_id,
        parse=DeliveryCompleted.model_validate_json, payload=DeliveryCompleted, handle=lambda evs: state["svc"].handle_deliveries(evs),
        dead_letter_topic=topics.dead_letter, title=f"{topics.delivery_completed}:retention",
        description="Schedules deletion at transfer date + retention period (ISP §11.1).")
    batch_consumer(
        broker, topic=topics.extract_completed, group_id=settings.retention_group_id,
        parse=ExtractCompleted.model_validate_json, payload=ExtractCompleted, handle=lambda evs: state["svc"].handle_extracts(evs),
        dead_letter_topic=topics.dead_letter, title=f"{topics.extract_completed}:retention",
        description="Schedules deletion of an extract that is never delivered (ingest + retention period).")
    batch_consumer(
        broker, topic=topics.deletion_confirmed, group_id=settings.retention_group_id,
        parse=DeletionConfirmed.model_validate_json, payload=DeletionConfirmed,
        handle=lambda evs: state["svc"].handle_confirmations(evs), dead_letter_topic=topics.dead_letter,
        title=f"{topics.deletion_confirmed}:retention",
        description="Owners' confirmations; the certificate is written when every owner has confirmed.")

    async def scheduler() -> None:
        while True:
            try:
                requests = await state["svc"].run_due()
                if requests:
                    log.info("scheduler.ran", deletion_requests=len(requests))
            except Exception as exc:  # keep the timer alive; the next tick retries
                log.error("scheduler.failed", error=type(exc).__name__)
            TIMER_RUNS.labels("sais-retention").inc()
            await asyncio.sleep(settings.retention_interval_s)

    @asynccontextmanager
    async def lifespan():
        state["rt"] = await open_runtime(settings, *MIGRATIONS, service="retention")
        await ensure_topics(settings, topics)
        state["rt"].protocol_ref.start()
        state["svc"] = build_service(state["rt"], pubs, settings)
        try:
            yield
        finally:
            task = state.get("timer")
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await state["rt"].close()

    app = make_app(broker, title="sais-retention", lifespan=lifespan, ready=lambda: db_ready({"pool": state.get("rt") and state["rt"].pool}),
                   description="Schedules and proves secure deletion; crypto-shreds Kafka copies.")

    @app.after_startup
    async def _start_timer() -> None:
        state["timer"] = asyncio.create_task(scheduler())

    return app
