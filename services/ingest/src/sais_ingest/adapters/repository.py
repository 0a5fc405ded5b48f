"""ingest's PostgreSQL tables: extracts and their row problems."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from uuid import UUID

import asyncpg
from sais_shared.keystore import audit


@dataclass(frozen=True)
class ExtractRow:
    extract_id: UUID
    content_sha256: str
    source: str
    reference_date: date
    status: str
    rows_in: int
    accepted: int
    rejected: int
    out_of_scope: int
    warnings: int
    supersedes: UUID | None
    file_name: str
    target_academic_year: str
    dropped_columns: list[str]
    protocol_version: str

    @classmethod
    def of(cls, r: asyncpg.Record) -> ExtractRow:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})


_COLS = ", ".join(ExtractRow.__dataclass_fields__)


class ExtractRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None:
        await audit(self.pool, actor, action, subject, details, protocol_version)

    async def by_hash(self, sha256: str) -> ExtractRow | None:
        r = await self.pool.fetchrow(f"SELECT {_COLS} FROM ingest.extracts WHERE content_sha256=$1", sha256)
        return ExtractRow.of(r) if r else None

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
            await conn.execute("DELETE FROM ingest.row_keys WHERE extract_id=$1", extract_id)

    async def add_problems(self, extract_id: UUID, rows: list[tuple[int, str, str, str, str]]) -> None:
        if rows:
            await self.pool.copy_records_to_table(
                "row_problems",
                schema_name="ingest",
                records=[(extract_id, *r) for r in rows],
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
    ) -> None:
        await self.pool.execute(
            "UPDATE ingest.extracts SET status='completed', completed_at=now(), rows_in=$2, accepted=$3, "
            "rejected=$4, out_of_scope=$5, warnings=$6, dropped_columns=$7 WHERE extract_id=$1",
            extract_id,
            rows_in,
            accepted,
            rejected,
            out_of_scope,
            warnings,
            dropped_columns,
        )

    async def add_row_keys(self, extract_id: UUID, rows: list[tuple[str, int]]) -> None:
        if rows:
            await self.pool.copy_records_to_table(
                "row_keys",
                schema_name="ingest",
                records=[(extract_id, k, n) for k, n in rows],
                columns=["extract_id", "dup_key", "row_number"],
            )

    async def duplicate_rows(self, extract_id: UUID) -> list[tuple[int, int]]:
        """(row, first row with the same child) for every repeat; the keys are then discarded."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(  # only the repeats come back: memory follows them, not the extract
                "SELECT row_number, first FROM (SELECT row_number, first_value(row_number) OVER w AS first "
                "FROM ingest.row_keys WHERE extract_id=$1 WINDOW w AS (PARTITION BY dup_key ORDER BY row_number)) k "
                "WHERE row_number <> first ORDER BY row_number",
                extract_id,
            )
            await conn.execute("DELETE FROM ingest.row_keys WHERE extract_id=$1", extract_id)
        return [(r["row_number"], r["first"]) for r in rows]

    async def save_dip_sample(self, extract_id: UUID, rows: list[tuple]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM ingest.dip_samples WHERE extract_id=$1", extract_id)
            await conn.executemany(
                "INSERT INTO ingest.dip_samples(extract_id, row_number, school_dfe, year_group, gender, personal) "
                "VALUES ($1,$2,$3,$4,$5,$6::jsonb)",
                [(extract_id, *r) for r in rows],
            )

    async def dip_sample(self, extract_id: UUID) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT * FROM ingest.dip_samples WHERE extract_id=$1 ORDER BY row_number", extract_id
        )

    async def problems(self, extract_id: UUID, kind: str, limit: int = 1000) -> list[asyncpg.Record]:
        return await self.pool.fetch(
            "SELECT row_number, field, code, reason FROM ingest.row_problems WHERE extract_id=$1 "
            "AND kind=$2 ORDER BY row_number, field LIMIT $3",
            extract_id,
            kind,
            limit,
        )


class InboundStaging:
    """Inbound extracts staged as they arrive, still sealed (ingest.inbound_extracts, inbound_records)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def started(
        self, extract_ref: str, source: str, reference_date: date, originator: str, started_json: str
    ) -> None:
        await self.pool.execute(
            "INSERT INTO ingest.inbound_extracts(extract_ref, source, reference_date, originator_system, started, "
            "status) VALUES ($1,$2,$3,$4,$5::jsonb,'receiving') ON CONFLICT (extract_ref) DO NOTHING",
            extract_ref,
            source,
            reference_date,
            originator,
            started_json,
        )

    async def stage(self, extract_ref: str, seq: int, nonce: str, ciphertext: str) -> bool:
        """Stage a record; False when its extract was never started."""
        status = await self.pool.fetchval(
            "INSERT INTO ingest.inbound_records(extract_ref, seq, nonce, ciphertext) "
            "SELECT $1,$2,$3,$4 WHERE EXISTS (SELECT 1 FROM ingest.inbound_extracts WHERE extract_ref=$1) "
            "ON CONFLICT DO NOTHING RETURNING 'staged'",
            extract_ref,
            seq,
            nonce,
            ciphertext,
        )
        return status is not None or bool(
            await self.pool.fetchval("SELECT 1 FROM ingest.inbound_extracts WHERE extract_ref=$1", extract_ref)
        )

    async def head(self, extract_ref: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow("SELECT * FROM ingest.inbound_extracts WHERE extract_ref=$1", extract_ref)

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

    async def records(self, extract_ref: str):
        """The staged records in order, streamed with a server-side cursor (memory stays flat)."""
        async with self.pool.acquire() as conn, conn.transaction():
            async for r in conn.cursor(
                "SELECT seq, nonce, ciphertext FROM ingest.inbound_records WHERE extract_ref=$1 ORDER BY seq",
                extract_ref,
                prefetch=1000,
            ):
                yield r

    async def incomplete(self, extract_ref: str, problem: str) -> None:
        await self.pool.execute(
            "UPDATE ingest.inbound_extracts SET status='incomplete', problem=$2, updated_at=now() WHERE extract_ref=$1",
            extract_ref,
            problem,
        )

    async def ingested(self, extract_ref: str, extract_id: UUID) -> None:
        """Mark it ingested and drop its staged records, together."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute(
                "UPDATE ingest.inbound_extracts SET status='ingested', extract_id=$2, problem=NULL, "
                "updated_at=now() WHERE extract_ref=$1",
                extract_ref,
                extract_id,
            )
            await conn.execute("DELETE FROM ingest.inbound_records WHERE extract_ref=$1", extract_ref)
