"""Composition root of eligibility: consumes pupil and extract events, emits cohort events."""

from __future__ import annotations

from faststream.kafka import KafkaBroker
from sais_shared.bootstrap import Consume, Running, Wiring, service_app
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    CoverageChecked,
    PupilRecorded,
    extract_event_adapter,
)
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
        schema=CohortMemberAdded | CohortMemberWithdrawn | CoverageChecked,
        title=f"{topics.cohort}:publish",
        description="Cohort adds, updates and withdrawals per (programme, pupil), key: pupil id (ordered per "
        "child); and each coverage check of a year's rules against the protocol in force, key: academic year.",
    )


def bootstrap(rt: Runtime, cohort_publisher, settings: EligibilitySettings) -> EligibilityService:
    service = EligibilityService(
        PgUnitOfWork(rt.pool),
        rt.key_store,
        rt.protocol_ref,
        load_all_rules(settings.eligibility_rules_dir),
        PgOutbox(rt.pool, cohort_publisher),
        rt.clock,
    )
    rt.protocol_ref.on_change(service.check_coverage)  # a new version loaded: check it, tell delivery
    return service


CONSUMERS: tuple[Consume[EligibilityService], ...] = (
    Consume(
        "pupil_recorded",
        PupilRecorded,
        "handle_pupils",
        "Records each pupil for its target academic year and matches it to known children.",
    ),
    Consume(
        "extract_completed",
        extract_event_adapter,
        "handle_extracts",
        "How an extract ended: completed (its held records are released once all are recorded; a replacement "
        "dataset then withdraws children no longer present), failed (its records are discarded) or withdrawn (its "
        "children leave the cohorts).",
    ),
)
WIRING = Wiring(
    "eligibility",
    (("eligibility", "sais_eligibility"),),
    declare,
    bootstrap,
    consumers=CONSUMERS,
    deletes=delete_rows,
)
MIGRATIONS = WIRING.migrations


def build_app(settings: EligibilitySettings | None = None):
    settings = settings or EligibilitySettings()

    async def flush_leftovers(running: Running[object, EligibilityService]) -> None:
        await running.service.flush_outbox()  # anything committed before a crash but not yet published
        await running.service.check_coverage()

    async def releaser(running: Running[object, EligibilityService]) -> None:
        await running.service.run_releases(settings.eligibility_release_check_s)  # first, a release a crash cut short

    return service_app(
        WIRING,
        settings,
        after_start=flush_leftovers,
        worker=releaser,
        description="Rolls year groups forward, matches children, applies programme rules.",
    )
