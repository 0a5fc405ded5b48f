"""Composition root of ingest: its wiring (publishers, bootstrap) and its long-running app.
Nothing runs at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Consume, Running, Wiring, service_app, session
from sais_shared.errors import ConfigurationError
from sais_shared.events import ExtractCompleted, ExtractFailed, ExtractWithdrawn, PupilRecorded, RowRejected
from sais_shared.inbound import PublisherRegistry, inbound_adapter
from sais_shared.runtime import Runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.readers import FileReaders
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
    files = FileReaders(limits.read)
    ingest = Ingest(ExtractRepository(rt.pool), rt.key_store, rt.protocol_ref, publishers, rt.clock, files, limits)
    if settings.ingest_inbound_private_key is not None:
        ingest.inbound = InboundService(
            ingest,
            InboundStaging(rt.pool),
            settings.ingest_inbound_private_key,
            PublisherRegistry.load(settings.ingest_publishers_file) if settings.ingest_publishers_file else None,
            settings.ingest_inbound_max_extract_bytes,
        )
    return ingest


CONSUMERS: tuple[Consume[Ingest], ...] = (
    Consume(
        "inbound",
        inbound_adapter,
        "handle_inbound",
        "Upstream extracts as events: extract-started → record × n → extract-completed, keyed by extract_ref; "
        "records sealed (AES-256-GCM, key wrapped RSA-OAEP-256 to ingest's inbound key); extract-started and "
        "extract-completed carry the publisher's Ed25519 signatures (sais_shared.inbound.started_content, "
        "signed_content), checked against ingest's registry of publishers and the sources each may send.",
        max_records=2000,
    ),
)


WIRING = Wiring("ingest", (("ingest", "sais_ingest"),), declare, bootstrap, consumers=CONSUMERS, deletes=delete_rows)
MIGRATIONS = WIRING.migrations


@asynccontextmanager
async def ingest_session(settings: IngestSettings | None = None) -> AsyncIterator[Ingest]:
    """Ingest for one command or test: ``async with ingest_session() as ingest: await ingest.file(…)``."""
    async with session(WIRING, settings or IngestSettings()) as running:
        yield running.service


def build_app(settings: IngestSettings | None = None):
    """The ingest service: consumes extracts that upstream systems publish on the inbound topic."""
    settings = settings or IngestSettings()

    def check(settings: IngestSettings) -> None:
        if settings.ingest_inbound_private_key is None:
            raise ConfigurationError("SAIS_INGEST_INBOUND_PRIVATE_KEY is not set: ingest cannot open inbound extracts")
        if settings.ingest_publishers_file is None:
            log.warning("inbound.no_publisher_registry", effect="every inbound extract is refused")

    async def sweep(running: Running[Publishers, Ingest]) -> None:
        if announced := await running.service.sweep():
            log.info("sweep.announced", endings=announced)

    return service_app(
        WIRING,
        settings,
        check=check,
        timer=(sweep, settings.ingest_sweep_interval_s),
        prime=lambda running: {
            "ROWS": [
                (src, outcome)
                for src in running.runtime.protocol.sources
                for outcome in ("accepted", "rejected", "out_of_scope")
            ]
        },
        description="Validates and minimises LA extracts (files via the CLI, events via the inbound "
        "topic); publishes pupil events.",
    )
