"""ingest's PostgreSQL tables: extracts and their row problems."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from uuid import UUID

import asyncpg
from sais_shared.db import insert_new_rows
from sais_shared.keystore import AuditEntry, audit, write_audit

from ..domain.extracts import (
    DipSampleRow,
    ExtractBusyError,
    ExtractRow,
    InboundHead,
    RowKeys,
    RowProblem,
    Staged,
    StagedRecord,
)

_COLS = ", ".join(ExtractRow.__dataclass_fields__)


def _lock_key(extract_id: UUID) -> str:
    return f"sais-ingest-extract:{extract_id}"


# Held by the process ingesting an extract on its own connection for as long as it reads: a started
# extract whose lock is free was abandoned (the process was killed or lost its connection).
_TRY_LOCK = "SELECT pg_try_advisory_lock(hashtextextended($1, 0))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtextextended($1, 0))"


async def is_held(pool: asyncpg.Pool, extract_id: UUID) -> bool:
    """Whether a process is reading this extract now (it holds the extract's lock)."""
    async with pool.acquire() as conn:
        if await conn.fetchval(_TRY_LOCK, _lock_key(extract_id)):
            await conn.execute(_UNLOCK, _lock_key(extract_id))
            return False
        return True


class ExtractRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def hold(self, extract_id: UUID) -> AsyncIterator[None]:
        """Hold the extract's ingest lock for the block (ExtractBusyError if another process has it)."""
        async with self.pool.acquire() as conn:
            if not await conn.fetchval(_TRY_LOCK, _lock_key(extract_id)):
                raise ExtractBusyError(f"extract {extract_id} is being ingested by another process right now")
            try:
                yield
            finally:
                await conn.execute(_UNLOCK, _lock_key(extract_id))

    async def is_held(self, extract_id: UUID) -> bool:
        return await is_held(self.pool, extract_id)

    async def identity(self, sha256: str, source: str, reference_date: date, target_year: str) -> ExtractRow | None:
        """The live extract (started or completed) with this content, source, reference date and year."""
        r = await self.pool.fetchrow(
            f"SELECT {_COLS} FROM ingest.extracts WHERE content_sha256=$1 AND source=$2 AND reference_date=$3 "
            "AND target_academic_year=$4 AND status IN ('started', 'completed')",
            sha256,
            source,
            reference_date,
            target_year,
        )
        return ExtractRow.of(r) if r else None

    async def attempts(self, sha256: str, source: str, reference_date: date, target_year: str) -> int:
        return await self.pool.fetchval(
            "SELECT count(*) FROM ingest.extracts WHERE content_sha256=$1 AND source=$2 AND reference_date=$3 "
            "AND target_academic_year=$4",
            sha256,
            source,
            reference_date,
            target_year,
        )

    async def end(
        self,
        extract_id: UUID,
        status: str,
        code: str,
        reason: str,
        by: str,
        *,
        published: int,
        audit_entry: AuditEntry | None = None,
    ) -> bool:
        """A started extract ends refused or failed, or a completed one is withdrawn; False if it was not
        in the state that allows it (already ended). Its row index goes with it, except for a withdrawal;
        ``audit_entry`` is written with the change, in its transaction, when there was one."""
        before = "completed" if status == "withdrawn" else "started"
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE ingest.extracts SET status=$2, failure_code=$3, failure=$4, ended_by=$5, ended_at=now(), "
                "published=CASE WHEN $2 = 'withdrawn' THEN published ELSE $6 END "
                "WHERE extract_id=$1 AND status=$7 RETURNING true",
                extract_id,
                status,
                code,
                reason,
                by,
                published,
                before,
            )
            if done and status != "withdrawn":
                await conn.execute("DELETE FROM ingest.row_index WHERE extract_id=$1", extract_id)
            if done:
                await write_audit(conn, audit_entry)
        return bool(done)

    async def abandoned(self) -> list[UUID]:
        """Started extracts that no process holds any more: each ends failed ('abandoned')."""
        out = []
        async with self.pool.acquire() as conn:
            for r in await conn.fetch("SELECT extract_id FROM ingest.extracts WHERE status='started'"):
                key = _lock_key(r["extract_id"])
                if not await conn.fetchval(_TRY_LOCK, key):
                    continue  # still being read
                try:
                    if await self.end(
                        r["extract_id"],
                        "failed",
                        "abandoned",
                        "the ingest stopped before the end of the extract (the process was stopped or lost its "
                        "connection); nothing of it is delivered: ingest the file again",
                        "ingest",
                        published=await self._published(conn, r["extract_id"]),
                    ):
                        out.append(r["extract_id"])
                finally:
                    await conn.execute(_UNLOCK, key)
        return out

    async def _published(self, conn: asyncpg.Connection, extract_id: UUID) -> int:
        return await conn.fetchval("SELECT count(*) FROM ingest.row_index WHERE extract_id=$1", extract_id)

    async def unannounced(self) -> list[ExtractRow]:
        """Extracts that ended (refused, failed, withdrawn) whose event is not on Kafka yet."""
        return [
            ExtractRow.of(r)
            for r in await self.pool.fetch(
                f"SELECT {_COLS} FROM ingest.extracts WHERE announced_at IS NULL AND ended_at IS NOT NULL "
                "ORDER BY ended_at"
            )
        ]

    async def announced(self, extract_id: UUID) -> None:
        await self.pool.execute("UPDATE ingest.extracts SET announced_at=now() WHERE extract_id=$1", extract_id)

    async def index_rows(self, extract_id: UUID, rows: list[RowKeys]) -> dict[int, int]:
        """Index (row number, child key, content key) of accepted rows; returns {row: first row} for the rows
        whose content repeats an earlier row of the extract (they are not indexed)."""
        first: dict[str, int] = {}
        repeats: dict[int, int] = {}
        for r in sorted(rows, key=lambda r: r.row_number):
            if r.content_key in first:
                repeats[r.row_number] = first[r.content_key]
            else:
                first[r.content_key] = r.row_number
        fresh = [(r.row_number, r.child_key, r.content_key) for r in rows if r.row_number not in repeats]
        if not fresh:
            return repeats
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = set(  # a content already indexed (an earlier chunk's row) is not inserted
                await insert_new_rows(
                    conn,
                    "ingest.row_index",
                    ("row_number", "extract_id", "child_key", "content_key"),
                    ("int", "uuid", "text", "text"),
                    [(n, extract_id, c, k) for n, c, k in fresh],
                    "ON CONFLICT DO NOTHING RETURNING row_number",
                )
            )
            if later := [r for r in fresh if r[0] not in inserted]:  # rare: repeats of an earlier chunk's row
                for r in await conn.fetch(
                    "SELECT u.n, i.row_number FROM unnest($2::int[], $3::text[]) u(n, k) "
                    "JOIN ingest.row_index i ON i.extract_id=$1 AND i.content_key=u.k",
                    extract_id,
                    [r[0] for r in later],
                    [r[2] for r in later],
                ):
                    repeats[r[0]] = r[1]
        return repeats

    async def same_child_rows(self, extract_id: UUID) -> list[tuple[int, int]]:
        """(row, first row) for rows with the name and date of birth of an earlier row but other details."""
        rows = await self.pool.fetch(  # only these come back: memory follows them, not the extract
            "SELECT row_number, first FROM (SELECT row_number, first_value(row_number) OVER w AS first "
            "FROM ingest.row_index WHERE extract_id=$1 WINDOW w AS (PARTITION BY child_key ORDER BY row_number)) k "
            "WHERE row_number <> first ORDER BY row_number",
            extract_id,
        )
        return [(r["row_number"], r["first"]) for r in rows]

    async def replacement_effect(self, extract_id: UUID, supersedes: UUID) -> dict[str, int]:
        """What a replacement would do to the children of the extract it supersedes, by name and date of
        birth: added, updated (other details), unchanged and withdrawn; ``before``: its children."""
        r = await self.pool.fetchrow(
            "WITH n AS (SELECT child_key, array_agg(content_key) cs FROM ingest.row_index WHERE extract_id=$1 "
            "GROUP BY child_key), o AS (SELECT child_key, array_agg(content_key) cs FROM ingest.row_index "
            "WHERE extract_id=$2 GROUP BY child_key) SELECT "
            "count(*) FILTER (WHERE o.child_key IS NULL) adds, "
            "count(*) FILTER (WHERE n.child_key IS NOT NULL AND o.child_key IS NOT NULL AND NOT (n.cs @> o.cs "
            "AND o.cs @> n.cs)) updates, "
            "count(*) FILTER (WHERE n.child_key IS NOT NULL AND o.child_key IS NOT NULL AND n.cs @> o.cs "
            "AND o.cs @> n.cs) unchanged, "
            "count(*) FILTER (WHERE n.child_key IS NULL) withdrawals, "
            "count(o.child_key) before FROM n FULL JOIN o USING (child_key)",
            extract_id,
            supersedes,
        )
        return dict(r)

    async def discard(self, extract_id: UUID) -> None:
        """A dry run's traces: its row index and problems, and the extract row itself."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM ingest.row_index WHERE extract_id=$1", extract_id)
            await conn.execute("DELETE FROM ingest.row_problems WHERE extract_id=$1", extract_id)
            await conn.execute("DELETE FROM ingest.extracts WHERE extract_id=$1", extract_id)

    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None:
        await audit(self.pool, actor, action, subject, details, protocol_version)

    async def get(self, extract_id: UUID) -> ExtractRow | None:
        r = await self.pool.fetchrow(f"SELECT {_COLS} FROM ingest.extracts WHERE extract_id=$1", extract_id)
        return ExtractRow.of(r) if r else None

    async def latest_completed(self, source: str, reference_date: date, other_than: UUID) -> UUID | None:
        return await self.pool.fetchval(
            "SELECT extract_id FROM ingest.extracts WHERE source=$1 AND reference_date=$2 "
            "AND status='completed' AND extract_id<>$3 AND purged_at IS NULL "
            "ORDER BY completed_at DESC LIMIT 1",
            source,
            reference_date,
            other_than,
        )

    async def start(
        self,
        *,
        extract_id: UUID,
        sha256: str,
        source: str,
        reference_date: date,
        target_academic_year: str,
        file_name: str,
        encoding: str,
        supersedes: UUID | None,
        key_id: UUID,
        originator: str,
        protocol_version: str,
        ingested_by: str,
    ) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO ingest.extracts(extract_id, content_sha256, source, reference_date, "
                "target_academic_year, file_name, encoding, status, supersedes, key_id, originator, "
                "protocol_version, ingested_by) VALUES ($1,$2,$3,$4,$5,$6,$7,'started',$8,$9,$10,$11,$12) "
                "ON CONFLICT (extract_id) DO UPDATE SET started_at = now()",
                extract_id,
                sha256,
                source,
                reference_date,
                target_academic_year,
                file_name,
                encoding,
                supersedes,
                key_id,
                originator,
                protocol_version,
                ingested_by,
            )
            # A resumed extract starts its problem list again: nothing is counted twice.
            await conn.execute("DELETE FROM ingest.row_problems WHERE extract_id=$1", extract_id)
            await conn.execute("DELETE FROM ingest.row_index WHERE extract_id=$1", extract_id)

    async def add_problems(self, extract_id: UUID, rows: list[RowProblem]) -> None:
        if rows:
            await self.pool.copy_records_to_table(
                "row_problems",
                schema_name="ingest",
                records=[(extract_id, r.row_number, r.kind, r.field, r.code, r.reason) for r in rows],
                columns=["extract_id", "row_number", "kind", "field", "code", "reason"],
            )

    async def complete(
        self,
        extract_id: UUID,
        *,
        rows_in: int,
        accepted: int,
        rejected: int,
        out_of_scope: int,
        warnings: int,
        dropped_columns: list[str],
        repeated: int = 0,
        audit_entry: AuditEntry | None = None,
    ) -> None:
        """The extract completed, and ``audit_entry`` written in the same transaction."""
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                "UPDATE ingest.extracts SET status='completed', completed_at=now(), rows_in=$2, accepted=$3, "
                "rejected=$4, out_of_scope=$5, warnings=$6, dropped_columns=$7, repeated=$8, published=$3 "
                "WHERE extract_id=$1 AND status='started' RETURNING true",
                extract_id,
                rows_in,
                accepted,
                rejected,
                out_of_scope,
                warnings,
                dropped_columns,
                repeated,
            )
            if done:
                await write_audit(conn, audit_entry)

    async def save_dip_sample(self, extract_id: UUID, rows: list[DipSampleRow]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM ingest.dip_samples WHERE extract_id=$1", extract_id)
            await conn.executemany(
                "INSERT INTO ingest.dip_samples(extract_id, row_number, school_dfe, year_group, gender, personal) "
                "VALUES ($1,$2,$3,$4,$5,$6::jsonb)",
                [(extract_id, r.row_number, r.school_dfe, r.year_group, r.gender, r.personal) for r in rows],
            )

    async def dip_sample(self, extract_id: UUID) -> list[DipSampleRow]:
        rows = await self.pool.fetch(
            "SELECT row_number, school_dfe, year_group, gender, personal FROM ingest.dip_samples "
            "WHERE extract_id=$1 ORDER BY row_number",
            extract_id,
        )
        return [DipSampleRow(*r) for r in rows]

    async def problems(self, extract_id: UUID, kind: str, limit: int = 1000) -> list[RowProblem]:
        rows = await self.pool.fetch(
            "SELECT row_number, kind, field, code, reason FROM ingest.row_problems WHERE extract_id=$1 "
            "AND kind=$2 ORDER BY row_number, field LIMIT $3",
            extract_id,
            kind,
            limit,
        )
        return [RowProblem(*r) for r in rows]


class InboundStaging:
    """Inbound extracts staged as they arrive, still sealed (ingest.inbound_extracts, inbound_records)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def started(
        self, extract_ref: str, source: str, reference_date: date, originator: str, started_json: str
    ) -> str:
        """A new extract starts receiving; one that was refused starts again when it is sent again whole;
        one receiving, incomplete or ingested is left as it is. Returns which it was."""
        row = await self.pool.fetchrow(
            "INSERT INTO ingest.inbound_extracts AS x (extract_ref, source, reference_date, originator_system, "
            "started, status) VALUES ($1,$2,$3,$4,$5::jsonb,'receiving') ON CONFLICT (extract_ref) DO UPDATE SET "
            "source=EXCLUDED.source, reference_date=EXCLUDED.reference_date, "
            "originator_system=EXCLUDED.originator_system, started=EXCLUDED.started, status='receiving', "
            "problem=NULL, staged_bytes=0, updated_at=now() WHERE x.status = 'refused' RETURNING (xmax = 0) AS new",
            extract_ref,
            source,
            reference_date,
            originator,
            started_json,
        )
        if row is None:
            return "ignored"  # receiving or incomplete already, or ingested: a re-send or a redelivery
        return "new" if row["new"] else "restarted"

    async def stage(self, records: list[StagedRecord], max_bytes: int) -> Staged:
        """Stage a run of records, (extract, seq, nonce, ciphertext) each, in one statement: those of an
        extract still receiving (or incomplete: a record that was missing), never of one ingested or refused
        (a re-sent record of those would outlive the extract's deletion), and only while the extract's
        staged records stay within ``max_bytes``; a record already staged is left as it is. Returns what
        was staged and which extracts had records left out, and why."""
        if not records:
            return Staged(0, [], [])
        refs, seqs = [r.extract_ref for r in records], [r.seq for r in records]
        nonces, ciphertexts = [r.nonce for r in records], [r.ciphertext for r in records]
        row = await self.pool.fetchrow(
            """
            WITH incoming AS (
                SELECT * FROM unnest($1::text[], $2::int[], $3::text[], $4::text[]) AS t(extract_ref, seq, nonce, ciphertext)
            ), fresh AS (
                SELECT DISTINCT ON (i.extract_ref, i.seq) i.*, x.staged_bytes
                FROM incoming i JOIN ingest.inbound_extracts x USING (extract_ref)
                WHERE x.status IN ('receiving', 'incomplete') AND NOT EXISTS (
                    SELECT 1 FROM ingest.inbound_records r WHERE r.extract_ref = i.extract_ref AND r.seq = i.seq)
                ORDER BY i.extract_ref, i.seq
            ), ranked AS (
                SELECT f.*, f.staged_bytes + sum(length(f.nonce) + length(f.ciphertext))
                    OVER (PARTITION BY f.extract_ref ORDER BY f.seq) AS running
                FROM fresh f
            ), ins AS (
                INSERT INTO ingest.inbound_records(extract_ref, seq, nonce, ciphertext)
                SELECT extract_ref, seq, nonce, ciphertext FROM ranked WHERE running <= $5
                ON CONFLICT DO NOTHING RETURNING extract_ref, length(nonce) + length(ciphertext) AS size
            ), grown AS (
                UPDATE ingest.inbound_extracts x SET staged_bytes = x.staged_bytes + s.total
                FROM (SELECT extract_ref, sum(size) AS total FROM ins GROUP BY extract_ref) s
                WHERE x.extract_ref = s.extract_ref RETURNING 1
            )
            SELECT (SELECT count(*) FROM ins) AS staged,
                   (SELECT count(*) FROM ranked WHERE running > $5) AS over_limit_records,
                   ARRAY(SELECT DISTINCT i.extract_ref FROM incoming i WHERE NOT EXISTS (
                       SELECT 1 FROM ingest.inbound_extracts x WHERE x.extract_ref = i.extract_ref)) AS no_start,
                   ARRAY(SELECT DISTINCT extract_ref FROM ranked WHERE running > $5) AS over_limit
            """,
            refs,
            seqs,
            nonces,
            ciphertexts,
            max_bytes,
        )
        return Staged(row["staged"], sorted(row["no_start"]), sorted(row["over_limit"]), row["over_limit_records"])

    async def audit(self, entry: AuditEntry) -> None:
        await write_audit(self.pool, entry)

    async def head(self, extract_ref: str) -> InboundHead | None:
        r = await self.pool.fetchrow(
            "SELECT status, started FROM ingest.inbound_extracts WHERE extract_ref=$1", extract_ref
        )
        return None if r is None else InboundHead(r["status"], r["started"])

    async def count(self, extract_ref: str) -> tuple[int, int | None, int | None]:
        """(records staged, lowest seq, highest seq)."""
        return tuple(
            await self.pool.fetchrow(
                "SELECT count(*), min(seq), max(seq) FROM ingest.inbound_records WHERE extract_ref=$1", extract_ref
            )
        )

    async def missing(self, extract_ref: str, expected: int, limit: int = 10) -> list[int]:
        return [
            r["s"]
            for r in await self.pool.fetch(
                "SELECT s FROM generate_series(1, $2::int) s WHERE NOT EXISTS (SELECT 1 FROM ingest.inbound_records "
                "WHERE extract_ref=$1 AND seq=s) ORDER BY s LIMIT $3",
                extract_ref,
                expected,
                limit,
            )
        ]

    async def records(self, extract_ref: str) -> AsyncIterator[StagedRecord]:
        """The staged records in order, streamed with a server-side cursor (memory stays flat)."""
        async with self.pool.acquire() as conn, conn.transaction():
            async for r in conn.cursor(
                "SELECT seq, nonce, ciphertext FROM ingest.inbound_records WHERE extract_ref=$1 ORDER BY seq",
                extract_ref,
                prefetch=1000,
            ):
                yield StagedRecord(extract_ref, r["seq"], r["nonce"], r["ciphertext"])

    async def incomplete(self, extract_ref: str, problem: str, audit_entry: AuditEntry | None = None) -> None:
        """Records are missing: it keeps what it has, for the publisher to send what was missing (and
        ``audit_entry`` is written in the same transaction)."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE ingest.inbound_extracts SET status='incomplete', problem=$2, updated_at=now() "
                "WHERE extract_ref=$1",
                extract_ref,
                problem,
            )
            await write_audit(conn, audit_entry)

    async def refused(self, extract_ref: str, problem: str, audit_entry: AuditEntry | None = None) -> None:
        """Refused: its staged records and its wrapped extract key go at once (it is sent again whole), in
        the transaction that writes ``audit_entry``."""
        async with self.pool.acquire() as conn, conn.transaction():
            await write_audit(conn, audit_entry)
            await conn.execute(
                "UPDATE ingest.inbound_extracts SET status='refused', problem=$2, started = started - 'encryption', "
                "updated_at=now() WHERE extract_ref=$1",
                extract_ref,
                problem,
            )
            await conn.execute("DELETE FROM ingest.inbound_records WHERE extract_ref=$1", extract_ref)

    async def ingested(self, extract_ref: str, extract_id: UUID) -> None:
        """Mark it ingested and drop its staged records and its wrapped extract key, together."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE ingest.inbound_extracts SET status='ingested', extract_id=$2, problem=NULL, "
                "started = started - 'encryption', updated_at=now() WHERE extract_ref=$1",
                extract_ref,
                extract_id,
            )
            await conn.execute("DELETE FROM ingest.inbound_records WHERE extract_ref=$1", extract_ref)
