"""Composition root of eligibility: consumes pupil and extract events, emits cohort events."""

from __future__ import annotations

from contextlib import asynccontextmanager

from faststream import FastStream
from sais_shared.deletion import register_deletion_consumer
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    ExtractCompleted,
    PupilRecorded,
)
from sais_shared.kafka import batch_consumer, ensure_topics, make_broker
from sais_shared.logging import configure_logging
from sais_shared.ops import db_ready, make_app
from sais_shared.runtime import open_runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.rules_files import load_all_rules
from .config import EligibilitySettings
from .service_layer.handlers import EligibilityService

MIGRATIONS = (("eligibility", "sais_eligibility"),)


class _Holder:
    service: EligibilityService | None = None

    def get(self) -> EligibilityService:
        if self.service is None:
            raise RuntimeError("eligibility service not started")
        return self.service


def build_app(settings: EligibilitySettings | None = None) -> FastStream:
    settings = settings or EligibilitySettings()
    configure_logging(settings.log_level, settings.log_format)
    topics = Topics(settings.topic_prefix)
    broker = make_broker(settings, "sais-eligibility")
    holder = _Holder()
    cohort = broker.publisher(
        topics.cohort, schema=CohortMemberAdded | CohortMemberWithdrawn, title=f"{topics.cohort}:publish",
        description="Cohort adds, updates and withdrawals per (programme, pupil). Key: pupil id (ordered per child).",
    )

    batch_consumer(
        broker, topic=topics.pupil_recorded, group_id=settings.eligibility_group_id,
        parse=PupilRecorded.model_validate_json, payload=PupilRecorded, handle=lambda evs: holder.get().handle_pupils(evs),
        dead_letter_topic=topics.dead_letter, title=f"{topics.pupil_recorded}:eligibility",
        description="Records each pupil for its target academic year and matches it to known children.",
    )
    batch_consumer(
        broker, topic=topics.extract_completed, group_id=settings.eligibility_group_id,
        parse=ExtractCompleted.model_validate_json, payload=ExtractCompleted, handle=lambda evs: holder.get().handle_extracts(evs),
        dead_letter_topic=topics.dead_letter, title=f"{topics.extract_completed}:eligibility",
        description="Marks an extract complete; a replacement dataset then withdraws children no longer present.",
    )

    register_deletion_consumer(
        broker, topics=topics, group_id=settings.eligibility_group_id, service="eligibility", schema="eligibility",
        delete=delete_rows, pool=lambda: holder.get().pool, now=lambda: holder.get().clock.now())

    @asynccontextmanager
    async def lifespan():
        rt = await open_runtime(settings, *MIGRATIONS, service="eligibility")
        await ensure_topics(settings, topics)
        rt.protocol_ref.start()
        holder.service = EligibilityService(rt.pool, rt.keys, rt.protocol_ref, load_all_rules(settings.eligibility_rules_dir),
                                            cohort, rt.clock)
        try:
            yield
        finally:
            await rt.close()

    app = make_app(broker, title="sais-eligibility", lifespan=lifespan, ready=lambda: db_ready({"pool": holder.service and holder.service.pool}),
                   description="Rolls year groups forward, matches children, applies programme rules.")

    @app.after_startup
    async def _flush_leftovers() -> None:
        await holder.get().flush_outbox()  # anything committed before a crash but not yet published

    return app


