"""Composition root of eligibility: consumes pupil and extract events, emits cohort events."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Current, Running, Wiring, service_app
from sais_shared.deletion import register_deletion_consumer
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, PupilRecorded, extract_event_adapter
from sais_shared.kafka import batch_consumer
from sais_shared.runtime import Runtime
from sais_shared.topics import Topics

from .adapters.deletion import delete_rows
from .adapters.repository import PgOutbox, PgUnitOfWork
from .adapters.rules_files import load_all_rules
from .config import EligibilitySettings
from .service_layer.handlers import EligibilityService


def declare(broker: KafkaBroker, topics: Topics):
    return broker.publisher(
        topics.cohort,
        schema=CohortMemberAdded | CohortMemberWithdrawn,
        title=f"{topics.cohort}:publish",
        description="Cohort adds, updates and withdrawals per (programme, pupil). Key: pupil id (ordered per child).",
    )


def bootstrap(rt: Runtime, cohort_publisher, settings: EligibilitySettings) -> EligibilityService:
    service = EligibilityService(
        PgUnitOfWork(rt.pool),
        rt.keys,
        rt.protocol_ref,
        load_all_rules(settings.eligibility_rules_dir),
        PgOutbox(rt.pool, cohort_publisher),
        rt.clock,
    )
    rt.protocol_ref.on_change(service.check_coverage)  # a new version loaded: check it, tell delivery
    return service


WIRING = Wiring("eligibility", (("eligibility", "sais_eligibility"),), declare, bootstrap)
MIGRATIONS = WIRING.migrations


def build_app(settings: EligibilitySettings | None = None):
    settings = settings or EligibilitySettings()

    def subscribe(
        broker: KafkaBroker, topics: Topics, settings: EligibilitySettings, current: Current[object, EligibilityService]
    ) -> None:
        batch_consumer(
            broker,
            topic=topics.pupil_recorded,
            group_id=settings.eligibility_group_id,
            parse=PupilRecorded.model_validate_json,
            payload=PupilRecorded,
            handle=lambda evs: current.service.handle_pupils(evs),
            dead_letter_topic=topics.dead_letter,
            title=f"{topics.pupil_recorded}:eligibility",
            description="Records each pupil for its target academic year and matches it to known children.",
        )
        batch_consumer(
            broker,
            topic=topics.extract_completed,
            group_id=settings.eligibility_group_id,
            parse=extract_event_adapter.validate_json,
            payload=extract_event_adapter,
            handle=lambda evs: current.service.handle_extracts(evs),
            dead_letter_topic=topics.dead_letter,
            title=f"{topics.extract_completed}:eligibility",
            description="How an extract ended: completed (its held records are released once all are recorded; a "
            "replacement dataset then withdraws children no longer present), failed (its records are discarded) "
            "or withdrawn (its children leave the cohorts).",
        )
        register_deletion_consumer(
            broker,
            topics=topics,
            group_id=settings.eligibility_group_id,
            service="eligibility",
            schema="eligibility",
            delete=delete_rows,
            pool=lambda: current().runtime.pool,
            now=lambda: current().runtime.clock.now(),
        )

    async def flush_leftovers(running: Running[object, EligibilityService]) -> None:
        await running.service.flush_outbox()  # anything committed before a crash but not yet published
        await running.service.reconcile_pending()  # a release a crash cut short
        await running.service.check_coverage()

    return service_app(
        WIRING,
        settings,
        subscribe=subscribe,
        after_start=flush_leftovers,
        description="Rolls year groups forward, matches children, applies programme rules.",
    )
