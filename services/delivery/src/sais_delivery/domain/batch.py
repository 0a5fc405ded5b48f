"""A batch and its parts: the states a delivery goes through, and the only ways it moves between them.

A batch is one window's cohort for one recipient, planned from one snapshot and sent as parts 1..n,
each a complete message under the maximum message size::

    part:   prepared ──claim──▶ sending ──accepted──▶ sent
               ▲                  │  │
               └─back_to_prepared─┘  └─fail──▶ failed ──reopen──▶ prepared

``sending`` found after a crash is uncertain: the server may have accepted the message, so only an
operator (``resolve``) moves it on. The batch is sent when every part is (``complete``), and only then
is it transferred, which starts the clock of its deletion (ISP §11.1).

Every transition returns a new value; the unit of work saves the difference. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sais_shared.events import DeliveredFile, DeliveredPart, DeliveryCompleted, stable_id
from sais_shared.protocol import Protocol

from .errors import UncertainDeliveryError
from .parts import part_suffix

MAX_REASON = 500  # a server's reply or an error, as kept with the part


class PartStatus(StrEnum):
    PREPARED = "prepared"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


# A batch takes its parts' states while it is under way: sending while one is, failed when one was
# refused for good, sent once completed. (``not-sent`` is an older state, kept readable.)
BatchStatus = PartStatus
AWAITING_RESULT = frozenset({PartStatus.PREPARED, PartStatus.SENDING})
RESOLVED_BY_OPERATOR = "resolved by operator"


def message_id_of(batch_id: UUID, part_no: int, part_count: int) -> str:
    """Deterministic, so a receiver (and an operator) can recognise a repeat of any part."""
    return f"<{batch_id}{part_suffix(part_no, part_count)}@sais-datashare.invalid>"


def is_delivered_file(name: str) -> bool:
    """The files a transfer is of: the cohort files, not the manifest or the field definitions."""
    return not name.endswith(".json") and name != "field-definitions.csv"


@dataclass(frozen=True)
class SentMeta:
    """What a part held as rendered: recorded when it is claimed, shown to operators, sent to retention."""

    counts: dict[str, int]
    files: list[dict[str, Any]]
    size_bytes: int


@dataclass(frozen=True)
class Part:
    part_no: int
    message_id: str
    status: PartStatus
    segments: list[dict[str, Any]] = field(default_factory=list)  # which schools' rows (parts.Segment)
    counts: dict[str, int] | None = None
    files: list[dict[str, Any]] | None = None
    size_bytes: int | None = None
    attempts: int = 0
    last_error: str | None = None
    smtp_reply: str | None = None
    attempted_at: datetime | None = None
    sent_at: datetime | None = None

    @property
    def schools(self) -> list[str]:
        return sorted({g["school_dfe"] or "not yet known" for g in self.segments})

    def as_delivered(self) -> DeliveredPart:
        return DeliveredPart(
            part=self.part_no,
            message_id=self.message_id,
            size_bytes=self.size_bytes or 0,
            programmes=self.counts or {},
            transferred_at=self.sent_at,
        )


@dataclass(frozen=True)
class Batch:
    batch_id: UUID
    window: str
    academic_year: str
    recipient: str
    message_id: str
    status: BatchStatus
    content_sha256: str
    counts: dict[str, int]
    extract_ids: tuple[UUID, ...]
    key_ids: tuple[UUID, ...]
    protocol_version: str
    protocol_sha256: str
    prepared_at: datetime
    delete_by: date
    replaces_batch: UUID | None = None
    files: list[dict[str, Any]] = field(default_factory=list)
    attempts: int = 0
    last_error: str | None = None
    sent_at: datetime | None = None
    smtp_reply: str | None = None
    parts: tuple[Part, ...] = ()

    @property
    def part_count(self) -> int:
        return len(self.parts)

    def part(self, part_no: int) -> Part:
        return next(p for p in self.parts if p.part_no == part_no)

    def interrupted(self) -> list[Part]:
        return [p for p in self.parts if p.status is PartStatus.SENDING]

    def unsent(self) -> list[Part]:
        return [p for p in self.parts if p.status is not PartStatus.SENT]

    def is_complete(self) -> bool:
        return bool(self.parts) and all(p.status is PartStatus.SENT for p in self.parts)

    def may_be_replanned(self) -> bool:
        """Refused for good before any part was accepted: planned afresh (the limit or the cohort may have
        changed since). One with parts already accepted resumes its plan."""
        return self.status is PartStatus.FAILED and not any(p.status is PartStatus.SENT for p in self.parts)

    # --- transitions ------------------------------------------------------------------------

    def _with(self, part: Part, **batch: Any) -> Batch:
        parts = tuple(part if p.part_no == part.part_no else p for p in self.parts)
        return replace(self, parts=parts, **batch)

    def claim(self, part_no: int, at: datetime, meta: SentMeta) -> Batch:
        """A prepared part is about to go: from here until the server answers, it may have been sent."""
        p = self.part(part_no)
        if p.status is not PartStatus.PREPARED:
            raise UncertainDeliveryError(
                f"batch {self.batch_id} part {part_no} is no longer prepared (another sender?)"
            )
        claimed = replace(
            p,
            status=PartStatus.SENDING,
            attempts=p.attempts + 1,
            attempted_at=at,
            counts=meta.counts,
            files=meta.files,
            size_bytes=meta.size_bytes,
        )
        return self._with(claimed, status=PartStatus.SENDING, attempts=self.attempts + 1)

    def accepted(self, part_no: int, at: datetime, reply: str) -> Batch:
        """The server accepted the part (250 after DATA)."""
        p = self._expect(part_no, PartStatus.SENDING)
        sent = replace(p, status=PartStatus.SENT, sent_at=at, smtp_reply=reply[:MAX_REASON], last_error=None)
        return self._with(sent, status=self._after_sending())

    def back_to_prepared(self, part_no: int, error: str) -> Batch:
        """The SMTP transaction never reached DATA, so nothing was accepted: safe to try again."""
        p = replace(self.part(part_no), status=PartStatus.PREPARED, last_error=error[:MAX_REASON])
        return self._with(p, status=PartStatus.PREPARED, last_error=error[:MAX_REASON])

    def fail(self, part_no: int, error: str) -> Batch:
        """Refused for good (5xx, or over the size limit): nothing was accepted, and resending the same
        message can never succeed."""
        p = replace(self.part(part_no), status=PartStatus.FAILED, last_error=error[:MAX_REASON])
        return self._with(p, status=PartStatus.FAILED, last_error=error[:MAX_REASON])

    def uncertain(self, part_no: int, error: str) -> Batch:
        """The connection broke after DATA: the part stays sending, with what happened."""
        return self._with(replace(self.part(part_no), last_error=error[:MAX_REASON]))

    def resolve(self, part_no: int, *, sent: bool) -> Batch:
        """An operator's decision about an interrupted part: sent (at its attempt) or back to prepared."""
        p = self._expect(part_no, PartStatus.SENDING)
        if sent:
            p = replace(p, status=PartStatus.SENT, sent_at=p.attempted_at, smtp_reply=RESOLVED_BY_OPERATOR)
        else:
            p = replace(p, status=PartStatus.PREPARED, sent_at=None, smtp_reply=None)
        return self._with(p, status=self._after_sending())

    def reopen(self) -> Batch:
        """A batch with parts already accepted, one refused: the refused parts are tried again."""
        parts = tuple(
            replace(p, status=PartStatus.PREPARED) if p.status is PartStatus.FAILED else p for p in self.parts
        )
        return replace(self, parts=parts)

    def widen(self, key_ids: Iterable[UUID], extract_ids: Iterable[UUID]) -> Batch:
        """A child's newer revision (another extract's data key) goes in the batch: the batch records that key
        and those extracts too, so that the transfer's deletion covers them."""
        return replace(
            self,
            key_ids=tuple(sorted({*self.key_ids, *key_ids}, key=str)),
            extract_ids=tuple(sorted({*self.extract_ids, *extract_ids}, key=str)),
        )

    def complete(self, reply: str, delete_by_of: Callable[[datetime], date]) -> Batch | None:
        """Every part accepted: the batch is transferred at its first part's acceptance (None when a part is
        not yet accepted, or the batch is not awaiting a result)."""
        if not self.is_complete() or self.status not in AWAITING_RESULT:
            return None
        transferred = min(p.sent_at for p in self.parts if p.sent_at is not None)
        files = [f for p in self.parts for f in (p.files or []) if is_delivered_file(f["name"])]
        return replace(
            self,
            status=PartStatus.SENT,
            sent_at=transferred,
            smtp_reply=reply[:MAX_REASON],
            last_error=None,
            files=files,
            delete_by=delete_by_of(transferred),
        )

    def completed_event(self, now: datetime) -> DeliveryCompleted:
        """What retention schedules: the batch as transferred, every part of it."""
        if self.status is not PartStatus.SENT or self.sent_at is None:
            raise ValueError(f"batch {self.batch_id} is not sent")
        return DeliveryCompleted(
            event_id=stable_id("delivery-completed", self.batch_id),
            occurred_at=now,
            batch_id=self.batch_id,
            window=self.window,
            academic_year=self.academic_year,
            programmes=self.counts,
            recipient=self.recipient,
            message_id=self.message_id,
            transferred_at=self.sent_at,
            delete_by=self.delete_by,
            files=[DeliveredFile(**f) for f in self.files],
            extract_ids=list(self.extract_ids),
            key_ids=list(self.key_ids),
            protocol_version=self.protocol_version,
            replaces_batch=self.replaces_batch,
            parts=[p.as_delivered() for p in self.parts],
        )

    # ----------------------------------------------------------------------------------------

    def _expect(self, part_no: int, status: PartStatus) -> Part:
        p = self.part(part_no)
        if p.status is not status:
            raise UncertainDeliveryError(f"batch {self.batch_id} part {part_no} is {p.status}, not {status}")
        return p

    def _after_sending(self) -> BatchStatus:
        return PartStatus.PREPARED if self.status is PartStatus.SENDING else self.status


@dataclass(frozen=True)
class WindowSummary:
    """What a batch records of the members it was planned from."""

    content_sha256: str
    key_ids: list[UUID]
    extract_ids: list[UUID]
    counts: dict[str, int]


def planned(
    batch_id: UUID,
    window: str,
    academic_year: str,
    recipient: str,
    members: WindowSummary,
    protocol: Protocol,
    prepared_at: datetime,
    replaces_batch: UUID | None,
    segments: list[list[dict[str, Any]]],
) -> Batch:
    """A new batch of ``len(segments)`` parts, all prepared, under the protocol in force."""
    n = len(segments)
    parts = tuple(
        Part(i, message_id_of(batch_id, i, n), PartStatus.PREPARED, segs) for i, segs in enumerate(segments, 1)
    )
    return Batch(
        batch_id=batch_id,
        window=window,
        academic_year=academic_year,
        recipient=recipient,
        message_id=message_id_of(batch_id, 1, n),
        status=PartStatus.PREPARED,
        content_sha256=members.content_sha256,
        counts=members.counts,
        extract_ids=tuple(members.extract_ids),
        key_ids=tuple(members.key_ids),
        protocol_version=protocol.version,
        protocol_sha256=protocol.sha256,
        prepared_at=prepared_at,
        delete_by=protocol.delete_by(prepared_at),
        replaces_batch=replaces_batch,
        parts=parts,
    )
