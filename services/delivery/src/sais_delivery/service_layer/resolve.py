"""Use case: an operator's decision about a part whose send was interrupted (it may have been accepted).
The decision and its audit entry are one unit of work; when every part is then sent, so is the batch."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from ..domain.errors import NothingToResolveError
from .send import mark_sent

if TYPE_CHECKING:
    from .deliver import DeliveryService
    from .views import BatchResult


async def resolve(
    svc: DeliveryService, batch_id: UUID, *, sent: bool, actor: str, part: int | None = None
) -> BatchResult | None:
    """``part`` may be left out when only one part is interrupted."""
    async with svc.uow() as tx:
        b = await tx.batches.hold(batch_id)
        interrupted = [p.part_no for p in b.interrupted()] if b else []
        if part is None and len(interrupted) == 1:
            part = interrupted[0]
        if b is None or part is None or part not in interrupted:  # never attempted, already settled, or unknown
            raise NothingToResolveError(
                f"batch {batch_id} has no interrupted part{f' {part}' if part else ''} to resolve "
                f"(interrupted: {', '.join(map(str, interrupted)) or 'none'}); nothing was changed"
            )
        after = b.resolve(part, sent=sent)
        await tx.batches.save(b, after)
        await tx.audit(actor, "batch.resolved", f"batch:{batch_id}", {"sent": sent, "part": part}, svc.protocol.version)
    if sent and after.is_complete():
        return await mark_sent(svc, batch_id, "resolved by operator", actor)
    return None
