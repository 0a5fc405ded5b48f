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

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import asyncpg
import structlog
from dateutil.relativedelta import relativedelta
from sais_shared import ops
from sais_shared.clock import Clock
from sais_shared.events import (
    OWNERS,
    DeletionCompleted,
    DeletionConfirmed,
    DeletionRequested,
    DeliveryCompleted,
    ExtractCompleted,
    stable_id,
)
from sais_shared.kafka import claim_new
from sais_shared.keystore import audit, destroy_keys, live_keys
from sais_shared.outbox import flush_outbox
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef

from ..domain.plan import (
    RULE_INBOUND_STAGING,
    RULE_PARTY_LEFT,
    RULE_TRANSFER,
    RULE_UNDELIVERED,
    ScheduledDeletion,
    awaiting,
    merge_counts,
    plan_deletion,
)
from ..domain.schedule import due_date

log = structlog.get_logger("sais.retention")

__all__ = ["RULE_INBOUND_STAGING", "RULE_PARTY_LEFT", "RULE_TRANSFER", "RULE_UNDELIVERED", "RetentionService"]


@dataclass
class RetentionService(FollowsProtocol):
    pool: asyncpg.Pool
    protocol_ref: ProtocolRef
    clock: Clock
    publisher: Any  # deletion certificates
    request_publisher: Any = None  # deletion requests to the owners
    confirmation_timeout: timedelta = timedelta(hours=1)

    async def handle_deliveries(self, events: list[DeliveryCompleted]) -> None:
        """A transfer is deleted at its transfer date + the retention period (ISP §11.1)."""
        await self._schedule(
            events, lambda e: (f"batch:{e.batch_id}", RULE_TRANSFER, e.transferred_at.date(), e.extract_ids, e.key_ids)
        )

    async def handle_extracts(self, events: list[ExtractCompleted]) -> None:
        """An extract never delivered is deleted at its ingest date + the retention period."""
        await self._schedule(
            events,
            lambda e: (f"extract:{e.extract_id}", RULE_UNDELIVERED, e.occurred_at.date(), [e.extract_id], [e.key_id]),
        )

    async def _schedule(self, events: list, entry) -> None:
        """One schedule row per subject, whatever the number of (re)deliveries of its event."""
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim_new(conn, "retention.processed", [e.event_id for e in events])
            for e in events:
                if e.event_id in fresh:
                    subject, rule, start, extract_ids, key_ids = entry(e)
                    await conn.execute(
                        "INSERT INTO retention.schedule(subject, rule, due_on, extract_ids, key_ids) "
                        "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (subject) DO NOTHING",
                        subject,
                        rule,
                        due_date(start, self.protocol.retention_months),
                        extract_ids,
                        key_ids,
                    )
                    log.info("deletion.scheduled", subject=subject, rule=rule)

    # --- requesting -----------------------------------------------------------------------

    async def run_due(self, today: date | None = None, actor: str = "retention-scheduler") -> list[DeletionRequested]:
        """Destroy the keys of every deletion due by ``today`` and ask the owners to delete their rows."""
        today = today or self.clock.today()
        requested: list[DeletionRequested] = []
        due = await self.pool.fetch(
            "SELECT subject FROM retention.schedule WHERE executed_at IS NULL AND requested_at IS NULL "
            "AND due_on <= $1 ORDER BY due_on, subject",
            today,
        )
        for row in due:
            if req := await self._request_scheduled(row["subject"], actor):
                requested.append(req)
        if req := await self._request_inbound_staging(today, actor):
            requested.append(req)
        await self.flush_outbox()
        await self.refresh_gauges(today)
        return requested

    async def _request_scheduled(self, subject: str, actor: str) -> DeletionRequested | None:
        async with self.pool.acquire() as conn, conn.transaction():
            s = await conn.fetchrow(
                "SELECT * FROM retention.schedule WHERE subject=$1 AND executed_at IS NULL "
                "AND requested_at IS NULL FOR UPDATE",
                subject,
            )
            if s is None:
                return None
            live = await conn.fetch(
                "SELECT subject, rule, extract_ids, key_ids FROM retention.schedule "
                "WHERE executed_at IS NULL AND subject <> $1 AND rule = $2",
                subject,
                RULE_TRANSFER,
            )
            plan = plan_deletion(_scheduled(s), [_scheduled(r) for r in live])
            if plan.covered:  # the extract was delivered: the transfer's own deletion covers it, later
                await conn.execute("UPDATE retention.schedule SET executed_at=now() WHERE subject=$1", subject)
                return None
            await conn.execute("UPDATE retention.schedule SET requested_at=now() WHERE subject=$1", subject)
            return await self._request(
                conn,
                subject,
                s["rule"],
                s["due_on"],
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
        long-lived inbound key: ingest deletes them, with their staged records, a retention period
        after they last changed (a complete extract's records go as soon as it is ingested)."""
        subject = f"inbound-staging:{today.isoformat()}"
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT 1 FROM retention.requests WHERE subject=$1", subject):
                return None
            return await self._request(
                conn,
                subject,
                RULE_INBOUND_STAGING,
                today,
                "inbound-staging",
                actor,
                ("ingest",),
                staged_before=today - relativedelta(months=self.protocol.retention_months),
            )

    async def purge(self, party: str, actor: str) -> DeletionRequested:
        """A party leaves the protocol (§4.3, §11.3): delete everything received from, or destined for, it.

        Every record this system holds came from the provider and is destined for the recipient, so a
        named party (or ``all``) means all personal data held: every row and every data key."""
        known = {p.id for p in self.protocol.parties}
        if party != "all" and party not in known:
            raise ValueError(f"unknown party {party!r}; the protocol names {sorted(known)} (or use 'all')")
        subject = f"party:{party}:{self.clock.now().isoformat()}"
        async with self.pool.acquire() as conn, conn.transaction():
            keys = await live_keys(conn)
            await conn.execute("UPDATE retention.schedule SET requested_at=now() WHERE executed_at IS NULL")
            req = await self._request(
                conn,
                subject,
                RULE_PARTY_LEFT,
                self.clock.today(),
                "party-left",
                actor,
                OWNERS,
                extract_ids=[x for _, x in keys],
                key_ids=[k for k, _ in keys],
            )
            await audit(
                conn,
                actor,
                "data.purge_requested",
                subject,
                {"request_id": str(req.request_id), "party": party, "keys_destroyed": len(keys)},
                self.protocol.version,
            )
        log.warning("purge.requested", party=party, keys_destroyed=len(keys))
        await self.flush_outbox()
        return req

    async def _request(
        self,
        conn: asyncpg.Connection,
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
        destroyed = await destroy_keys(conn, targets.get("key_ids", []), f"retention:{subject}")
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
        await conn.execute(
            "INSERT INTO retention.requests(request_id, subject, rule, due_on, owners, key_ids_destroyed, "
            "keys_retained, requested_at) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8)",
            req.request_id,
            subject,
            rule,
            due_on,
            req.owners,
            destroyed,
            _json(keys_retained or {}),
            req.occurred_at,
        )
        await conn.execute(
            "INSERT INTO retention.requests_outbox(event_id, key, payload) VALUES ($1,$2,$3)",
            req.event_id,
            req.request_id.bytes,
            req.model_dump_json(),
        )
        if destroyed:
            await audit(
                conn,
                actor,
                "data_keys.destroyed",
                subject,
                {"request_id": str(req.request_id), "keys_destroyed": len(destroyed)},
                self.protocol.version,
            )
        log.info("deletion.requested", subject=subject, rule=rule, keys_destroyed=len(destroyed), owners=req.owners)
        return req

    # --- certifying ------------------------------------------------------------------------

    async def handle_confirmations(self, events: list[DeletionConfirmed]) -> list[DeletionCompleted]:
        """Record each owner's confirmation; certify a request once every owner has confirmed."""
        certs: list[DeletionCompleted] = []
        for e in events:
            async with self.pool.acquire() as conn, conn.transaction():
                req = await conn.fetchrow(
                    "SELECT * FROM retention.requests WHERE request_id=$1 FOR UPDATE", e.request_id
                )
                if req is None:
                    log.warning("deletion.unknown_confirmation", request_id=str(e.request_id), service=e.service)
                    continue
                await conn.execute(
                    "INSERT INTO retention.confirmations(request_id, service, rows_deleted) "
                    "VALUES ($1,$2,$3::jsonb) ON CONFLICT DO NOTHING",
                    e.request_id,
                    e.service,
                    _json(e.rows_deleted),
                )
                if req["completed_at"] is not None:
                    continue
                confirmed = {
                    r["service"]: json.loads(r["rows_deleted"])
                    for r in await conn.fetch(
                        "SELECT service, rows_deleted FROM retention.confirmations WHERE request_id=$1", e.request_id
                    )
                }
                if awaiting(req["owners"], confirmed):
                    continue
                if cert := await self._certify(conn, req, merge_counts(confirmed)):
                    certs.append(cert)
        if certs:
            await self.flush_outbox()
        return certs

    async def _certify(
        self, conn: asyncpg.Connection, req: asyncpg.Record, counts: dict[str, int]
    ) -> DeletionCompleted | None:
        subject, rule = req["subject"], req["rule"]
        if rule == RULE_INBOUND_STAGING and not any(counts.values()):
            await conn.execute(
                "UPDATE retention.requests SET completed_at=now() WHERE request_id=$1", req["request_id"]
            )
            return None  # nothing was staged that long: no certificate to keep
        now = self.clock.now()
        cert = DeletionCompleted(
            event_id=stable_id("deletion", subject),
            occurred_at=now,
            certificate_id=stable_id("certificate", subject),
            rule=rule,
            subject=subject,
            due_at=req["due_on"],
            executed_at=now,
            key_ids_destroyed=req["key_ids_destroyed"],
            rows_deleted=counts,
            protocol_version=self.protocol.version,
        )
        await conn.execute(
            "INSERT INTO retention.certificates(certificate_id, rule, subject, due_on, executed_at, key_ids_destroyed, "
            "keys_retained, rows_deleted, protocol_version) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9)",
            cert.certificate_id,
            rule,
            subject,
            req["due_on"],
            now,
            cert.key_ids_destroyed,
            req["keys_retained"],
            _json(counts),
            self.protocol.version,
        )
        await conn.execute(
            "UPDATE retention.requests SET completed_at=now(), certificate_id=$2 WHERE request_id=$1",
            req["request_id"],
            cert.certificate_id,
        )
        if rule == RULE_PARTY_LEFT:
            await conn.execute(
                "UPDATE retention.schedule SET executed_at=now(), certificate_id=$1 "
                "WHERE executed_at IS NULL AND requested_at <= $2",
                cert.certificate_id,
                req["requested_at"],
            )
        else:
            await conn.execute(
                "UPDATE retention.schedule SET executed_at=now(), certificate_id=$2 WHERE subject=$1",
                subject,
                cert.certificate_id,
            )
        await conn.execute(
            "INSERT INTO retention.outbox(event_id, key, payload) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
            cert.event_id,
            cert.certificate_id.bytes,
            cert.model_dump_json(),
        )
        await audit(
            conn,
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
        r = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE due_on >= $1) AS scheduled, count(*) FILTER (WHERE due_on < $1) AS overdue "
            "FROM retention.schedule WHERE executed_at IS NULL",
            today,
        )
        ops.DELETIONS_PENDING.labels("scheduled").set(r["scheduled"])
        ops.DELETIONS_PENDING.labels("overdue").set(r["overdue"])
        for service, n in (await self.overdue_confirmations()).items():
            ops.CONFIRMATIONS_OVERDUE.labels(service).set(n)

    async def overdue_confirmations(self) -> dict[str, int]:
        """Per owner: requests older than the confirmation timeout that it has not confirmed."""
        cutoff = self.clock.now() - self.confirmation_timeout
        rows = await self.pool.fetch(
            "SELECT r.owners, array_agg(c.service) FILTER (WHERE c.service IS NOT NULL) AS done "
            "FROM retention.requests r LEFT JOIN retention.confirmations c USING (request_id) "
            "WHERE r.completed_at IS NULL AND r.requested_at < $1 GROUP BY r.request_id",
            cutoff,
        )
        out = dict.fromkeys(OWNERS, 0)
        for r in rows:
            for service in awaiting(r["owners"], r["done"] or []):
                out[service] += 1
        return out

    async def flush_outbox(self) -> int:
        n = await flush_outbox(self.pool, "retention.outbox", self.publisher)
        if self.request_publisher is not None:
            n += await flush_outbox(self.pool, "retention.requests_outbox", self.request_publisher)
        return n


def _scheduled(r: asyncpg.Record) -> ScheduledDeletion:
    return ScheduledDeletion(r["subject"], r["rule"], list(r["extract_ids"]), list(r["key_ids"]))


def _json(v: Any) -> str:
    return json.dumps(v, default=str)
