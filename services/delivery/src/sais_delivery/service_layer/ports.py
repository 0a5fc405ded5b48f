"""Everything delivery's use cases reach outside themselves, as ``typing.Protocol``s.

- Storage is one unit of work: ``async with uow() as tx`` gives the batches, members, sharing switch,
  breaches and outbox over one transaction, committed together when the block ends or not at all
  (PostgreSQL: ``adapters.store.PgDeliveryUnitOfWork``; in memory: ``tests/fakes.py``).
- The mail server (``Mailer``), the S/MIME signer and encrypter (``MessageBuilder``) and the event
  publisher (``Publisher``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from uuid import UUID

from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked

from ..domain.batch import Batch, WindowSummary
from ..domain.member import Member
from ..domain.parts import RowSize, SchoolLoad
from ..domain.render import RenderedFile


@dataclass(frozen=True)
class OpenBreach:
    breach_id: UUID
    discovered_at: datetime
    ico_decision_due: datetime
    notified: list[str]


class Batches(Protocol):
    async def get(self, batch_id: UUID) -> Batch | None:
        """The batch and its parts."""
        ...

    async def hold(self, batch_id: UUID) -> Batch | None:
        """The batch and its parts, held against other senders until the unit of work ends."""
        ...

    async def pending(self, window: str, academic_year: str) -> Batch | None:
        """The window's newest batch still prepared, sending or failed."""
        ...

    async def last_sent(self, window: str, academic_year: str, recipient: str) -> Batch | None: ...

    async def add(self, batch: Batch, sources: Sequence[str]) -> bool:
        """The batch, its parts and which child goes in which part (from the members now, in this unit of
        work's snapshot); False when it was already recorded."""
        ...

    async def save(self, before: Batch, after: Batch) -> None:
        """What a transition changed; a part that moved meanwhile (another sender) refuses the save."""
        ...

    async def drop(self, batch_id: UUID) -> None: ...

    async def recent(self, limit: int) -> list[dict[str, Any]]: ...

    async def counts(self) -> tuple[dict[str, int], int]:
        """Batches by status, and parts whose send was interrupted."""
        ...


class Members(Protocol):
    async def window_size(self, academic_year: str, sources: Sequence[str]) -> int:
        """How many members a window has now (its content's fingerprint is the plan's: :meth:`summary`)."""
        ...

    async def extracts_received_before(
        self, academic_year: str, sources: Sequence[str], before: datetime
    ) -> list[str]: ...

    async def key_ids(self, academic_year: str, sources: Sequence[str]) -> list[UUID]: ...

    def by_school(self, academic_year: str, sources: Sequence[str]) -> AsyncIterator[Member]:
        """Every member of the window, school by school, streamed."""
        ...

    async def summary(self, academic_year: str, sources: Sequence[str]) -> WindowSummary: ...

    def of_part(self, batch_id: UUID, part_no: int, academic_year: str) -> AsyncIterator[Member]:
        """The members one part was planned with, as they are now, streamed."""
        ...

    async def apply(
        self, events: Sequence[CohortMemberAdded | CohortMemberWithdrawn], sizes: Mapping[UUID, RowSize]
    ) -> None:
        """In revision order; an older revision never overwrites a newer one. ``sizes``: the row sizes of
        added members, by event id (one missing is stored unmeasured)."""
        ...

    async def school_loads(
        self, academic_year: str, sources: Sequence[str], *, with_mavis: bool
    ) -> list[SchoolLoad] | None:
        """Each school's rows and bytes, in school order, summed from the sizes measured when members were
        applied; None when a member of the window is unmeasured (planning then opens every member)."""
        ...

    async def record_coverage(self, checks: Sequence[CoverageChecked]) -> None: ...

    async def coverage_gaps(self, academic_year: str, protocol_id: str, protocol_version: str) -> list[str] | None:
        """Eligibility's last coverage check of the year under that version: each gap described (None: not
        checked yet)."""
        ...

    async def school_register(self, dfes: set[str]) -> dict[str, tuple[str, str]]:
        """DfE number → (URN, status) for the schools the register knows."""
        ...


class SharingSwitch(Protocol):
    async def get(self) -> tuple[bool, str | None]: ...

    async def set(self, suspended: bool, reason: str, actor: str) -> None: ...


class Breaches(Protocol):
    async def add(self, breach: dict[str, Any], actor: str) -> None: ...

    async def notified(self, breach_id: UUID, notified: Iterable[str]) -> None: ...

    async def close(self, breach_id: UUID, *, outcome: str, ico_notified: bool, resume: bool, actor: str) -> int | None:
        """The breaches still open, or None when this one was not open."""
        ...

    async def open(self) -> list[OpenBreach]: ...


class Tx(Protocol):
    @property
    def batches(self) -> Batches: ...

    @property
    def members(self) -> Members: ...

    @property
    def sharing(self) -> SharingSwitch: ...

    @property
    def breaches(self) -> Breaches: ...

    async def installation_id(self) -> UUID: ...

    async def audit(
        self, actor: str, action: str, subject: str, details: dict[str, Any], protocol_version: str
    ) -> None:
        """An audit entry, committed with the rest or not at all."""
        ...

    async def queue(self, event: Any, key: bytes) -> None:
        """An event to publish once this unit of work has committed (the outbox)."""
        ...


class DeliveryUnitOfWork(Protocol):
    def __call__(self, *, snapshot: bool = False) -> AbstractAsyncContextManager[Tx]:
        """One transaction; ``snapshot``: one consistent view of the members throughout (a batch is
        planned and recorded in one)."""
        ...

    async def flush_outbox(self, publisher: Publisher) -> int:
        """Publish what committed units of work queued; the number published."""
        ...


class Mailer(Protocol):
    async def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        """The server's reply once it accepted the message. Raises ``SmtpTransientError`` (nothing was
        accepted: try again), ``SmtpRejectedError`` (refused for good) or ``MessageMayHaveBeenSentError``."""
        ...


class MessageBuilder(Protocol):
    def build(self, *, subject: str, message_id: str, body: str, files: list[RenderedFile], date: datetime) -> bytes:
        """The whole message, signed and encrypted for its one recipient."""
        ...


class Publisher(Protocol):
    async def publish(
        self, message: Any, *, key: bytes | None = None, headers: dict[str, str] | None = None
    ) -> Any: ...
