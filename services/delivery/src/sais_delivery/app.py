"""Composition root of delivery: consumes cohort events; delivers batches on command."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import asynccontextmanager
from dataclasses import dataclass

import structlog
from faststream.kafka import KafkaBroker
from sais_shared.deletion import register_deletion_consumer
from sais_shared.events import DeliveryCompleted, cohort_event_adapter
from sais_shared.kafka import batch_consumer, ensure_topics, make_broker
from sais_shared.logging import configure_logging
from sais_shared.ops import TIMER_RUNS, db_ready, make_app
from sais_shared.runtime import Runtime, open_runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.mailer import Mailer, SmtpConfig
from .adapters.smime import Smime
from .config import DeliverySettings
from .domain.errors import CertificateError, DeliveryRefusedError
from .service_layer.deliver import DeliveryService
from .service_layer.members import apply_cohort_events

MIGRATIONS = (("delivery", "sais_delivery"),)
log = structlog.get_logger("sais.delivery")


def delivery_publisher(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.delivery_completed, schema=DeliveryCompleted, title=f"{topics.delivery_completed}:publish",
        description="A batch accepted by the recipient's mail server; what retention schedules. Key: batch id.")


def build_service(settings: DeliverySettings, rt: Runtime, publisher) -> DeliveryService:
    mailer = Mailer(SmtpConfig(settings.delivery_smtp_host, settings.delivery_smtp_port,
                               settings.delivery_smtp_ca_file, settings.delivery_smtp_username,
                               settings.smtp_password(), settings.delivery_smtp_timeout_s))

    def smime_for(recipient: str) -> Smime:
        cert = settings.delivery_recipient_cert
        if cert is not None and cert.is_dir():  # one certificate per recipient: <dir>/<address>.pem
            folder = cert.resolve()
            cert = (folder / f"{recipient.lower()}.pem").resolve()
            if cert.parent != folder:  # an address that names a path (a/b, ..) never leaves the folder
                raise CertificateError(f"no certificate for {recipient!r} in {folder}: not a plain file name")
        return Smime(settings.delivery_sender_cert, settings.delivery_sender_key, cert,
                     sender=settings.delivery_sender_address, recipient=recipient,
                     recipient_ca=settings.delivery_recipient_ca_file, dev_mode=settings.dev_mode,
                     key_transport=settings.delivery_key_transport)

    return DeliveryService(rt.pool, rt.keys, rt.protocol_ref, rt.clock, mailer, smime_for,
                           settings.delivery_sender_address, publisher, settings.delivery_smtp_attempts,
                           settings.delivery_smtp_backoff_s, settings.delivery_max_message_bytes)


@dataclass
class DeliveryContext:
    """Broker + runtime + service for CLI commands: ``async with DeliveryContext() as ctx``."""

    settings: DeliverySettings

    async def __aenter__(self) -> DeliveryService:
        topics = Topics(self.settings.topic_prefix)
        self.broker = make_broker(self.settings, "sais-delivery-cli")
        publisher = delivery_publisher(self.broker, topics)
        self.rt = await open_runtime(self.settings, *MIGRATIONS, service="delivery")
        await ensure_topics(self.settings, topics)
        await self.broker.start()
        self.service = build_service(self.settings, self.rt, publisher)
        await self.service.flush_outbox()
        return self.service

    async def __aexit__(self, *exc) -> None:
        await self.broker.stop()
        await self.rt.close()


def build_app(settings: DeliverySettings | None = None):
    settings = settings or DeliverySettings()
    configure_logging(settings.log_level, settings.log_format)
    topics = Topics(settings.topic_prefix)
    broker = make_broker(settings, "sais-delivery")
    publisher = delivery_publisher(broker, topics)
    state: dict = {}

    async def handle(events):
        await apply_cohort_events(state["rt"].pool, events)

    batch_consumer(
        broker, topic=topics.cohort, group_id=settings.delivery_group_id,
        parse=cohort_event_adapter.validate_json, payload=cohort_event_adapter, handle=handle, dead_letter_topic=topics.dead_letter,
        title=f"{topics.cohort}:delivery", description="Keeps the current cohort to deliver (latest revision wins).")

    register_deletion_consumer(
        broker, topics=topics, group_id=settings.delivery_group_id, service="delivery", schema="delivery",
        delete=delete_rows, pool=lambda: state["rt"].pool, now=lambda: state["rt"].clock.now())

    @asynccontextmanager
    async def lifespan():
        state["rt"] = await open_runtime(settings, *MIGRATIONS, service="delivery")
        state["rt"].protocol_ref.start()
        await ensure_topics(settings, topics)
        try:
            yield
        finally:
            await state["rt"].close()

    app = make_app(broker, title="sais-delivery", lifespan=lifespan, ready=lambda: db_ready({"pool": state.get("rt") and state["rt"].pool}),
                   description="Renders, signs, encrypts and sends cohort batches to allow-listed NHS mailboxes.")

    async def window_scheduler() -> None:
        while True:
            try:
                for res in await build_service(settings, state["rt"], publisher).deliver_due_windows():
                    log.info("scheduler.window_done", batch_id=str(res.batch_id), already_sent=res.already_sent)
            except DeliveryRefusedError as exc:
                log.warning("scheduler.window_refused", reason=type(exc).__name__)
            except Exception as exc:  # SMTP down, database away: next tick retries
                log.error("scheduler.window_failed", error=type(exc).__name__)
            TIMER_RUNS.labels("sais-delivery").inc()
            await asyncio.sleep(settings.delivery_schedule_interval_s)

    @app.after_startup
    async def _flush() -> None:
        await build_service(settings, state["rt"], publisher).flush_outbox()
        if settings.delivery_schedule:
            state["timer"] = asyncio.create_task(window_scheduler())

    @app.on_shutdown
    async def _stop_timer() -> None:
        task = state.get("timer")
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    return app
