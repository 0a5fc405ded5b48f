"""Use case: keep delivery's view of the cohort from cohort events (latest revision per programme and
child), and eligibility's coverage checks. Each event is applied once."""

from __future__ import annotations

from collections.abc import Sequence

from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked
from sais_shared.ports import Keys

from .ports import DeliveryUnitOfWork

CohortEvent = CohortMemberAdded | CohortMemberWithdrawn | CoverageChecked


async def apply_cohort_events(uow: DeliveryUnitOfWork, keys: Keys, events: Sequence[CohortEvent]) -> None:
    checks = [e for e in events if isinstance(e, CoverageChecked)]
    members = [e for e in events if not isinstance(e, CoverageChecked)]
    added = {e.personal.key_id for e in members if isinstance(e, CohortMemberAdded)}
    if added:  # a replayed add whose data retention has since destroyed is not brought back
        gone = await keys.destroyed_among(added)
        members = [e for e in members if not (isinstance(e, CohortMemberAdded) and e.personal.key_id in gone)]
    if not checks and not members:
        return
    async with uow() as tx:
        fresh = await tx.members.claim_new([e.event_id for e in (*checks, *members)])
        await tx.members.record_coverage([e for e in checks if e.event_id in fresh])
        await tx.members.apply([e for e in members if e.event_id in fresh])
