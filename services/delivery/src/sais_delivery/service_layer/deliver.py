"""Use case: deliver a window's cohorts to the SAIS mailbox, exactly once.

A batch is recorded (``prepared``) before anything is sent (``plan.py``); each part is set to ``sending``
just before its SMTP transaction and ``sent`` once the server accepted it (``send.py``). A part found
``prepared`` is safe to send; one found ``sending`` may or may not have been accepted, so it is reported
for an operator (``sais delivery resolve``, ``resolve.py``) instead of being resent blindly. The
Message-ID is derived from the batch id, so a receiver can also recognise a repeat.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import structlog
from sais_shared import ops
from sais_shared.ports import Clock, Keys
from sais_shared.protocol import normalise_address
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import parse_academic_year

from ..domain import mavis
from ..domain.batch import Batch
from ..domain.errors import NothingToDeliverError
from ..domain.guards import Sharing, Verdict, due_windows, may_send, recipient_for, stale_before, stale_refusal
from ..domain.parts import DEFAULT_MAX_MESSAGE_BYTES
from . import members, resolve
from .plan import plan_batch
from .ports import DeliveryUnitOfWork, Mailer, MessageBuilder, Publisher
from .send import send_parts
from .steps import move
from .views import BatchResult, batch_result

log = structlog.get_logger("sais.delivery")


@dataclass
class DeliveryService(FollowsProtocol):
    uow: DeliveryUnitOfWork
    keys: Keys
    protocol_ref: ProtocolRef
    clock: Clock
    mailer: Mailer
    smime_factory: Callable[[str], MessageBuilder]  # per recipient; certificates are checked when a batch is built
    sender: str
    publisher: Publisher
    attempts: int = 4
    backoff_s: float = 2.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    default_recipient: str | None = None  # SAIS_DELIVERY_RECIPIENT: before the protocol's first recipient
    mavis_max_rows: int = mavis.DEFAULT_FILE_ROWS  # SAIS_DELIVERY_MAVIS_MAX_ROWS

    async def audit(self, actor: str, action: str, subject: str, details: dict[str, Any]) -> None:
        async with self.uow() as tx:
            await tx.audit(actor, action, subject, details, self.protocol.version)

    # --- guards ---------------------------------------------------------------------------

    async def _enforce(self, verdict: Verdict, actor: str, subject: str) -> None:
        exc = verdict.refusal
        if exc is None:
            return
        await self.audit(
            actor,
            "delivery.refused",
            subject,
            {"reason": type(exc).__name__, "message": str(exc), **(verdict.details or {})},
        )
        log.warning("delivery.refused", reason=type(exc).__name__, subject=subject)
        ops.DELIVERY_REFUSED.labels(type(exc).__name__).inc()
        raise exc

    async def is_suspended(self) -> tuple[bool, str | None]:
        async with self.uow() as tx:
            suspended, reason = await tx.sharing.get()
        ops.SHARING_SUSPENDED.set(1 if suspended else 0)
        return suspended, reason

    async def set_suspended(self, suspended: bool, reason: str, actor: str) -> None:
        async with self.uow() as tx:
            await tx.sharing.set(suspended, reason, actor)
            action = "sharing.suspended" if suspended else "sharing.resumed"
            await tx.audit(actor, action, "sharing", {"reason": reason}, self.protocol.version)
        ops.SHARING_SUSPENDED.set(1 if suspended else 0)

    async def _check(self, window: str, recipient: str, actor: str, override_review: str | None) -> None:
        suspended, reason = await self.is_suspended()
        verdict = may_send(self.protocol, recipient, Sharing(suspended, reason), self.clock.today(), override_review)
        await self._enforce(verdict, actor, f"window:{window}")
        if verdict.review_overridden:
            await self.audit(actor, "protocol.review_overridden", f"window:{window}", {"reason": override_review})

    # --- deliver --------------------------------------------------------------------------

    async def deliver(
        self,
        window: str,
        academic_year: str,
        *,
        actor: str,
        recipient: str | None = None,
        override_review: str | None = None,
    ) -> BatchResult:
        sources = self.protocol.transfer.window(window).sources
        recipient = recipient_for(self.protocol, self.sender, recipient or self.default_recipient)
        await self._check(window, recipient, actor, override_review)
        recipient = normalise_address(recipient)  # exactly what was checked goes to RCPT TO and To:
        async with self.uow() as tx:
            pending = await tx.batches.pending(window, academic_year)
        if pending and not await self._replan_if_unsent(pending, actor):
            log.info("batch.resuming", batch_id=str(pending.batch_id))
            return await send_parts(self, pending.batch_id, actor)
        limit = stale_before(self.clock.now(), self.protocol.staleness_months)
        async with self.uow() as tx:
            n = await tx.members.window_size(academic_year, sources)
            stale = await tx.members.extracts_received_before(academic_year, sources, limit)
            last = await tx.batches.last_sent(window, academic_year, recipient)
            installation = await tx.installation_id()
        if not n:
            raise NothingToDeliverError(f"no cohort records for the {window} window of {academic_year}")
        await self._enforce(stale_refusal(stale, self.protocol.staleness_months), actor, f"window:{window}")
        # The window's content, the batch's id and its plan come from one snapshot (plan_batch): the content
        # is computed once, and the id always names the members the batch holds.
        batch_id = await plan_batch(self, installation, window, academic_year, recipient, last, actor)
        if batch_id is None:
            assert last is not None
            log.info("batch.already_sent", batch_id=str(last.batch_id))
            return await self.result(last.batch_id, already_sent=True)
        self.fault("after-prepare")
        return await send_parts(self, batch_id, actor)

    async def _replan_if_unsent(self, pending: Batch, actor: str) -> bool:
        """A batch refused for good before any part was accepted is planned afresh (the limit or the cohort
        may have changed since); one with parts already accepted resumes its plan."""
        if pending.status != "failed":
            return False
        if not pending.may_be_replanned():
            await move(self.uow, pending.batch_id, Batch.reopen)
            return False
        async with self.uow() as tx:
            await tx.batches.drop(pending.batch_id)
            await tx.audit(
                actor,
                "batch.replanned",
                f"batch:{pending.batch_id}",
                {"reason": "refused before any part was accepted"},
                self.protocol.version,
            )
        return True

    async def deliver_due_windows(self, actor: str = "delivery-scheduler") -> list[BatchResult]:
        """Deliver every window whose month it is (July: the coming year; December: the current one).
        A window already delivered with unchanged content sends nothing; refusals are audited by deliver()."""
        results = []
        for window, year in due_windows(self.protocol, self.clock.today()):
            try:
                results.append(await self.deliver(window, year, actor=actor))
            except NothingToDeliverError:
                continue
        return results

    async def resolve(self, batch_id: UUID, *, sent: bool, actor: str, part: int | None = None) -> BatchResult | None:
        return await resolve.resolve(self, batch_id, sent=sent, actor=actor, part=part)

    # --- what it tells -----------------------------------------------------------------------

    async def result(self, batch_id: UUID, *, already_sent: bool = False) -> BatchResult:
        return await batch_result(self.uow, self.protocol, batch_id, already_sent=already_sent)

    def mavis_upload(self, academic_year: str) -> mavis.Upload:
        return mavis.upload_for(self.protocol, parse_academic_year(academic_year), self.mavis_max_rows)

    async def recent_batches(self, limit: int = 20) -> list[dict]:
        async with self.uow() as tx:
            return await tx.batches.recent(limit)

    async def batch_counts(self) -> tuple[dict[str, int], int]:
        async with self.uow() as tx:
            return await tx.batches.counts()

    # --- events ------------------------------------------------------------------------------

    async def apply_cohort_events(self, events: Sequence[members.CohortEvent]) -> None:
        await members.apply_cohort_events(self.uow, self.keys, events)

    async def flush_outbox(self) -> int:
        return await self.uow.flush_outbox(self.publisher)

    def fault(self, point: str) -> None:
        """A named point of the send (after-prepare, after-send) where a crash test injects a fault by
        replacing this method (tests/crash_cli.py). Nothing in production reaches it: no setting or
        variable turns it on."""


__all__ = ["BatchResult", "DeliveryService"]
