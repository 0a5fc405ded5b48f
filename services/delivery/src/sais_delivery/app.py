"""Composition root of delivery: consumes cohort events; delivers batches on command."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import structlog
from faststream.kafka import KafkaBroker
from sais_shared import ops
from sais_shared.bootstrap import Consume, Running, Wiring, service_app, session
from sais_shared.events import DeliveryCompleted, cohort_event_adapter
from sais_shared.runtime import Runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.mailer import Mailer, SmtpConfig
from .adapters.smime import Smime
from .adapters.store import PgDeliveryUnitOfWork
from .config import DeliverySettings
from .domain.errors import CertificateError, DeliveryRefusedError
from .service_layer.deliver import DeliveryService

log = structlog.get_logger("sais.delivery")
BATCH_STATUSES = ("prepared", "sending", "sent", "failed", "not-sent")


def declare(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.delivery_completed,
        schema=DeliveryCompleted,
        title=f"{topics.delivery_completed}:publish",
        description="A batch accepted by the recipient's mail server; what retention schedules. Key: batch id.",
    )


def bootstrap(rt: Runtime, publisher, settings: DeliverySettings) -> DeliveryService:
    mailer = Mailer(
        SmtpConfig(
            settings.delivery_smtp_host,
            settings.delivery_smtp_port,
            settings.delivery_smtp_ca_file,
            settings.delivery_smtp_username,
            settings.smtp_password(),
            settings.delivery_smtp_timeout_s,
        )
    )

    def smime_for(recipient: str) -> Smime:
        cert = settings.delivery_recipient_cert
        if cert is not None and cert.is_dir():  # one certificate per recipient: <dir>/<address>.pem
            folder = cert.resolve()
            cert = (folder / f"{recipient.lower()}.pem").resolve()
            if cert.parent != folder:  # an address that names a path (a/b, ..) never leaves the folder
                raise CertificateError(f"no certificate for {recipient!r} in {folder}: not a plain file name")
        return Smime(
            settings.delivery_sender_cert,
            settings.delivery_sender_key,
            cert,
            sender=settings.delivery_sender_address or "",
            recipient=recipient,
            recipient_ca=settings.delivery_recipient_ca_file,
            dev_mode=settings.dev_mode,
            key_transport=settings.delivery_key_transport,
        )

    return DeliveryService(
        PgDeliveryUnitOfWork(rt.pool),
        rt.key_store,
        rt.protocol_ref,
        rt.clock,
        mailer,
        smime_for,
        settings.delivery_sender_address or "",  # none: deliver() says what to set
        publisher,
        settings.delivery_smtp_attempts,
        settings.delivery_smtp_backoff_s,
        settings.delivery_max_message_bytes,
        settings.delivery_recipient,
        settings.delivery_mavis_max_rows,
    )


CONSUMERS: tuple[Consume[DeliveryService], ...] = (
    Consume(
        "cohort",
        cohort_event_adapter,
        "apply_cohort_events",
        "Keeps the current cohort to deliver (latest revision wins), and eligibility's coverage checks.",
    ),
)
WIRING = Wiring(
    "delivery", (("delivery", "sais_delivery"),), declare, bootstrap, consumers=CONSUMERS, deletes=delete_rows
)
MIGRATIONS = WIRING.migrations


@asynccontextmanager
async def delivery_session(settings: DeliverySettings | None = None) -> AsyncIterator[DeliveryService]:
    """Delivery for one command or test, its outbox flushed first: ``async with delivery_session() as svc``."""
    async with session(WIRING, settings or DeliverySettings()) as running:
        await running.service.flush_outbox()
        yield running.service


def build_app(settings: DeliverySettings | None = None):
    settings = settings or DeliverySettings()

    async def flush(running: Running[object, DeliveryService]) -> None:
        await running.service.flush_outbox()

    async def deliver_due(running: Running[object, DeliveryService]) -> None:
        try:
            for res in await running.service.deliver_due_windows():
                log.info("scheduler.window_done", batch_id=str(res.batch_id), already_sent=res.already_sent)
        except DeliveryRefusedError as exc:
            log.warning("scheduler.window_refused", reason=type(exc).__name__)

    async def gauges(running: Running[object, DeliveryService]) -> None:
        by_status, sending = await running.service.batch_counts()
        for status in BATCH_STATUSES:
            ops.BATCHES.labels(status).set(by_status.get(status, 0))
        ops.PARTS_SENDING.set(sending)

    return service_app(
        WIRING,
        settings,
        after_start=flush,
        gauges=gauges,
        prime=lambda running: {
            "SMTP_FAILURES": [(k,) for k in ops.SMTP_FAILURE_KINDS],
            "BATCHES_SENT": [(w.name,) for w in running.runtime.protocol.transfer.windows],
            "DELIVERY_REFUSED": [(c.__name__,) for c in DeliveryRefusedError.__subclasses__()],
        },
        timer=(deliver_due, settings.delivery_schedule_interval_s) if settings.delivery_schedule else None,
        description="Renders, signs, encrypts and sends cohort batches to allow-listed NHS mailboxes.",
    )
