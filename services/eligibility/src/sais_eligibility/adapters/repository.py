"""Eligibility's tables (records, findings, cohort, extracts, outbox), one connection in one
transaction: the SQL the use cases need, and nothing that decides."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from uuid import UUID

import asyncpg
from sais_shared.kafka import claim_new
from sais_shared.outbox import flush_outbox

from ..domain.cohort import Held
from ..domain.model import SchoolSpan

# Extracts of an academic year ($1) not yet reconciled whose accepted rows are all recorded.
READY = (
    "SELECT e.extract_id, e.supersedes FROM eligibility.extracts e WHERE e.academic_year=$1 "
    "AND e.reconciled_at IS NULL AND e.accepted = "
    "(SELECT count(*) FROM eligibility.records r WHERE r.extract_id = e.extract_id)"
)


class PgUnitOfWork:
    """One pooled connection in one transaction per ``async with uow() as repo``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[EligibilityRepository]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield EligibilityRepository(conn)


class PgOutbox:
    def __init__(self, pool: asyncpg.Pool, publisher) -> None:
        self.pool, self.publisher = pool, publisher

    async def flush(self) -> int:
        return await flush_outbox(self.pool, "eligibility.outbox", self.publisher)


class EligibilityRepository:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def claim_new(self, event_ids: Iterable[UUID]) -> set[UUID]:
        return await claim_new(self.conn, "eligibility.processed", event_ids)

    async def any_ready(self, year: str) -> bool:
        return await self.conn.fetchval(f"SELECT EXISTS ({READY})", year)

    async def lock_year(self, year: str, *, exclusive: bool) -> None:
        fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
        await self.conn.execute(f"SELECT {fn}(hashtext($1))", f"eligibility:{year}")

    async def lock_children(self, year: str, match_keys: set[str]) -> None:
        """One exclusive lock per child (match key) of the batch, taken in one sorted sweep."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(2, h) FROM (SELECT DISTINCT hashtext($1 || k) h "
            "FROM unnest($2::text[]) k ORDER BY h) s",
            f"{year}:",
            sorted(match_keys),
        )

    async def known_children(self, year: str, match_keys: list[str]) -> list[asyncpg.Record]:
        """Per match key and child: the postcode keys and extracts of its active records."""
        return await self.conn.fetch(
            "SELECT match_key, pupil_id, array_agg(postcode_key) pk, array_agg(extract_id) ex "
            "FROM eligibility.records WHERE academic_year=$1 AND match_key = ANY($2) AND active "
            "GROUP BY match_key, pupil_id",
            year,
            match_keys,
        )

    async def add_records(self, rows: list[tuple]) -> None:
        await self.conn.executemany(
            "INSERT INTO eligibility.records(record_id, extract_id, academic_year, pupil_id, match_key, postcode_key, "
            "content_key, source, reference_date, received_at, school_dfe, school_name, recorded_year_group, "
            "year_group, dob_year_group, gender, key_id, personal) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,"
            "$13,$14,$15,$16,$17,$18::jsonb) ON CONFLICT (record_id) DO NOTHING",
            rows,
        )

    async def add_findings(self, findings: list[tuple]) -> None:
        if findings:
            await self.conn.executemany(
                "INSERT INTO eligibility.findings(academic_year, pupil_id, code, detail, school_dfe) "
                "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (academic_year, pupil_id, code) "
                "DO UPDATE SET detail=EXCLUDED.detail, school_dfe=EXCLUDED.school_dfe, at=now()",
                findings,
            )

    async def clear_findings(self, keys: list[tuple]) -> None:
        """``keys``: (academic year, pupil, code) of findings that no longer hold."""
        if keys:
            await self.conn.execute(
                "DELETE FROM eligibility.findings f USING unnest($1::text[], $2::uuid[], $3::text[]) AS k(y, p, c) "
                "WHERE f.academic_year = k.y AND f.pupil_id = k.p AND f.code = k.c",
                *map(list, zip(*keys, strict=True)),
            )

    async def school_spans(self, dfes: set[str]) -> dict[str, SchoolSpan]:
        """The age ranges the schools register knows, by DfE number (schools it does not know are absent)."""
        rows = await self.conn.fetch(
            "SELECT dfe, first_year, last_year FROM shared.schools WHERE dfe = ANY($1)", list(dfes)
        )
        return {r["dfe"]: SchoolSpan(r["first_year"], r["last_year"]) for r in rows}

    async def cohort_state(
        self, year: str, pupil_ids: set[UUID]
    ) -> tuple[dict[UUID, list[asyncpg.Record]], dict[UUID, dict[str, Held]]]:
        """Each child's active records, and its memberships as last published."""
        records: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
        for r in await self.conn.fetch(
            "SELECT * FROM eligibility.records WHERE pupil_id = ANY($1) AND active", list(pupil_ids)
        ):
            records[r["pupil_id"]].append(r)
        held: dict[UUID, dict[str, Held]] = defaultdict(dict)
        for r in await self.conn.fetch(
            "SELECT programme, pupil_id, status, fingerprint, revision FROM eligibility.cohort "
            "WHERE academic_year=$1 AND pupil_id = ANY($2)",
            year,
            list(pupil_ids),
        ):
            held[r["pupil_id"]][r["programme"]] = Held(r["status"], r["fingerprint"], r["revision"])
        return records, held

    async def save_cohort(self, upserts: list[tuple], withdrawals: list[tuple], outbox: list[tuple]) -> None:
        """Memberships (academic_year, programme, pupil_id, dose, status, fingerprint, revision, record_id,
        school_dfe, year_group, gender), withdrawals (academic_year, programme, pupil_id, revision) and
        their events, in the caller's transaction."""
        if upserts:
            await self.conn.executemany(
                "INSERT INTO eligibility.cohort(academic_year, programme, pupil_id, dose, status, fingerprint, "
                "revision, record_id, school_dfe, year_group, gender) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) "
                "ON CONFLICT (academic_year, programme, pupil_id) DO UPDATE SET status=EXCLUDED.status, "
                "fingerprint=EXCLUDED.fingerprint, revision=EXCLUDED.revision, record_id=EXCLUDED.record_id, "
                "school_dfe=EXCLUDED.school_dfe, year_group=EXCLUDED.year_group, gender=EXCLUDED.gender, "
                "updated_at=now()",
                upserts,
            )
        if withdrawals:
            await self.conn.executemany(
                "UPDATE eligibility.cohort SET status='withdrawn', revision=$4, updated_at=now() "
                "WHERE academic_year=$1 AND programme=$2 AND pupil_id=$3",
                withdrawals,
            )
        await self.queue_events(outbox)

    async def queue_events(self, outbox: list[tuple]) -> None:
        """(event id, key, payload) into the outbox, in the caller's transaction; an id queued twice once."""
        if outbox:
            await self.conn.executemany(
                "INSERT INTO eligibility.outbox(event_id, key, payload) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
                outbox,
            )

    async def add_extracts(self, rows: list[tuple]) -> None:
        await self.conn.executemany(
            "INSERT INTO eligibility.extracts(extract_id, source, reference_date, academic_year, accepted, "
            "supersedes, key_id, completed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) ON CONFLICT (extract_id) DO NOTHING",
            rows,
        )

    async def ready_extracts(self, year: str) -> list[asyncpg.Record]:
        return await self.conn.fetch(READY, year)

    async def retire_extract(self, extract_id: UUID) -> set[UUID]:
        """Deactivate a superseded extract's records; the children they belonged to."""
        rows = await self.conn.fetch(
            "UPDATE eligibility.records SET active=false WHERE extract_id=$1 AND active RETURNING pupil_id", extract_id
        )
        return {r["pupil_id"] for r in rows}

    async def mark_reconciled(self, extract_id: UUID) -> None:
        await self.conn.execute("UPDATE eligibility.extracts SET reconciled_at=now() WHERE extract_id=$1", extract_id)
