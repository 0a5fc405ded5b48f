"""Retention use cases: schedule deletions from delivery (and ingest) events, run due ones by events.

A due deletion destroys the extracts' data keys at once, in retention's own transaction — that
is the immediate guarantee: every copy of their events in Kafka (dead-letter topics included) and
every sealed row is unreadable from that moment (crypto-shredding). Retention then asks each
service that owns rows (ingest, eligibility, delivery) to delete them, by a DeletionRequested
event; each answers with a DeletionConfirmed (counts per table). The certificate is written when
every owner has confirmed; a confirmation that does not come is a metric and an alert. Data that
a later, still-live transfer also carried is kept until that transfer's own deletion; the
certificate says so. Certificates hold ids and counts only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from uuid import UUID

import structlog
from sais_shared import ops
from sais_shared.events import (
    OWNERS,
    DeletionCompleted,
    DeletionConfirmed,
    DeletionRequested,
    DeliveryCompleted,
    ExtractCompleted,
    ExtractFailed,
    ExtractWithdrawn,
    stable_id,
)
from sais_shared.ports import Clock, Outbox
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef

from ..domain.plan import (
    RULE_EXTRACT_ENDED,
    RULE_INBOUND_STAGING,
    RULE_PARTY_LEFT,
    RULE_TRANSFER,
    RULE_UNDELIVERED,
    DeletionRequest,
    awaiting,
    merge_counts,
    plan_deletion,
)
from .ports import Repository, UnitOfWork

log = structlog.get_logger("sais.retention")

__all__ = [
    "RULE_EXTRACT_ENDED",
    "RULE_INBOUND_STAGING",
    "RULE_PARTY_LEFT",
    "RULE_TRANSFER",
    "RULE_UNDELIVERED",
    "RetentionService",
]


@dataclass
class RetentionService(FollowsProtocol):
    uow: UnitOfWork
    protocol_ref: ProtocolRef
    clock: Clock
    outbox: Outbox  # deletion certificates and deletion requests
    confirmation_timeout: timedelta = timedelta(hours=1)
    unfinished_inbound: timedelta = timedelta(days=7)  # an inbound extract that never completed, after it last changed

    async def handle_deliveries(self, events: list[DeliveryCompleted]) -> None:
        """A transfer is deleted at its transfer date + the retention period (ISP §11.1)."""
        await self._schedule(
            events, lambda e: (f"batch:{e.batch_id}", RULE_TRANSFER, e.transferred_at.date(), e.extract_ids, e.key_ids)
        )

    async def handle_extracts(self, events: list[ExtractCompleted | ExtractFailed | ExtractWithdrawn]) -> None:
        """An extract never delivered is deleted at its ingest date + the retention period; one that was
        refused or failed part-way is deleted at once: its key destroyed now, its owners asked to delete
        what it left, with a certificate. (A withdrawn extract keeps the schedule it has.)"""
        ended = [e for e in events if not isinstance(e, ExtractWithdrawn)]
        if not ended:
            return
        async with self.uow() as repo:  # a key is taken only for the extract the key store says it is for
            owner = dict(await repo.live_keys())  # data key → its extract
        named = [e for e in ended if owner.get(e.key_id, e.extract_id) == e.extract_id]
        for e in ended:
            if e not in named:
                log.error(
                    "extract.key_not_its_own",
                    extract_id=str(e.extract_id),
                    key_id=str(e.key_id),
                    effect="ignored: the key store says the key is another extract's",
                )
        # The ingest date is the day retention learns of it, by its own clock, never a date the event says
        # (a backdated event would have the key destroyed at once): at most a few seconds after ingest,
        # later only by the time retention was down, so never before the protocol allows.
        today = self.clock.today()
        await self._schedule(
            [e for e in named if isinstance(e, ExtractCompleted)],
            lambda e: (f"extract:{e.extract_id}", RULE_UNDELIVERED, today, [e.extract_id], [e.key_id]),
        )
        failed = [e for e in named if isinstance(e, ExtractFailed)]
        if not failed:
            return
        async with self.uow() as repo:
            fresh = await repo.claim_new([e.event_id for e in failed])
            for e in failed:
                if e.event_id in fresh:
                    await repo.schedule(
                        f"extract:{e.extract_id}", RULE_EXTRACT_ENDED, today, [e.extract_id], [e.key_id]
                    )
        for e in failed:  # a request already made is not made again
            await self._request_scheduled(f"extract:{e.extract_id}", "retention")
        await self.flush_outbox()

    async def _schedule(self, events: list, entry) -> None:
        """One schedule row per subject, whatever the number of (re)deliveries of its event."""
        async with self.uow() as repo:
            fresh = await repo.claim_new([e.event_id for e in events])
            for e in events:
                if e.event_id in fresh:
                    subject, rule, start, extract_ids, key_ids = entry(e)
                    await repo.schedule(subject, rule, self.protocol.delete_by(start), extract_ids, key_ids)
                    log.info("deletion.scheduled", subject=subject, rule=rule)

    # --- requesting -----------------------------------------------------------------------

    async def run_due(self, today: date | None = None, actor: str = "retention-scheduler") -> list[DeletionRequested]:
        """Destroy the keys of every deletion due by ``today`` and ask the owners to delete their rows."""
        today = today or self.clock.today()
        requested: list[DeletionRequested] = []
        async with self.uow() as repo:
            due = await repo.due_subjects(today)
        for subject in due:
            if req := await self._request_scheduled(subject, actor):
                requested.append(req)
        if req := await self._request_inbound_staging(today, actor):
            requested.append(req)
        await self.flush_outbox()
        await self.refresh_gauges(today)
        return requested

    async def _request_scheduled(self, subject: str, actor: str) -> DeletionRequested | None:
        async with self.uow() as repo:
            claimed = await repo.claim_due(subject)
            if claimed is None:
                return None
            scheduled, due_on = claimed
            plan = plan_deletion(scheduled, await repo.live_scheduled(RULE_TRANSFER, other_than=subject))
            if plan.covered:  # the extract was delivered: the transfer's own deletion covers it, later
                await repo.mark_executed(subject)
                return None
            await repo.mark_requested(subject)
            return await self._request(
                repo,
                subject,
                scheduled.rule,
                due_on,
                "transfer",
                actor,
                OWNERS,
                extract_ids=plan.extract_ids,
                key_ids=plan.key_ids,
                batch_ids=plan.batch_ids,
                keys_retained=plan.keys_retained,
            )

    async def _request_inbound_staging(self, today: date, actor: str) -> DeletionRequested | None:
        """Inbound extracts that never completed (or were refused) are still sealed to ingest's
        long-lived inbound key: ingest deletes them, with their staged records, days after they last
        changed (``unfinished_inbound``; a complete extract's records go as soon as it is ingested)."""
        subject = f"inbound-staging:{today.isoformat()}"
        async with self.uow() as repo:
            if await repo.request_exists(subject):
                return None
            return await self._request(
                repo,
                subject,
                RULE_INBOUND_STAGING,
                today,
                "inbound-staging",
                actor,
                ("ingest",),
                staged_before=today - self.unfinished_inbound,
            )

    async def purge(self, party: str, actor: str) -> DeletionRequested:
        """A party leaves the protocol (§4.3, §11.3): delete everything received from, or destined for, it.

        Every record this system holds came from the provider and is destined for the recipient, so a
        named party (or ``all``) means all personal data held: every row and every data key."""
        known = {p.id for p in self.protocol.parties}
        if party != "all" and party not in known:
            raise ValueError(f"unknown party {party!r}; the protocol names {sorted(known)} (or use 'all')")
        subject = f"party:{party}:{self.clock.now().isoformat()}"
        async with self.uow() as repo:
            keys = await repo.live_keys()
            await repo.mark_requested(None)
            req = await self._request(
                repo,
                subject,
                RULE_PARTY_LEFT,
                self.clock.today(),
                "party-left",
                actor,
                OWNERS,
                extract_ids=[x for _, x in keys],
                key_ids=[k for k, _ in keys],
            )
            await repo.audit(
                actor,
                "data.purge_requested",
                subject,
                {"request_id": str(req.request_id), "party": party, "keys_destroyed": len(keys)},
                self.protocol.version,
            )
        log.warning("purge.requested", party=party, keys_destroyed=len(keys))
        await self.flush_outbox()
        return req

    async def reapply(self, certificates: list[DeletionCompleted], actor: str) -> list[DeletionRequested]:
        """After a database restore: every certified deletion whose data keys are live again (the backup
        predates it) is applied again: those keys destroyed at once, and the owners asked to delete the
        rows of their extracts (and batch) by a new request, ``<subject>:reapplied:<date>``, certified in
        turn. A certificate whose keys are all destroyed is left alone: running this twice does nothing."""
        async with self.uow() as repo:
            live = dict(await repo.live_keys())  # data key → extract
        requests: list[DeletionRequested] = []
        for cert in certificates:
            back = sorted(k for k in cert.key_ids_destroyed if k in live)
            if not back:
                continue
            subject = f"{cert.subject}:reapplied:{self.clock.today().isoformat()}"
            kind, _, ident = cert.subject.partition(":")
            async with self.uow() as repo:
                if await repo.request_exists(subject):
                    continue
                req = await self._request(
                    repo,
                    subject,
                    cert.rule,
                    self.clock.today(),
                    "party-left" if kind == "party" else "transfer",
                    actor,
                    OWNERS,
                    extract_ids=sorted({live[k] for k in back}),
                    key_ids=back,
                    batch_ids=[UUID(ident)] if kind == "batch" else [],
                )
                await repo.audit(
                    actor,
                    "deletion.reapplied",
                    cert.subject,
                    {
                        "certificate_id": str(cert.certificate_id),
                        "keys_destroyed_again": len(back),
                        "request_id": str(req.request_id),
                    },
                    self.protocol.version,
                )
            log.warning("deletion.reapplied", subject=cert.subject, keys=len(back))
            requests.append(req)
        await self.flush_outbox()
        return requests

    async def _request(
        self,
        repo: Repository,
        subject: str,
        rule: str,
        due_on: date,
        scope: str,
        actor: str,
        owners,
        *,
        keys_retained: dict | None = None,
        **targets,
    ) -> DeletionRequested:
        """Destroy the keys now, record the request and put its event in the outbox (one transaction)."""
        destroyed = await repo.destroy_keys(targets.get("key_ids", []), f"retention:{subject}")
        req = DeletionRequested(
            event_id=stable_id("deletion-requested", subject),
            occurred_at=self.clock.now(),
            request_id=stable_id("deletion-request", subject),
            subject=subject,
            rule=rule,
            scope=scope,
            owners=list(owners),
            **targets,
        )
        await repo.add_request(req, due_on, destroyed, keys_retained or {})
        if destroyed:
            await repo.audit(
                actor,
                "data_keys.destroyed",
                subject,
                {"request_id": str(req.request_id), "keys_destroyed": len(destroyed)},
                self.protocol.version,
            )
        log.info("deletion.requested", subject=subject, rule=rule, keys_destroyed=len(destroyed), owners=req.owners)
        return req

    # --- certifying ------------------------------------------------------------------------

    async def handle_confirmations(self, events: list[DeletionConfirmed], owner: str) -> list[DeletionCompleted]:
        """Record each owner's confirmation, read from ``owner``'s own topic (only it may write there);
        certify a request once every owner has confirmed. A confirmation that names another owner is
        not that owner's word: ignored, and logged as an error."""
        certs: list[DeletionCompleted] = []
        for e in events:
            if e.service != owner:
                log.error(
                    "deletion.confirmation_not_its_own",
                    request_id=str(e.request_id),
                    topic_owner=owner,
                    names=e.service,
                    effect="ignored: only the owner confirms its deletions",
                )
                ops.FORGED_CONFIRMATIONS.inc()
                continue
            async with self.uow() as repo:
                req = await repo.claim_request(e.request_id)
                if req is None:
                    log.warning("deletion.unknown_confirmation", request_id=str(e.request_id), service=e.service)
                    continue
                await repo.add_confirmation(e.request_id, e.service, e.rows_deleted)
                if req.completed_at is not None:
                    continue
                confirmed = await repo.confirmations(e.request_id)
                if awaiting(req.owners, confirmed):
                    continue
                if cert := await self._certify(repo, req, merge_counts(confirmed)):
                    certs.append(cert)
        if certs:
            await self.flush_outbox()
        return certs

    async def _certify(
        self, repo: Repository, req: DeletionRequest, counts: dict[str, int]
    ) -> DeletionCompleted | None:
        subject, rule = req.subject, req.rule
        if rule == RULE_INBOUND_STAGING and not any(counts.values()):
            await repo.close_request(req.request_id, None)
            return None  # nothing was staged that long: no certificate to keep
        now = self.clock.now()
        cert = DeletionCompleted(
            event_id=stable_id("deletion", subject),
            occurred_at=now,
            certificate_id=stable_id("certificate", subject),
            rule=rule,
            subject=subject,
            due_at=req.due_on,
            executed_at=now,
            key_ids_destroyed=req.key_ids_destroyed,
            rows_deleted=counts,
            protocol_version=self.protocol.version,
        )
        await repo.add_certificate(cert, req.keys_retained)
        await repo.close_request(req.request_id, cert.certificate_id)
        if rule == RULE_PARTY_LEFT:
            await repo.certify_scheduled(cert.certificate_id, requested_by=req.requested_at)
        else:
            await repo.certify_scheduled(cert.certificate_id, subject=subject)
        await repo.audit(
            "retention",
            "data.purged" if rule == RULE_PARTY_LEFT else "data.deleted",
            subject,
            {
                "certificate_id": str(cert.certificate_id),
                "rule": rule,
                "keys_destroyed": len(cert.key_ids_destroyed),
                "rows_deleted": counts,
            },
            self.protocol.version,
        )
        ops.DELETIONS.labels(rule).inc()
        log.info("deletion.completed", subject=subject, keys_destroyed=len(cert.key_ids_destroyed), rows=counts)
        return cert

    # --- watching ---------------------------------------------------------------------------

    async def refresh_gauges(self, today: date) -> None:
        """Pending deletions (scheduled / overdue: an alert) and confirmations overdue per owner (an alert)."""
        async with self.uow() as repo:
            scheduled, overdue = await repo.pending_counts(today)
        ops.DELETIONS_PENDING.labels("scheduled").set(scheduled)
        ops.DELETIONS_PENDING.labels("overdue").set(overdue)
        for service, n in (await self.overdue_confirmations()).items():
            ops.CONFIRMATIONS_OVERDUE.labels(service).set(n)

    async def overdue_confirmations(self) -> dict[str, int]:
        """Per owner: requests older than the confirmation timeout that it has not confirmed."""
        async with self.uow() as repo:
            open_requests = await repo.unconfirmed(self.clock.now() - self.confirmation_timeout)
        out = dict.fromkeys(OWNERS, 0)
        for owners, done in open_requests:
            for service in awaiting(owners, done):
                out[service] += 1
        return out

    async def flush_outbox(self) -> int:
        return await self.outbox.flush()
