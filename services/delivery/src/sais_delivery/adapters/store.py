"""Delivery's tables (members, batches and their parts, control, breaches, outbox) and what it reads
of the shared schema: the SQL of delivery's use cases, one method per step, each step its own
transaction. Nothing here decides; the service layer does (``service_layer/deliver.py``, ``breach.py``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import date, datetime
from typing import Any
from uuid import UUID

import asyncpg
from sais_shared.events import DeliveryCompleted
from sais_shared.keystore import audit
from sais_shared.outbox import flush_outbox

# The members a window delivers ($1 academic year, $2 the window's sources: those the child first came
# in through), and the fingerprint of their content: a batch is the same batch exactly when this is.
WINDOW_MEMBERS = "academic_year=$1 AND status='active' AND window_source = ANY($2)"
CONTENT_SHA256 = (
    "encode(sha256(convert_to(coalesce(string_agg(programme_key || '|' || pupil_id || '|' || revision, "
    "E'\\n' ORDER BY programme_key, pupil_id), ''), 'UTF8')), 'hex')"
)
# A batch's columns, less pupil_ids: a county's batch lists a million ids, which delivery never needs.
BATCH = (
    "batch_id, window_name, academic_year, recipient, message_id, status, content_sha256, counts, files, "
    "extract_ids, key_ids, replaces_batch, protocol_version, protocol_sha256, delete_by, attempts, last_error, prepared_at, "
    "sent_at, smtp_reply, purged_at, part_count"
)


class WindowSnapshot:
    """One consistent view of a window's members (a REPEATABLE READ transaction) in which a batch is
    planned and recorded."""

    def __init__(self, conn: asyncpg.Connection, academic_year: str, sources: list[str]) -> None:
        self.conn, self.args = conn, (academic_year, sources)

    async def key_ids(self) -> list[UUID]:
        rows = await self.conn.fetch(f"SELECT DISTINCT key_id FROM delivery.members WHERE {WINDOW_MEMBERS}", *self.args)
        return [r["key_id"] for r in rows]

    async def members_by_school(self) -> AsyncIterator[asyncpg.Record]:
        """Every member, school by school, streamed (server-side cursor)."""
        async for m in self.conn.cursor(
            f"SELECT * FROM delivery.members WHERE {WINDOW_MEMBERS} ORDER BY school_dfe, programme_key, pupil_id",
            *self.args,
            prefetch=2000,
        ):
            yield m

    async def summary(self) -> tuple[str, list[UUID], list[UUID], dict[str, int]]:
        """(content fingerprint, key ids, extract ids, members per programme)."""
        stats = await self.conn.fetchrow(
            f"SELECT {CONTENT_SHA256} AS content, array_agg(DISTINCT key_id) AS key_ids FROM delivery.members "
            f"WHERE {WINDOW_MEMBERS}",
            *self.args,
        )
        extract_ids = [
            r["x"]
            for r in await self.conn.fetch(
                f"SELECT DISTINCT x FROM delivery.members, unnest(extract_ids) x WHERE {WINDOW_MEMBERS} ORDER BY 1",
                *self.args,
            )
        ]
        counts = {
            r["programme_key"]: r["n"]
            for r in await self.conn.fetch(
                f"SELECT programme_key, count(*) n FROM delivery.members WHERE {WINDOW_MEMBERS} GROUP BY 1 ORDER BY 1",
                *self.args,
            )
        }
        return stats["content"], sorted(stats["key_ids"], key=str), extract_ids, counts

    async def record_batch(self, batch: dict[str, Any], parts: list[tuple[int, str, list[dict]]]) -> bool:
        """The batch, its parts (number, Message-ID, segments) and which child goes in which part;
        False when the batch was already recorded."""
        academic_year, sources = self.args
        inserted = await self.conn.fetchval(
            "INSERT INTO delivery.batches(batch_id, window_name, academic_year, recipient, message_id, status, "
            "content_sha256, counts, files, extract_ids, key_ids, pupil_ids, replaces_batch, protocol_version, "
            "protocol_sha256, delete_by, prepared_at, part_count) SELECT $1,$2,$3,$4,$5,'prepared',$6,$7::jsonb,"
            "'[]'::jsonb,$8,$9, (SELECT coalesce(array_agg(DISTINCT pupil_id), '{}') FROM delivery.members "
            "WHERE academic_year=$3 AND status='active' AND window_source = ANY($15)), $10,$11,$16,$12,$13,$14 "
            "ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
            batch["batch_id"], batch["window"], academic_year, batch["recipient"], batch["message_id"],
            batch["content"], json.dumps(batch["counts"]), batch["extract_ids"], batch["key_ids"], batch["replaces"],
            batch["protocol_version"], batch["delete_by"], batch["prepared_at"], len(parts), sources,
            batch["protocol_sha256"],
        )  # fmt: skip
        if not inserted:
            return False
        batch_id = batch["batch_id"]
        await self.conn.executemany(
            "INSERT INTO delivery.batch_parts(batch_id, part_no, message_id, status, segments) "
            "VALUES ($1, $2, $3, 'prepared', $4::jsonb)",
            [(batch_id, i, message_id, json.dumps(segments)) for i, message_id, segments in parts],
        )
        flat = [
            (g["school_dfe"], i, g["offset"], g["offset"] + g["limit"] if g["limit"] else 2**31 - 1)
            for i, _, segments in parts
            for g in segments
        ]
        await self.conn.execute(
            "INSERT INTO delivery.batch_members(batch_id, part_no, programme_key, pupil_id, revision) "
            "SELECT $3, p.part_no, m.programme_key, m.pupil_id, m.revision FROM "
            "(SELECT programme_key, pupil_id, revision, school_dfe, row_number() OVER (PARTITION BY school_dfe "
            f"ORDER BY programme_key, pupil_id) - 1 AS i FROM delivery.members WHERE {WINDOW_MEMBERS}) m "
            "JOIN unnest($4::text[], $5::int[], $6::int[], $7::int[]) AS p(school_dfe, part_no, lo, hi) "
            "ON p.school_dfe = m.school_dfe AND m.i >= p.lo AND m.i < p.hi",
            *self.args, batch_id, [f[0] for f in flat], [f[1] for f in flat], [f[2] for f in flat],
            [f[3] for f in flat],
        )  # fmt: skip
        return True

    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None:
        await audit(self.conn, actor, action, subject, details, protocol_version)


class DeliveryStore:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None:
        await audit(self.pool, actor, action, subject, details, protocol_version)

    async def installation_id(self) -> UUID:
        return await self.pool.fetchval("SELECT installation_id FROM shared.installation")

    async def batch_counts(self) -> tuple[dict[str, int], int]:
        """Batches by status, and parts whose send was interrupted (status sending)."""
        by_status = {r["status"]: r["n"] for r in await self.pool.fetch(
            "SELECT status, count(*) n FROM delivery.batches GROUP BY status")}  # fmt: skip
        sending = await self.pool.fetchval("SELECT count(*) FROM delivery.batch_parts WHERE status='sending'")
        return by_status, sending

    async def school_register(self, dfes: set[str]) -> dict[str, tuple[str, str]]:
        rows = await self.pool.fetch("SELECT dfe, urn, status FROM shared.schools WHERE dfe = ANY($1)", list(dfes))
        return {r["dfe"]: (r["urn"], r["status"]) for r in rows}

    async def coverage_gaps(self, academic_year: str, protocol_id: str, protocol_version: str) -> list[str] | None:
        gaps = await self.pool.fetchval(
            "SELECT gaps FROM delivery.coverage WHERE academic_year=$1 AND protocol_id=$2 AND protocol_version=$3",
            academic_year,
            protocol_id,
            protocol_version,
        )
        return None if gaps is None else json.loads(gaps)

    # --- sharing switch ---------------------------------------------------------------------

    async def sharing(self) -> tuple[bool, str | None]:
        r = await self.pool.fetchrow("SELECT suspended, reason FROM delivery.control WHERE id=1")
        return bool(r["suspended"]), r["reason"]

    async def set_sharing(self, suspended: bool, reason: str, actor: str, protocol_version: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery.control SET suspended=$1, reason=$2, changed_by=$3, changed_at=now() WHERE id=1",
                suspended, reason, actor,
            )  # fmt: skip
            await audit(conn, actor, "sharing.suspended" if suspended else "sharing.resumed", "sharing",
                        {"reason": reason}, protocol_version)  # fmt: skip

    # --- a window ---------------------------------------------------------------------------

    async def pending_batch(self, window: str, academic_year: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT batch_id, status FROM delivery.batches WHERE window_name=$1 AND academic_year=$2 "
            "AND status IN ('prepared', 'sending', 'failed') ORDER BY prepared_at DESC LIMIT 1",
            window, academic_year,
        )  # fmt: skip

    async def window_content(self, academic_year: str, sources: list[str]) -> tuple[int, str]:
        """(members, content fingerprint) of a window now."""
        r = await self.pool.fetchrow(
            f"SELECT count(*) AS n, {CONTENT_SHA256} AS content FROM delivery.members WHERE {WINDOW_MEMBERS}",
            academic_year, sources,
        )  # fmt: skip
        return r["n"], r["content"]

    async def extracts_received_before(self, academic_year: str, sources: list[str], before: datetime) -> list[str]:
        rows = await self.pool.fetch(
            f"SELECT DISTINCT x FROM delivery.members, unnest(extract_ids) x WHERE {WINDOW_MEMBERS} "
            "AND received_at < $3 ORDER BY 1",
            academic_year, sources, before,
        )  # fmt: skip
        return [str(r["x"]) for r in rows]

    async def last_sent(self, window: str, academic_year: str, recipient: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT batch_id, content_sha256 FROM delivery.batches "
            "WHERE window_name=$1 AND academic_year=$2 AND recipient=$3 AND status='sent' "
            "ORDER BY sent_at DESC LIMIT 1",
            window, academic_year, recipient,
        )  # fmt: skip

    @asynccontextmanager
    async def snapshot(self, academic_year: str, sources: list[str]) -> AsyncIterator[WindowSnapshot]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
            yield WindowSnapshot(conn, academic_year, sources)

    # --- a batch and its parts ----------------------------------------------------------------

    async def batch(self, batch_id: UUID) -> asyncpg.Record | None:
        return await self.pool.fetchrow(f"SELECT {BATCH} FROM delivery.batches WHERE batch_id=$1", batch_id)

    async def parts(self, batch_id: UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch("SELECT * FROM delivery.batch_parts WHERE batch_id=$1 ORDER BY part_no", batch_id)

    async def count_parts(self, batch_id: UUID, *, status: str, negate: bool = False) -> int:
        op = "<>" if negate else "="
        return await self.pool.fetchval(
            f"SELECT count(*) FROM delivery.batch_parts WHERE batch_id=$1 AND status {op} $2", batch_id, status
        )

    async def reopen_failed_parts(self, batch_id: UUID) -> None:
        await self.pool.execute(
            "UPDATE delivery.batch_parts SET status='prepared' WHERE batch_id=$1 AND status='failed'", batch_id
        )

    async def drop_batch(self, batch_id: UUID, actor: str, reason: str, protocol_version: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM delivery.batches WHERE batch_id=$1", batch_id)
            await audit(conn, actor, "batch.replanned", f"batch:{batch_id}", {"reason": reason}, protocol_version)

    async def part_members(self, batch_id: UUID, part_no: int, academic_year: str) -> AsyncIterator[asyncpg.Record]:
        """The members of one part, streamed (server-side cursor, one transaction)."""
        async with self.pool.acquire() as conn, conn.transaction():
            async for m in conn.cursor(
                "SELECT m.* FROM delivery.batch_members bm JOIN delivery.members m ON m.academic_year=$3 "
                "AND m.programme_key=bm.programme_key AND m.pupil_id=bm.pupil_id AND m.status='active' "
                "WHERE bm.batch_id=$1 AND bm.part_no=$2 ORDER BY m.programme_key, m.pupil_id",
                batch_id, part_no, academic_year, prefetch=2000,
            ):  # fmt: skip
                yield m

    async def widen_batch(self, batch_id: UUID, key_ids: list[UUID], extract_ids: list[UUID]) -> None:
        await self.pool.execute(
            "UPDATE delivery.batches SET key_ids = ARRAY(SELECT DISTINCT k FROM unnest(key_ids || $2::uuid[]) k ORDER BY k), "
            "extract_ids = ARRAY(SELECT DISTINCT x FROM unnest(extract_ids || $3::uuid[]) x ORDER BY x) "
            "WHERE batch_id=$1",
            batch_id,
            key_ids,
            extract_ids,
        )

    async def claim_part(self, batch_id: UUID, part_no: int, at: datetime, meta: dict) -> bool:
        """Mark a prepared part as being sent (and its batch); False when it is no longer prepared."""
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = await conn.execute(
                "UPDATE delivery.batch_parts SET status='sending', attempts=attempts+1, attempted_at=$3, "
                "counts=$4::jsonb, files=$5::jsonb, size_bytes=$6 WHERE batch_id=$1 AND part_no=$2 AND "
                "status='prepared'",
                batch_id, part_no, at, json.dumps(meta["counts"]), json.dumps(meta["files"]), meta["size_bytes"],
            )  # fmt: skip
            await conn.execute(
                "UPDATE delivery.batches SET status='sending', attempts=attempts+1 WHERE batch_id=$1", batch_id
            )
        return claimed == "UPDATE 1"

    async def part_error(self, batch_id: UUID, part_no: int, error: str) -> None:
        await self.pool.execute(
            "UPDATE delivery.batch_parts SET last_error=$3 WHERE batch_id=$1 AND part_no=$2", batch_id, part_no, error
        )

    async def part_sent(self, batch_id: UUID, part_no: int, at: datetime, reply: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery.batch_parts SET status='sent', sent_at=$3, smtp_reply=$4, "
                "last_error=NULL WHERE batch_id=$1 AND part_no=$2",
                batch_id, part_no, at, reply[:500],
            )  # fmt: skip
            await conn.execute(
                "UPDATE delivery.batches SET status='prepared' WHERE batch_id=$1 AND status='sending'", batch_id
            )

    async def set_part(self, batch_id: UUID, part_no: int, status: str, error: str) -> None:
        """A part and its batch take ``status`` together, with the reason."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery.batch_parts SET status=$3, last_error=$4 WHERE batch_id=$1 AND part_no=$2",
                batch_id, part_no, status, error[:500],
            )  # fmt: skip
            await conn.execute(
                "UPDATE delivery.batches SET status=$2, last_error=$3 WHERE batch_id=$1", batch_id, status, error[:500]
            )

    async def finish_batch(
        self, batch_id: UUID, *, reply: str, delete_by_of: Callable[[datetime], date],
        event_of: Callable[[asyncpg.Record, list[asyncpg.Record], datetime, date, list[dict]], DeliveryCompleted],
        actor: str,
    ) -> tuple[asyncpg.Record, list[asyncpg.Record]] | None:  # fmt: skip
        """Every part accepted: the batch is sent, with its event (outbox) and audit, in one transaction.
        None when a part is not yet accepted or the batch is not awaiting a result."""
        async with self.pool.acquire() as conn, conn.transaction():
            parts = await conn.fetch("SELECT * FROM delivery.batch_parts WHERE batch_id=$1 ORDER BY part_no", batch_id)
            if not parts or any(p["status"] != "sent" for p in parts):
                return None
            transferred = min(p["sent_at"] for p in parts)
            delete_by = delete_by_of(transferred)
            files = [
                f
                for p in parts
                for f in json.loads(p["files"])
                if not f["name"].endswith(".json") and f["name"] != "field-definitions.csv"
            ]
            b = await conn.fetchrow(
                "UPDATE delivery.batches SET status='sent', sent_at=$2, smtp_reply=$3, message=NULL, last_error=NULL, "
                f"files=$4::jsonb, delete_by=$5 WHERE batch_id=$1 AND status IN ('sending', 'prepared') "
                f"RETURNING {BATCH}",
                batch_id, transferred, reply[:500], json.dumps(files), delete_by,
            )  # fmt: skip
            if b is None:
                return None
            event = event_of(b, parts, transferred, delete_by, files)
            await conn.execute(
                "INSERT INTO delivery.outbox(event_id, key, payload) VALUES ($1,$2,$3)",
                event.event_id, batch_id.bytes, event.model_dump_json(),
            )  # fmt: skip
            await audit(
                conn, actor, "batch.sent", f"batch:{batch_id}",
                {"recipient": b["recipient"], "message_ids": [p["message_id"] for p in parts],
                 "counts": json.loads(b["counts"]), "protocol_sha256": b["protocol_sha256"]},
                b["protocol_version"],
            )  # fmt: skip
        return b, parts

    async def part_summaries(self, batch_id: UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT part_no, message_id, status, size_bytes, counts FROM "
            "delivery.batch_parts WHERE batch_id=$1 ORDER BY part_no",
            batch_id,
        )

    async def recent_batches(self, limit: int = 20) -> list[dict]:
        """The newest batches, each with its parts (what `sais delivery status` shows an operator)."""
        rows = await self.pool.fetch(
            "SELECT b.batch_id, b.window_name, b.academic_year, b.status, b.recipient, b.message_id, b.attempts, "
            "b.last_error, b.prepared_at, b.sent_at, b.delete_by, b.counts, coalesce(json_agg(json_build_object("
            "'part', p.part_no, 'message_id', p.message_id, 'status', p.status, 'attempted_at', p.attempted_at, "
            "'sent_at', p.sent_at, 'last_error', p.last_error) ORDER BY p.part_no) FILTER (WHERE p.part_no IS NOT "
            "NULL), '[]') AS parts FROM (SELECT * FROM delivery.batches ORDER BY prepared_at DESC LIMIT $1) b "
            "LEFT JOIN delivery.batch_parts p USING (batch_id) GROUP BY b.batch_id, b.window_name, b.academic_year, "
            "b.status, b.recipient, b.message_id, b.attempts, b.last_error, b.prepared_at, b.sent_at, b.delete_by, "
            "b.counts ORDER BY b.prepared_at DESC",
            limit,
        )
        return [dict(r) | {"parts": json.loads(r["parts"]), "counts": json.loads(r["counts"])} for r in rows]

    async def interrupted_parts(self, batch_id: UUID) -> list[int]:
        rows = await self.pool.fetch(
            "SELECT part_no FROM delivery.batch_parts WHERE batch_id=$1 AND status='sending' ORDER BY part_no",
            batch_id,
        )
        return [r["part_no"] for r in rows]

    async def resolve_part(self, batch_id: UUID, part_no: int, sent: bool) -> None:
        """An operator's decision about an interrupted part: sent (at its attempt) or back to prepared."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE delivery.batch_parts SET status=$3, sent_at=CASE WHEN $3='sent' THEN attempted_at END, "
                "smtp_reply=CASE WHEN $3='sent' THEN 'resolved by operator' END WHERE batch_id=$1 AND part_no=$2 "
                "AND status='sending'",
                batch_id, part_no, "sent" if sent else "prepared",
            )  # fmt: skip
            await conn.execute(
                "UPDATE delivery.batches SET status='prepared' WHERE batch_id=$1 AND status='sending'", batch_id
            )

    async def flush_outbox(self, publisher) -> int:
        return await flush_outbox(self.pool, "delivery.outbox", publisher)

    # --- breaches -----------------------------------------------------------------------------

    async def add_breach(self, breach: dict, actor: str, protocol_version: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO delivery.breaches(breach_id, what, discovered_at, discovered_by, reported_at, reported_by, "
                "ico_decision_due) VALUES ($1,$2,$3,$4,$5,$6,$7)",
                breach["breach_id"], breach["what"], breach["discovered_at"], breach["discovered_by"],
                breach["reported_at"], actor, breach["ico_decision_due"],
            )  # fmt: skip
            await audit(
                conn, actor, "breach.reported", f"breach:{breach['breach_id']}",
                {"discovered_at": breach["discovered_at"].isoformat(),
                 "ico_decision_due": breach["ico_decision_due"].isoformat()},
                protocol_version,
            )  # fmt: skip

    async def breach_notified(self, breach_id: UUID, notified: Iterable[str]) -> None:
        await self.pool.execute(
            "UPDATE delivery.breaches SET notified=to_jsonb($2::text[]) WHERE breach_id=$1", breach_id, list(notified)
        )

    async def close_breach(self, breach_id: UUID, *, outcome: str, ico_notified: bool, resume: bool, actor: str,
                           protocol_version: str) -> int | None:  # fmt: skip
        """Close an open breach; the number of breaches still open, or None when it was not open."""
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE delivery.breaches SET outcome=$2, ico_notified=$3, resumed=$4, closed_at=now(), closed_by=$5 "
                "WHERE breach_id=$1 AND closed_at IS NULL RETURNING breach_id",
                breach_id, outcome, ico_notified, resume, actor,
            )  # fmt: skip
            if done is None:
                return None
            await audit(conn, actor, "breach.closed", f"breach:{breach_id}",
                        {"ico_notified": ico_notified, "resume": resume}, protocol_version)  # fmt: skip
            return await conn.fetchval("SELECT count(*) FROM delivery.breaches WHERE closed_at IS NULL")

    async def open_breaches(self) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT breach_id, discovered_at, ico_decision_due, notified FROM delivery.breaches "
            "WHERE closed_at IS NULL ORDER BY discovered_at"
        )
