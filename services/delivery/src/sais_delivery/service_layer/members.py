"""Use case: keep delivery's view of the cohort from cohort events (latest revision per programme and
child), and eligibility's coverage checks. No event ids are kept: a member changes only for a revision
newer than the one it holds, and a withdrawal only withdraws a member held, so an event delivered twice,
or replayed from the start of the topic after retention deleted its member, changes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

import structlog
from sais_shared.crypto import DecryptionError
from sais_shared.errors import SaisError
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked, PupilPersonal
from sais_shared.ports import Keys

from ..domain.parts import RowSize
from .ports import DeliveryUnitOfWork
from .steps import row_of, row_size

log = structlog.get_logger("sais.delivery")

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
    sizes = await measure(keys, [e for e in members if isinstance(e, CohortMemberAdded)])
    async with uow() as tx:  # both are idempotent (latest check, latest revision): a redelivery changes nothing
        await tx.members.record_coverage(checks)
        await tx.members.apply(members, sizes)


async def measure(keys: Keys, added: Sequence[CohortMemberAdded]) -> dict[UUID, RowSize]:
    """Each added member's row size by event id, its personal fields opened once here so that planning a
    batch need not open every member again. One that does not open (or whose key cannot be had now) is
    left unmeasured: planning opens it, and refuses it as before."""
    try:
        opened = await keys.get_many({e.personal.key_id for e in added})
    except SaisError:
        return {}
    sizes = {}
    for e in added:
        try:
            sizes[e.event_id] = row_size(
                row_of(e, opened[e.personal.key_id].open_model(e.personal, PupilPersonal, e.aad()))
            )
        except DecryptionError:
            log.warning("member.does_not_open", event_id=str(e.event_id))
    return sizes
