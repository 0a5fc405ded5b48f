"""What a due deletion removes: pure decisions, no I/O."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from uuid import UUID

RULE_TRANSFER = "isp-11.1-transfer-plus-retention"
RULE_UNDELIVERED = "undelivered-extract-ingest-plus-retention"
RULE_PARTY_LEFT = "isp-11.3-party-left"
RULE_INBOUND_STAGING = "unfinished-inbound-after-days"  # SAIS_RETENTION_UNFINISHED_INBOUND_DAYS
RULE_EXTRACT_ENDED = "extract-refused-or-failed-at-once"  # nothing of it may be delivered: deleted at once


@dataclass(frozen=True)
class ScheduledDeletion:
    subject: str
    rule: str
    extract_ids: Sequence[UUID]
    key_ids: Sequence[UUID]


@dataclass(frozen=True)
class DeletionRequest:
    """A deletion asked of the services that hold the data (the owners), until each has confirmed it."""

    request_id: UUID
    subject: str
    rule: str
    due_on: date
    owners: list[str]
    key_ids_destroyed: list[UUID]
    keys_retained: dict[str, Any]  # data keys kept, and why (another live subject still needs them)
    requested_at: datetime
    completed_at: datetime | None = None
    certificate_id: UUID | None = None


@dataclass(frozen=True)
class DeletionPlan:
    """``covered``: nothing to do now, a live transfer's own deletion covers it later."""

    extract_ids: list[UUID] = field(default_factory=list)
    key_ids: list[UUID] = field(default_factory=list)
    batch_ids: list[UUID] = field(default_factory=list)
    keys_retained: dict[str, str] = field(default_factory=dict)  # key id → the live transfer that keeps it
    covered: bool = False


def plan_deletion(due: ScheduledDeletion, live_transfers: Iterable[ScheduledDeletion]) -> DeletionPlan:
    """Extracts and keys that another live transfer also carried stay until that one is due; an
    undelivered extract that was delivered after all is covered by the transfer's deletion."""
    overlapping = [
        t
        for t in live_transfers
        if t.subject != due.subject
        and t.rule == RULE_TRANSFER
        and (set(t.extract_ids) & set(due.extract_ids) or set(t.key_ids) & set(due.key_ids))
    ]
    if due.rule == RULE_UNDELIVERED and overlapping:
        return DeletionPlan(covered=True)
    kept_extracts = {x for t in overlapping for x in t.extract_ids}
    kept_keys = {k: t.subject for t in overlapping for k in t.key_ids}
    batch = UUID(due.subject.split(":", 1)[1]) if due.subject.startswith("batch:") else None
    return DeletionPlan(
        extract_ids=[x for x in due.extract_ids if x not in kept_extracts],
        key_ids=[k for k in due.key_ids if k not in kept_keys],
        batch_ids=[batch] if batch else [],
        keys_retained={str(k): s for k, s in kept_keys.items() if k in set(due.key_ids)},
    )


def awaiting(owners: Sequence[str], confirmed: Iterable[str]) -> list[str]:
    """The owners that have not confirmed yet; the certificate waits for all of them."""
    done = set(confirmed)
    return [o for o in owners if o not in done]


def merge_counts(confirmations: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    """Rows deleted per table, from every owner's confirmation (tables are schema-qualified)."""
    out: dict[str, int] = {}
    for counts in confirmations.values():
        for table, n in counts.items():
            out[table] = out.get(table, 0) + int(n)
    return dict(sorted(out.items()))
