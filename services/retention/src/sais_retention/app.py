"""Composition root of retention: schedules deletions, runs them on its own timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Current, Running, Wiring, service_app, session
from sais_shared.events import (
    OWNERS,
    DeletionCompleted,
    DeletionConfirmed,
    DeletionRequested,
    DeliveryCompleted,
    extract_event_adapter,
)
from sais_shared.kafka import batch_consumer
from sais_shared.runtime import Runtime
from sais_shared.topics import Topics

from .adapters.repository import PgOutbox, PgUnitOfWork
from .config import RetentionSettings
from .domain.plan import RULE_EXTRACT_ENDED, RULE_INBOUND_STAGING, RULE_PARTY_LEFT, RULE_TRANSFER, RULE_UNDELIVERED
from .service_layer.retention import RetentionService

log = structlog.get_logger("sais.retention")


def certificate_publisher(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.deletion_completed,
        schema=DeletionCompleted,
        title=f"{topics.deletion_completed}:publish",
        description="Deletion certificates: what was destroyed, when, by which rule, with every owner's counts. "
        "Key: certificate id.",
    )


def request_publisher(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.deletion_requested,
        schema=DeletionRequested,
        title=f"{topics.deletion_requested}:publish",
        description="Asks ingest, eligibility and delivery to delete their own rows (the data keys are already "
        "destroyed). Key: request id.",
    )


def declare(broker: KafkaBroker, topics: Topics) -> tuple:
    return certificate_publisher(broker, topics), request_publisher(broker, topics)


def bootstrap(rt: Runtime, pubs: tuple, settings: RetentionSettings | None = None) -> RetentionService:
    """The one way retention is assembled (app, CLI, tests): runtime + the two publishers."""
    settings = settings or RetentionSettings()
    return RetentionService(
        PgUnitOfWork(rt.pool),
        rt.protocol_ref,
        rt.clock,
        PgOutbox(rt.pool, *pubs),
        timedelta(seconds=settings.retention_confirmation_timeout_s),
        timedelta(days=settings.retention_unfinished_inbound_days),
    )


RULES = (RULE_TRANSFER, RULE_UNDELIVERED, RULE_PARTY_LEFT, RULE_INBOUND_STAGING, RULE_EXTRACT_ENDED)

WIRING = Wiring("retention", (("retention", "sais_retention"),), declare, bootstrap, holds_kek=False)
MIGRATIONS = WIRING.migrations


@asynccontextmanager
async def retention_session(settings: RetentionSettings | None = None) -> AsyncIterator[RetentionService]:
    """Retention for one command or test: ``async with retention_session() as svc``."""
    async with session(WIRING, settings or RetentionSettings()) as running:
        yield running.service


def build_app(settings: RetentionSettings | None = None):
    settings = settings or RetentionSettings()

    def subscribe(
        broker: KafkaBroker, topics: Topics, settings: RetentionSettings, current: Current[tuple, RetentionService]
    ) -> None:
        batch_consumer(
            broker,
            topic=topics.delivery_completed,
            group_id=settings.retention_group_id,
            parse=DeliveryCompleted.model_validate_json,
            payload=DeliveryCompleted,
            handle=lambda evs: current.service.handle_deliveries(evs),
            dead_letter_topic=topics.dead_letter,
            title=f"{topics.delivery_completed}:retention",
            description="Schedules deletion at transfer date + retention period (ISP §11.1).",
        )
        batch_consumer(
            broker,
            topic=topics.extract_completed,
            group_id=settings.retention_group_id,
            parse=extract_event_adapter.validate_json,
            payload=extract_event_adapter,
            handle=lambda evs: current.service.handle_extracts(evs),
            dead_letter_topic=topics.dead_letter,
            title=f"{topics.extract_completed}:retention",
            description="Schedules deletion of an extract that is never delivered (ingest + retention period), and "
            "deletes one that was refused or failed part-way at once (key destroyed, owners asked to delete).",
        )
        for owner in OWNERS:  # one topic per owner, written by it alone: a confirmation is its own word
            batch_consumer(
                broker,
                topic=topics.deletion_confirmed_by(owner),
                group_id=settings.retention_group_id,
                parse=DeletionConfirmed.model_validate_json,
                payload=DeletionConfirmed,
                handle=lambda evs, owner=owner: current.service.handle_confirmations(evs, owner),
                dead_letter_topic=topics.dead_letter,
                title=f"{topics.deletion_confirmed_by(owner)}:retention",
                description=f"{owner}'s confirmations; the certificate is written when every owner has confirmed.",
            )

    async def run_due(running: Running[tuple, RetentionService]) -> None:
        requests = await running.service.run_due()
        if requests:
            log.info("scheduler.ran", deletion_requests=len(requests))

    return service_app(
        WIRING,
        settings,
        subscribe=subscribe,
        timer=(run_due, settings.retention_interval_s),
        prime=lambda running: {"DELETIONS": [(rule,) for rule in RULES]},
        description="Schedules and proves secure deletion; crypto-shreds Kafka copies.",
    )
