"""Composition root of retention: schedules deletions, runs them on its own timer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Consume, Running, Wiring, service_app, session
from sais_shared.events import (
    OWNERS,
    DeletionCompleted,
    DeletionConfirmed,
    DeletionRequested,
    DeliveryCompleted,
    extract_event_adapter,
)
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


def confirmations_of(owner: str) -> Consume[RetentionService]:
    """One topic per owner, written by it alone: a confirmation is its own word."""

    async def handle(service: RetentionService, events: list[DeletionConfirmed]) -> None:
        await service.handle_confirmations(events, owner)

    return Consume(
        lambda topics: topics.deletion_confirmed_by(owner),
        DeletionConfirmed,
        handle,
        f"{owner}'s confirmations; the certificate is written when every owner has confirmed.",
    )


CONSUMERS: tuple[Consume[RetentionService], ...] = (
    Consume(
        "delivery_completed",
        DeliveryCompleted,
        "handle_deliveries",
        "Schedules deletion at transfer date + retention period (ISP §11.1).",
    ),
    Consume(
        "extract_completed",
        extract_event_adapter,
        "handle_extracts",
        "Schedules deletion of an extract that is never delivered (ingest + retention period), and deletes one "
        "that was refused or failed part-way at once (key destroyed, owners asked to delete).",
    ),
    *(confirmations_of(owner) for owner in OWNERS),
)
WIRING = Wiring(
    "retention", (("retention", "sais_retention"),), declare, bootstrap, holds_kek=False, consumers=CONSUMERS
)
MIGRATIONS = WIRING.migrations


@asynccontextmanager
async def retention_session(settings: RetentionSettings | None = None) -> AsyncIterator[RetentionService]:
    """Retention for one command or test: ``async with retention_session() as svc``."""
    async with session(WIRING, settings or RetentionSettings()) as running:
        yield running.service


def build_app(settings: RetentionSettings | None = None):
    settings = settings or RetentionSettings()

    async def run_due(running: Running[tuple, RetentionService]) -> None:
        requests = await running.service.run_due()
        if requests:
            log.info("scheduler.ran", deletion_requests=len(requests))

    return service_app(
        WIRING,
        settings,
        timer=(run_due, settings.retention_interval_s),
        prime=lambda running: {"DELETIONS": [(rule,) for rule in RULES]},
        description="Schedules and proves secure deletion; crypto-shreds Kafka copies.",
    )
