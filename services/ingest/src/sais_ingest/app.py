"""Composition root of ingest: settings → broker, publishers, runtime. Nothing runs at import."""

from __future__ import annotations

from contextlib import asynccontextmanager

import structlog
from faststream import FastStream
from faststream.kafka import KafkaBroker
from sais_shared.deletion import register_deletion_consumer
from sais_shared.errors import ConfigurationError
from sais_shared.events import ExtractCompleted, PupilRecorded, RowRejected
from sais_shared.inbound import PublisherRegistry, inbound_adapter
from sais_shared.kafka import batch_consumer, ensure_topics, make_broker
from sais_shared.logging import configure_logging
from sais_shared.ops import db_ready, make_app
from sais_shared.runtime import Runtime, open_runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.repository import ExtractRepository
from .config import IngestSettings
from .service_layer.inbound import InboundService
from .service_layer.ingest_file import Publishers

MIGRATIONS = (("ingest", "sais_ingest"),)
log = structlog.get_logger("sais.ingest")


def build_broker(settings: IngestSettings) -> tuple[KafkaBroker, Publishers]:
    broker = make_broker(settings, "sais-ingest")
    topics = Topics(settings.topic_prefix)
    pubs = Publishers(
        pupil_recorded=broker.publisher(
            topics.pupil_recorded, schema=PupilRecorded, title=f"{topics.pupil_recorded}:publish",
            description="One event per accepted pupil row; personal fields sealed. Key: match key.",
        ),
        extract_completed=broker.publisher(
            topics.extract_completed, schema=ExtractCompleted, title=f"{topics.extract_completed}:publish",
            description="One event per extract, after all its pupil events. Key: extract id.",
        ),
        row_rejected=broker.publisher(
            topics.row_rejected, schema=RowRejected, title=f"{topics.row_rejected}:publish",
            description="One event per failed check of a rejected row. Key: extract id.",
        ),
    )
    return broker, pubs


class IngestContext:
    """An open broker + runtime for CLI use: ``async with IngestContext(settings) as ctx``."""

    def __init__(self, settings: IngestSettings | None = None) -> None:
        self.settings = settings or IngestSettings()
        self.broker, self.publishers = build_broker(self.settings)
        self.runtime: Runtime | None = None

    async def __aenter__(self) -> IngestContext:
        self.runtime = await open_runtime(self.settings, *MIGRATIONS, service="ingest")
        await ensure_topics(self.settings)
        await self.broker.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.broker.stop()
        if self.runtime:
            await self.runtime.close()

    @property
    def repo(self) -> ExtractRepository:
        assert self.runtime
        return ExtractRepository(self.runtime.pool)


def build_app(settings: IngestSettings | None = None) -> FastStream:
    """The ingest service: consumes extracts that upstream systems publish on the inbound topic."""
    settings = settings or IngestSettings()
    configure_logging(settings.log_level, settings.log_format)
    broker, publishers = build_broker(settings)
    topics = Topics(settings.topic_prefix)
    state: dict = {}

    batch_consumer(
        broker, topic=topics.inbound, group_id=settings.ingest_group_id, parse=inbound_adapter.validate_json, payload=inbound_adapter,
        handle=lambda msgs: state["svc"].handle(msgs), dead_letter_topic=topics.dead_letter, max_records=2000,
        title=f"{topics.inbound}:ingest",
        description="Upstream extracts as events: extract-started → record × n → extract-completed, keyed by "
                    "extract_ref; records sealed (AES-256-GCM, key wrapped RSA-OAEP-256 to ingest's inbound key); "
                    "extract-completed carries the publisher's Ed25519 signature of the framed extract "
                    "(sais_shared.inbound.signed_content), checked against ingest's registry of publishers and "
                    "the sources each may send.")

    register_deletion_consumer(
        broker, topics=topics, group_id=settings.ingest_group_id, service="ingest", schema="ingest",
        delete=delete_rows, pool=lambda: state["pool"], now=lambda: state["svc"].clock.now())

    @asynccontextmanager
    async def lifespan():
        if settings.ingest_inbound_private_key is None:
            raise ConfigurationError("SAIS_INGEST_INBOUND_PRIVATE_KEY is not set: ingest cannot open inbound extracts")
        rt = await open_runtime(settings, *MIGRATIONS, service="ingest")
        await ensure_topics(settings, topics)
        rt.protocol_ref.start()
        registry = PublisherRegistry.load(settings.ingest_publishers_file) if settings.ingest_publishers_file else None
        if registry is None:
            log.warning("inbound.no_publisher_registry", effect="every inbound extract is refused")
        state["svc"] = InboundService(ExtractRepository(rt.pool), rt.keys, rt.protocol_ref, publishers, rt.clock,
                                      settings.ingest_inbound_private_key, registry)
        state["pool"] = rt.pool
        try:
            yield
        finally:
            await rt.close()

    return make_app(broker, title="sais-ingest", lifespan=lifespan, ready=lambda: db_ready(state),
                    description="Validates and minimises LA extracts (files via the CLI, events via the inbound "
                                "topic); publishes pupil events.")
