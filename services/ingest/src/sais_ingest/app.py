"""Composition root of ingest: its wiring (publishers, bootstrap) and its long-running app.
Nothing runs at import."""

from __future__ import annotations

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Current, Running, Wiring, service_app, session
from sais_shared.deletion import register_deletion_consumer
from sais_shared.errors import ConfigurationError
from sais_shared.events import ExtractCompleted, ExtractFailed, ExtractWithdrawn, PupilRecorded, RowRejected
from sais_shared.inbound import PublisherRegistry, inbound_adapter
from sais_shared.kafka import batch_consumer
from sais_shared.runtime import Runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.repository import ExtractRepository, InboundStaging
from .config import IngestSettings
from .service_layer.inbound import InboundService
from .service_layer.ingest_file import Ingest, Limits, Publishers

log = structlog.get_logger("sais.ingest")


def declare(broker: KafkaBroker, topics: Topics) -> Publishers:
    return Publishers(
        pupil_recorded=broker.publisher(
            topics.pupil_recorded,
            schema=PupilRecorded,
            title=f"{topics.pupil_recorded}:publish",
            description="One event per accepted pupil row; personal fields sealed. Key: match key.",
        ),
        extract_completed=broker.publisher(
            topics.extract_completed,
            schema=ExtractCompleted | ExtractFailed | ExtractWithdrawn,
            title=f"{topics.extract_completed}:publish",
            description="How each extract ended: completed (after all its pupil events, with their count and "
            "checksum), refused or failed part-way (its pupil events are to be discarded), or withdrawn by an "
            "operator. Key: extract id.",
        ),
        row_rejected=broker.publisher(
            topics.row_rejected,
            schema=RowRejected,
            title=f"{topics.row_rejected}:publish",
            description="One event per failed check of a rejected row. Key: extract id.",
        ),
    )


def bootstrap(rt: Runtime, publishers: Publishers, settings: IngestSettings) -> Ingest:
    limits = Limits(
        settings.ingest_replacement_max_withdrawn,
        settings.ingest_reference_date_tolerance_days,
        settings.read_limits(),
    )
    return Ingest(ExtractRepository(rt.pool), rt.keys, rt.protocol_ref, publishers, rt.clock, limits)


WIRING = Wiring("ingest", (("ingest", "sais_ingest"),), declare, bootstrap)
MIGRATIONS = WIRING.migrations


def inbound_service(running: Running[Publishers, Ingest]) -> InboundService:
    settings: IngestSettings = running.settings
    registry = PublisherRegistry.load(settings.ingest_publishers_file) if settings.ingest_publishers_file else None
    if registry is None:
        log.warning("inbound.no_publisher_registry", effect="every inbound extract is refused")
    return InboundService(
        running.service,
        InboundStaging(running.runtime.pool),
        settings.ingest_inbound_private_key,
        registry,
        settings.ingest_inbound_max_extract_bytes,
    )


def ingest_session(settings: IngestSettings | None = None):
    """Ingest for one command or test: ``async with ingest_session() as s: await s.service.file(…)``."""
    return session(WIRING, settings or IngestSettings())


def build_app(settings: IngestSettings | None = None):
    """The ingest service: consumes extracts that upstream systems publish on the inbound topic."""
    settings = settings or IngestSettings()
    inbound: dict[str, InboundService] = {}

    def inbound_for(current: Current[Publishers, Ingest]) -> InboundService:
        if "svc" not in inbound:  # built once the runtime is open (before the broker starts consuming)
            inbound["svc"] = inbound_service(current())
        return inbound["svc"]

    def subscribe(
        broker: KafkaBroker, topics: Topics, settings: IngestSettings, current: Current[Publishers, Ingest]
    ) -> None:
        batch_consumer(
            broker,
            topic=topics.inbound,
            group_id=settings.ingest_group_id,
            parse=inbound_adapter.validate_json,
            payload=inbound_adapter,
            handle=lambda msgs: inbound_for(current).handle(msgs),
            dead_letter_topic=topics.dead_letter,
            max_records=2000,
            title=f"{topics.inbound}:ingest",
            description="Upstream extracts as events: extract-started → record × n → extract-completed, keyed by "
            "extract_ref; records sealed (AES-256-GCM, key wrapped RSA-OAEP-256 to ingest's inbound "
            "key); extract-completed carries the publisher's Ed25519 signature of the framed extract "
            "(sais_shared.inbound.signed_content), checked against ingest's registry of publishers and "
            "the sources each may send.",
        )
        register_deletion_consumer(
            broker,
            topics=topics,
            group_id=settings.ingest_group_id,
            service="ingest",
            schema="ingest",
            delete=delete_rows,
            pool=lambda: current().runtime.pool,
            now=lambda: current().runtime.clock.now(),
        )

    def check(settings: IngestSettings) -> None:
        if settings.ingest_inbound_private_key is None:
            raise ConfigurationError("SAIS_INGEST_INBOUND_PRIVATE_KEY is not set: ingest cannot open inbound extracts")

    async def sweep(running: Running[Publishers, Ingest]) -> None:
        if announced := await running.service.sweep():
            log.info("sweep.announced", endings=announced)

    return service_app(
        WIRING,
        settings,
        subscribe=subscribe,
        check=check,
        timer=(sweep, settings.ingest_sweep_interval_s),
        prime=lambda running: {
            "ROWS": [
                (src, outcome)
                for src in running.runtime.protocol.sources
                for outcome in ("accepted", "rejected", "out_of_scope")
            ]
        },  # fmt: skip
        description="Validates and minimises LA extracts (files via the CLI, events via the inbound "
        "topic); publishes pupil events.",
    )
