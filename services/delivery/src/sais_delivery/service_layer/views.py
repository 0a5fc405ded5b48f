"""What delivery tells the person sending and the operator: a batch's result, the newest batches."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from sais_shared.protocol import Protocol

from ..domain.sender_notes import coverage_warnings
from .ports import DeliveryUnitOfWork


@dataclass
class BatchResult:
    batch_id: UUID
    status: str
    recipient: str
    counts: dict[str, int]
    message_id: str
    already_sent: bool = False
    replaces_batch: UUID | None = None
    files: list[dict] = field(default_factory=list)
    delete_by: str = ""
    parts: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the person sending: the batch went, but…


async def batch_result(
    uow: DeliveryUnitOfWork, protocol: Protocol, batch_id: UUID, *, already_sent: bool = False
) -> BatchResult:
    async with uow() as tx:
        b = await tx.batches.get(batch_id)
        if b is None:
            raise LookupError(f"no batch {batch_id}")
        gaps = await tx.members.coverage_gaps(b.academic_year, protocol.id, b.protocol_version)
    parts = [
        {
            "part": p.part_no,
            "message_id": p.message_id,
            "status": p.status.value,
            "size_bytes": p.size_bytes,
            "counts": p.counts or {},
        }
        for p in b.parts
    ]
    return BatchResult(
        b.batch_id,
        b.status.value,
        b.recipient,
        b.counts,
        b.message_id,
        already_sent=already_sent,
        replaces_batch=b.replaces_batch,
        files=b.files,
        delete_by=str(b.delete_by),
        parts=parts,
        warnings=coverage_warnings(b.academic_year, b.protocol_version, gaps),
    )
