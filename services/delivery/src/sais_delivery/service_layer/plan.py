"""Use case: plan a batch. From one snapshot of the window's members, measure each school's rows as they
will be rendered, split the schools into parts under the maximum message size, and record the batch,
its parts and which child goes in which part, with its audit entry, before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from sais_shared.crypto import DataKey
from sais_shared.events import stable_id

from ..domain.batch import Batch, planned
from ..domain.errors import NothingToDeliverError
from ..domain.member import Member
from ..domain.parts import SchoolLoad, csv_budget, plan_parts
from .steps import open_row, row_size

if TYPE_CHECKING:
    from .deliver import DeliveryService

log = structlog.get_logger("sais.delivery")


async def school_loads(
    members: AsyncIterator[Member], keys: Mapping[UUID, DataKey], *, with_mavis: bool
) -> list[SchoolLoad]:
    """Each school's rows and bytes as rendered (members come school by school; memory holds one sum)."""
    loads: list[SchoolLoad] = []
    school: str | None = None
    rows = total = biggest = 0
    async for m in members:
        size = row_size(open_row(m, keys)).planned(with_mavis)
        if m.school_dfe != school:
            if school is not None:
                loads.append(SchoolLoad(school, rows, total, biggest))
            school, rows, total, biggest = m.school_dfe, 0, 0, 0
        rows, total, biggest = rows + 1, total + size, max(biggest, size)
    if school is not None:
        loads.append(SchoolLoad(school, rows, total, biggest))
    return loads


async def plan_batch(
    svc: DeliveryService,
    installation: UUID,
    window: str,
    academic_year: str,
    recipient: str,
    last: Batch | None,
    actor: str,
) -> UUID | None:
    """The batch of a window's members now, planned and recorded; its id (one the same content always gets).
    None when ``last`` (the batch last sent to ``recipient``) already holds exactly this content."""
    win, protocol = svc.protocol.transfer.window(window), svc.protocol
    async with svc.uow(snapshot=True) as tx:
        s = await tx.members.summary(academic_year, win.sources)
        if not sum(s.counts.values()):
            raise NothingToDeliverError(f"no cohort records for the {window} window of {academic_year}")
        if last and last.content_sha256 == s.content_sha256:
            return None
        batch_id = stable_id("batch", installation, window, academic_year, recipient, s.content_sha256)
        svc.smime_factory(recipient)  # certificate problems refuse before anything is recorded
        loads = await tx.members.school_loads(academic_year, win.sources, with_mavis=win.mavis_cohort_import)
        if loads is None:  # a member stored unmeasured (before sizes were kept, or it did not open)
            keys = await svc.keys.get_many(await tx.members.key_ids(academic_year, win.sources))
            members = tx.members.by_school(academic_year, win.sources)
            loads = await school_loads(members, keys, with_mavis=win.mavis_cohort_import)
        segments = [[g.as_json() for g in part] for part in plan_parts(loads, csv_budget(svc.max_message_bytes))]
        now, replaces = svc.clock.now(), last.batch_id if last else None
        batch = planned(batch_id, window, academic_year, recipient, s, protocol, now, replaces, segments)
        if not await tx.batches.add(batch, win.sources):
            return batch_id  # planned meanwhile by another send: it resumes that one
        gaps = await tx.members.coverage_gaps(academic_year, protocol.id, protocol.version)
        details = {"recipient": recipient, "parts": batch.part_count, "max_message_bytes": svc.max_message_bytes}
        await tx.audit(
            actor, "batch.prepared", f"batch:{batch_id}", prepared_details(batch, gaps) | details, protocol.version
        )
    log.info("batch.prepared", batch_id=str(batch_id), counts=s.counts, parts=batch.part_count)
    if gaps:  # the cohort is incomplete: the protocol does not request every child the rules need
        log.warning(
            "batch.coverage_gap",
            batch_id=str(batch_id),
            academic_year=academic_year,
            protocol_version=protocol.version,
            gaps=gaps,
        )
    return batch_id


def prepared_details(batch: Batch, gaps: list[str] | None) -> dict[str, Any]:
    """What the audit trail records of a batch planned: ids and counts only."""
    return {
        "window": batch.window,
        "academic_year": batch.academic_year,
        "counts": batch.counts,
        "coverage_gaps": gaps,
        "protocol_sha256": batch.protocol_sha256,
    }
