"""Retention use cases: schedule deletions from delivery (and ingest) events, run due ones.

Deleting a transfer removes, in one transaction, every row the services hold for its extracts
and destroys the extracts' data keys, which makes every copy of their events in Kafka —
dead-letter topics included — unreadable (crypto-shredding). Data that a later, still-live
transfer also carried is kept until that transfer's own deletion; the certificate says so.
Certificates hold ids and counts only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from dateutil.relativedelta import relativedelta
from sais_shared import ops
from sais_shared.clock import Clock
from sais_shared.events import (
    DeletionCompleted,
    DeliveryCompleted,
    ExtractCompleted,
    stable_id,
)
from sais_shared.kafka import claim_new
from sais_shared.keystore import audit, destroy_keys
from sais_shared.outbox import flush_outbox
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef

from ..domain.schedule import due_date

log = structlog.get_logger("sais.retention")

RULE_TRANSFER = "isp-11.1-transfer-plus-retention"
RULE_UNDELIVERED = "undelivered-extract-ingest-plus-retention"
RULE_PARTY_LEFT = "isp-11.3-party-left"
RULE_INBOUND_STAGING = "inbound-staging-plus-retention"


@dataclass
class RetentionService(FollowsProtocol):
    pool: asyncpg.Pool
    protocol_ref: ProtocolRef
    clock: Clock
    publisher: Any


    async def handle_deliveries(self, events: list[DeliveryCompleted]) -> None:
        """A transfer is deleted at its transfer date + the retention period (ISP §11.1)."""
        await self._schedule(events, lambda e: (f"batch:{e.batch_id}", RULE_TRANSFER, e.transferred_at.date(),
                                                e.extract_ids, e.key_ids))

    async def handle_extracts(self, events: list[ExtractCompleted]) -> None:
        """An extract never delivered is deleted at its ingest date + the retention period."""
        await self._schedule(events, lambda e: (f"extract:{e.extract_id}", RULE_UNDELIVERED, e.occurred_at.date(),
                                                [e.extract_id], [e.key_id]))

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
                        subject, rule, due_date(start, self.protocol.retention_months), extract_ids, key_ids)
                    log.info("deletion.scheduled", subject=subject, rule=rule)

    async def run_due(self, today: date | None = None, actor: str = "retention-scheduler") -> list[DeletionCompleted]:
        today = today or self.clock.today()
        done: list[DeletionCompleted] = []
        due = await self.pool.fetch(
            "SELECT subject FROM retention.schedule WHERE executed_at IS NULL AND due_on <= $1 ORDER BY due_on, subject",
            today)
        for row in due:
            cert = await self._delete(row["subject"], today, actor)
            if cert:
                done.append(cert)
                ops.DELETIONS.labels(cert.rule).inc()
        if cert := await self._purge_inbound_staging(today, actor):
            done.append(cert)
            ops.DELETIONS.labels(cert.rule).inc()
        await self.flush_outbox()
        await self.refresh_gauges(today)
        return done

    async def refresh_gauges(self, today: date) -> None:
        """Pending deletions: due today or later (scheduled) and past due (overdue: an alert)."""
        r = await self.pool.fetchrow(
            "SELECT count(*) FILTER (WHERE due_on >= $1) AS scheduled, count(*) FILTER (WHERE due_on < $1) AS overdue "
            "FROM retention.schedule WHERE executed_at IS NULL", today)
        ops.DELETIONS_PENDING.labels("scheduled").set(r["scheduled"])
        ops.DELETIONS_PENDING.labels("overdue").set(r["overdue"])

    async def _delete(self, subject: str, today: date, actor: str) -> DeletionCompleted | None:
        async with self.pool.acquire() as conn, conn.transaction():
            s = await conn.fetchrow(
                "SELECT * FROM retention.schedule WHERE subject=$1 AND executed_at IS NULL FOR UPDATE", subject)
            if s is None:
                return None
            # Extracts and keys that another live transfer also carried stay until that one is due.
            live = await conn.fetch(
                "SELECT subject, extract_ids, key_ids FROM retention.schedule WHERE executed_at IS NULL "
                "AND subject <> $1 AND rule = $2 AND (extract_ids && $3 OR key_ids && $4)",
                subject, RULE_TRANSFER, s["extract_ids"], s["key_ids"])
            if s["rule"] == RULE_UNDELIVERED and live:
                # The extract was delivered: the transfer's own deletion covers it, later.
                await conn.execute("UPDATE retention.schedule SET executed_at=now() WHERE subject=$1", subject)
                return None
            kept_extracts = {x for r in live for x in r["extract_ids"]}
            kept_keys = {k: r["subject"] for r in live for k in r["key_ids"]}
            extracts = [x for x in s["extract_ids"] if x not in kept_extracts]
            keys = [k for k in s["key_ids"] if k not in kept_keys]
            counts = await purge_rows(conn, extracts, keys)
            batch_id = UUID(subject.split(":", 1)[1]) if subject.startswith("batch:") else None
            if batch_id and await conn.fetchval("SELECT to_regclass('delivery.batches')"):
                await conn.execute("UPDATE delivery.batches SET purged_at=now(), message=NULL WHERE batch_id=$1",
                                   batch_id)
                await conn.execute("DELETE FROM delivery.batch_members WHERE batch_id=$1", batch_id)
            destroyed = await destroy_keys(conn, keys, f"retention:{subject}")
            now = self.clock.now()
            cert = DeletionCompleted(
                event_id=stable_id("deletion", subject), occurred_at=now,
                certificate_id=stable_id("certificate", subject), rule=s["rule"], subject=subject,
                due_at=s["due_on"], executed_at=now, key_ids_destroyed=destroyed, rows_deleted=counts,
                protocol_version=self.protocol.version)
            await conn.execute(
                "INSERT INTO retention.certificates(certificate_id, rule, subject, due_on, executed_at, "
                "key_ids_destroyed, keys_retained, rows_deleted, protocol_version) "
                "VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9)",
                cert.certificate_id, cert.rule, subject, s["due_on"], now, destroyed,
                _json({str(k): v for k, v in kept_keys.items() if k in s["key_ids"]}), _json(counts),
                self.protocol.version)
            await conn.execute("UPDATE retention.schedule SET executed_at=now(), certificate_id=$2 WHERE subject=$1",
                               subject, cert.certificate_id)
            await conn.execute("INSERT INTO retention.outbox(event_id, key, payload) VALUES ($1,$2,$3)",
                               cert.event_id, cert.certificate_id.bytes, cert.model_dump_json())
            await audit(conn, actor, "data.deleted", subject,
                        {"certificate_id": str(cert.certificate_id), "rule": s["rule"], "keys_destroyed": len(destroyed),
                         "rows_deleted": counts}, self.protocol.version)
        log.info("deletion.completed", subject=subject, keys_destroyed=len(destroyed), rows=counts)
        return cert

    async def _purge_inbound_staging(self, today: date, actor: str) -> DeletionCompleted | None:
        """Inbound extracts that never completed (or were refused) are still sealed to ingest's
        long-lived inbound key: deleted, with their staged records, a retention period after they
        last changed. (A complete extract's records are deleted as soon as it is ingested.)"""
        cutoff = today - relativedelta(months=self.protocol.retention_months)
        async with self.pool.acquire() as conn, conn.transaction():
            if await conn.fetchval("SELECT to_regclass('ingest.inbound_extracts')") is None:
                return None
            records = await conn.fetchval(
                "SELECT count(*) FROM ingest.inbound_records r JOIN ingest.inbound_extracts e USING (extract_ref) "
                "WHERE e.status <> 'ingested' AND e.updated_at::date < $1", cutoff)
            gone = await conn.fetch("DELETE FROM ingest.inbound_extracts WHERE status <> 'ingested' AND "
                                    "updated_at::date < $1 RETURNING extract_ref", cutoff)
            if not gone:
                return None
            subject = f"inbound-staging:{today.isoformat()}"
            counts = {"ingest.inbound_extracts": len(gone), "ingest.inbound_records": records}
            return await self._certify(conn, subject, RULE_INBOUND_STAGING, today, [], {}, counts, actor)

    async def _certify(self, conn: asyncpg.Connection, subject: str, rule: str, due_on: date, destroyed: list,
                       kept: dict, counts: dict, actor: str) -> DeletionCompleted:
        now = self.clock.now()
        cert = DeletionCompleted(
            event_id=stable_id("deletion", subject), occurred_at=now, certificate_id=stable_id("certificate", subject),
            rule=rule, subject=subject, due_at=due_on, executed_at=now, key_ids_destroyed=destroyed,
            rows_deleted=counts, protocol_version=self.protocol.version)
        await conn.execute(
            "INSERT INTO retention.certificates(certificate_id, rule, subject, due_on, executed_at, key_ids_destroyed, "
            "keys_retained, rows_deleted, protocol_version) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9) "
            "ON CONFLICT DO NOTHING", cert.certificate_id, rule, subject, due_on, now, destroyed, _json(kept),
            _json(counts), self.protocol.version)
        await conn.execute("INSERT INTO retention.outbox(event_id, key, payload) VALUES ($1,$2,$3) ON CONFLICT "
                           "DO NOTHING", cert.event_id, cert.certificate_id.bytes, cert.model_dump_json())
        await audit(conn, actor, "data.deleted", subject,
                    {"certificate_id": str(cert.certificate_id), "rule": rule, "keys_destroyed": len(destroyed),
                     "rows_deleted": counts}, self.protocol.version)
        log.info("deletion.completed", subject=subject, keys_destroyed=len(destroyed), rows=counts)
        return cert

    async def purge(self, party: str, actor: str) -> DeletionCompleted:
        """A party leaves the protocol (§4.3, §11.3): delete everything received from, or destined for, it.

        Every record this system holds came from the provider and is destined for the recipient, so a
        named party (or ``all``) means all personal data held: every row and every data key."""
        known = {p.id for p in self.protocol.parties}
        if party != "all" and party not in known:
            raise ValueError(f"unknown party {party!r}; the protocol names {sorted(known)} (or use 'all')")
        subject = f"party:{party}:{self.clock.now().isoformat()}"
        async with self.pool.acquire() as conn, conn.transaction():
            keys = await conn.fetch("SELECT key_id, extract_id FROM shared.data_keys WHERE wrapped IS NOT NULL")
            extracts = [r["extract_id"] for r in keys]
            counts = await purge_rows(conn, extracts, [r["key_id"] for r in keys])
            if await conn.fetchval("SELECT to_regclass('ingest.inbound_extracts')"):
                counts["ingest.inbound_records"] = int((await conn.execute(
                    "DELETE FROM ingest.inbound_records")).rsplit(" ", 1)[1])
                counts["ingest.inbound_extracts"] = int((await conn.execute(
                    "DELETE FROM ingest.inbound_extracts WHERE status <> 'ingested'")).rsplit(" ", 1)[1])
            if await conn.fetchval("SELECT to_regclass('delivery.batches')"):
                await conn.execute("UPDATE delivery.batches SET purged_at=now(), message=NULL WHERE purged_at IS NULL")
                await conn.execute("DELETE FROM delivery.batch_members")
            destroyed = await destroy_keys(conn, [r["key_id"] for r in keys], f"purge:{party}")
            now = self.clock.now()
            cert = DeletionCompleted(
                event_id=stable_id("deletion", subject), occurred_at=now, certificate_id=stable_id("certificate", subject),
                rule=RULE_PARTY_LEFT, subject=subject, due_at=now.date(), executed_at=now,
                key_ids_destroyed=destroyed, rows_deleted=counts, protocol_version=self.protocol.version)
            await conn.execute(
                "INSERT INTO retention.certificates(certificate_id, rule, subject, due_on, executed_at, "
                "key_ids_destroyed, keys_retained, rows_deleted, protocol_version) "
                "VALUES ($1,$2,$3,$4,$5,$6,'{}'::jsonb,$7::jsonb,$8)",
                cert.certificate_id, cert.rule, subject, now.date(), now, destroyed, _json(counts),
                self.protocol.version)
            await conn.execute("UPDATE retention.schedule SET executed_at=now(), certificate_id=$1 "
                               "WHERE executed_at IS NULL", cert.certificate_id)
            await conn.execute("INSERT INTO retention.outbox(event_id, key, payload) VALUES ($1,$2,$3)",
                               cert.event_id, cert.certificate_id.bytes, cert.model_dump_json())
            await audit(conn, actor, "data.purged", subject,
                        {"certificate_id": str(cert.certificate_id), "party": party, "keys_destroyed": len(destroyed),
                         "rows_deleted": counts}, self.protocol.version)
        log.warning("purge.completed", party=party, keys_destroyed=len(destroyed))
        await self.flush_outbox()
        return cert

    async def flush_outbox(self) -> int:
        return await flush_outbox(self.pool, "retention.outbox", self.publisher)


async def purge_rows(conn: asyncpg.Connection, extract_ids: list[UUID], key_ids: list[UUID]) -> dict[str, int]:
    """Delete every row holding personal data of these extracts, in every service's tables."""
    counts: dict[str, int] = {}

    async def run(name: str, sql: str, *args) -> None:
        if await conn.fetchval("SELECT to_regclass($1)", name) is None:
            return  # that service has never run here: it holds nothing
        status = await conn.execute(sql, *args)
        counts[name] = counts.get(name, 0) + int(status.rsplit(" ", 1)[1])

    pupils = []
    if await conn.fetchval("SELECT to_regclass('eligibility.records')") is not None:
        pupils = [r["pupil_id"] for r in await conn.fetch(
            "SELECT DISTINCT pupil_id FROM eligibility.records WHERE extract_id = ANY($1)", extract_ids)]
    await run("eligibility.records", "DELETE FROM eligibility.records WHERE extract_id = ANY($1)", extract_ids)
    # A child with no record left is gone from eligibility entirely.
    orphans = [r["p"] for r in await conn.fetch(
        "SELECT p FROM unnest($1::uuid[]) p WHERE NOT EXISTS "
        "(SELECT 1 FROM eligibility.records r WHERE r.pupil_id = p)", pupils)] if pupils else []
    await run("eligibility.cohort", "DELETE FROM eligibility.cohort WHERE pupil_id = ANY($1)", orphans)
    await run("eligibility.findings", "DELETE FROM eligibility.findings WHERE pupil_id = ANY($1)", orphans)
    await run("delivery.members", "DELETE FROM delivery.members WHERE key_id = ANY($1)", key_ids)
    await run("ingest.row_problems", "DELETE FROM ingest.row_problems WHERE extract_id = ANY($1)", extract_ids)
    await run("ingest.dip_samples", "DELETE FROM ingest.dip_samples WHERE extract_id = ANY($1)", extract_ids)
    await run("ingest.row_keys", "DELETE FROM ingest.row_keys WHERE extract_id = ANY($1)", extract_ids)
    await run("ingest.extracts", "UPDATE ingest.extracts SET purged_at=now() WHERE extract_id = ANY($1) "
              "AND purged_at IS NULL", extract_ids)
    return counts


def _json(v) -> str:
    return json.dumps(v, default=str)
