"""Retention's tables (schedule, requests, confirmations, certificates, outboxes) and the key store's
retention functions, on one connection in one transaction: the SQL the use cases need, no decisions."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sais_shared.events import DeletionCompleted, DeletionRequested
from sais_shared.kafka import claim_new
from sais_shared.keystore import audit, destroy_keys, live_keys
from sais_shared.outbox import flush_outbox

from ..domain.plan import DeletionRequest, ScheduledDeletion


class PgUnitOfWork:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[RetentionRepository]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield RetentionRepository(conn)


class PgOutbox:
    """Certificates and deletion requests, each published after its transaction committed."""

    def __init__(self, pool: asyncpg.Pool, certificates, requests) -> None:
        self.pool, self.certificates, self.requests = pool, certificates, requests

    async def flush(self) -> int:
        n = await flush_outbox(self.pool, "retention.outbox", self.certificates)
        if self.requests is not None:
            n += await flush_outbox(self.pool, "retention.requests_outbox", self.requests)
        return n


def _scheduled(r: asyncpg.Record) -> ScheduledDeletion:
    return ScheduledDeletion(r["subject"], r["rule"], list(r["extract_ids"]), list(r["key_ids"]))


def _json(v: Any) -> str:
    return json.dumps(v, default=str)


class RetentionRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    # --- schedule ---------------------------------------------------------------------------

    async def claim_new(self, event_ids: Iterable[UUID]) -> set[UUID]:
        return await claim_new(self.conn, "retention.processed", event_ids)

    async def schedule(self, subject: str, rule: str, due_on: date, extract_ids: list, key_ids: list) -> None:
        """One row per subject, whatever the number of (re)deliveries of its event."""
        await self.conn.execute(
            "INSERT INTO retention.schedule(subject, rule, due_on, extract_ids, key_ids) "
            "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (subject) DO NOTHING",
            subject,
            rule,
            due_on,
            extract_ids,
            key_ids,
        )

    async def due_subjects(self, today: date) -> list[str]:
        rows = await self.conn.fetch(
            "SELECT subject FROM retention.schedule WHERE executed_at IS NULL AND requested_at IS NULL "
            "AND due_on <= $1 ORDER BY due_on, subject",
            today,
        )
        return [r["subject"] for r in rows]

    async def claim_due(self, subject: str) -> tuple[ScheduledDeletion, date] | None:
        """A scheduled deletion not yet requested, locked for this transaction; with its due date."""
        s = await self.conn.fetchrow(
            "SELECT * FROM retention.schedule WHERE subject=$1 AND executed_at IS NULL "
            "AND requested_at IS NULL FOR UPDATE",
            subject,
        )
        return (_scheduled(s), s["due_on"]) if s else None

    async def live_scheduled(self, rule: str, other_than: str) -> list[ScheduledDeletion]:
        rows = await self.conn.fetch(
            "SELECT subject, rule, extract_ids, key_ids FROM retention.schedule "
            "WHERE executed_at IS NULL AND subject <> $1 AND rule = $2",
            other_than,
            rule,
        )
        return [_scheduled(r) for r in rows]

    async def mark_executed(self, subject: str) -> None:
        await self.conn.execute("UPDATE retention.schedule SET executed_at=now() WHERE subject=$1", subject)

    async def mark_requested(self, subject: str | None) -> None:
        """One scheduled deletion requested, or (None) every one still pending (a party leaves)."""
        if subject is None:
            await self.conn.execute("UPDATE retention.schedule SET requested_at=now() WHERE executed_at IS NULL")
        else:
            await self.conn.execute("UPDATE retention.schedule SET requested_at=now() WHERE subject=$1", subject)

    # --- keys and audit ---------------------------------------------------------------------

    async def live_keys(self) -> list[tuple[UUID, UUID]]:
        return await live_keys(self.conn)

    async def destroy_keys(self, key_ids: Iterable[UUID], by: str) -> list[UUID]:
        return await destroy_keys(self.conn, key_ids, by)

    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None:
        await audit(self.conn, actor, action, subject, details, protocol_version)

    # --- requests and confirmations ---------------------------------------------------------

    async def request_exists(self, subject: str) -> bool:
        return bool(await self.conn.fetchval("SELECT 1 FROM retention.requests WHERE subject=$1", subject))

    async def add_request(
        self, req: DeletionRequested, due_on: date, destroyed: list[UUID], keys_retained: dict
    ) -> None:
        """The request and its event (outbox), in the caller's transaction."""
        await self.conn.execute(
            "INSERT INTO retention.requests(request_id, subject, rule, due_on, owners, key_ids_destroyed, "
            "keys_retained, requested_at) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8)",
            req.request_id,
            req.subject,
            req.rule,
            due_on,
            req.owners,
            destroyed,
            _json(keys_retained),
            req.occurred_at,
        )
        await self.conn.execute(
            "INSERT INTO retention.requests_outbox(event_id, key, payload) VALUES ($1,$2,$3)",
            req.event_id,
            req.request_id.bytes,
            req.model_dump_json(),
        )

    async def claim_request(self, request_id: UUID) -> DeletionRequest | None:
        """A request, locked for this transaction."""
        r = await self.conn.fetchrow("SELECT * FROM retention.requests WHERE request_id=$1 FOR UPDATE", request_id)
        if r is None:
            return None
        return DeletionRequest(
            **{k: r[k] for k in DeletionRequest.__dataclass_fields__ if k != "keys_retained"},
            keys_retained=json.loads(r["keys_retained"]),
        )

    async def add_confirmation(self, request_id: UUID, service: str, rows_deleted: dict) -> None:
        await self.conn.execute(
            "INSERT INTO retention.confirmations(request_id, service, rows_deleted) "
            "VALUES ($1,$2,$3::jsonb) ON CONFLICT DO NOTHING",
            request_id,
            service,
            _json(rows_deleted),
        )

    async def confirmations(self, request_id: UUID) -> dict[str, dict]:
        rows = await self.conn.fetch(
            "SELECT service, rows_deleted FROM retention.confirmations WHERE request_id=$1", request_id
        )
        return {r["service"]: json.loads(r["rows_deleted"]) for r in rows}

    async def close_request(self, request_id: UUID, certificate_id: UUID | None) -> None:
        await self.conn.execute(
            "UPDATE retention.requests SET completed_at=now(), certificate_id=$2 WHERE request_id=$1",
            request_id,
            certificate_id,
        )

    # --- certificates -----------------------------------------------------------------------

    async def add_certificate(self, cert: DeletionCompleted, keys_retained: dict[str, Any]) -> None:
        """The certificate and its event (outbox)."""
        await self.conn.execute(
            "INSERT INTO retention.certificates(certificate_id, rule, subject, due_on, executed_at, key_ids_destroyed, "
            "keys_retained, rows_deleted, protocol_version) VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9)",
            cert.certificate_id,
            cert.rule,
            cert.subject,
            cert.due_at,
            cert.executed_at,
            cert.key_ids_destroyed,
            _json(keys_retained),
            _json(cert.rows_deleted),
            cert.protocol_version,
        )
        await self.conn.execute(
            "INSERT INTO retention.outbox(event_id, key, payload) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
            cert.event_id,
            cert.certificate_id.bytes,
            cert.model_dump_json(),
        )

    async def certify_scheduled(
        self, certificate_id: UUID, *, subject: str | None = None, requested_by: datetime | None = None
    ) -> None:
        """Mark executed the scheduled deletion ``subject``, or every one requested by ``requested_by``."""
        if subject is not None:
            await self.conn.execute(
                "UPDATE retention.schedule SET executed_at=now(), certificate_id=$2 WHERE subject=$1",
                subject,
                certificate_id,
            )
        else:
            await self.conn.execute(
                "UPDATE retention.schedule SET executed_at=now(), certificate_id=$1 "
                "WHERE executed_at IS NULL AND requested_at <= $2",
                certificate_id,
                requested_by,
            )

    # --- watching ---------------------------------------------------------------------------

    async def pending_counts(self, today: date) -> tuple[int, int]:
        """(scheduled, overdue) deletions not yet executed."""
        r = await self.conn.fetchrow(
            "SELECT count(*) FILTER (WHERE due_on >= $1) AS scheduled, count(*) FILTER (WHERE due_on < $1) AS overdue "
            "FROM retention.schedule WHERE executed_at IS NULL",
            today,
        )
        return r["scheduled"], r["overdue"]

    async def unconfirmed(self, requested_before: datetime) -> list[tuple[list[str], list[str]]]:
        """(owners, owners that confirmed) of every open request older than the cut-off."""
        rows = await self.conn.fetch(
            "SELECT r.owners, array_agg(c.service) FILTER (WHERE c.service IS NOT NULL) AS done "
            "FROM retention.requests r LEFT JOIN retention.confirmations c USING (request_id) "
            "WHERE r.completed_at IS NULL AND r.requested_at < $1 GROUP BY r.request_id",
            requested_before,
        )
        return [(list(r["owners"]), list(r["done"] or [])) for r in rows]
