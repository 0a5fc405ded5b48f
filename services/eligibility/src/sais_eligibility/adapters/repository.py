"""Eligibility's tables (records, findings, cohort, extracts, outbox), one connection in one
transaction: the SQL the use cases need, and nothing that decides."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from operator import attrgetter
from uuid import UUID

import asyncpg
from sais_shared.db import insert_new_rows, insert_rows, rounds
from sais_shared.events import ExtractCompleted, ExtractFailed
from sais_shared.kafka import claim_new
from sais_shared.keystore import destroyed_among
from sais_shared.outbox import flush_outbox, publish_queued

from ..domain.cohort import CohortEntry, Finding, FindingKey, Held, ReadyExtract, Withdrawal
from ..domain.model import RECORD_COLUMNS, Candidate, Record, SchoolSpan
from ..service_layer.ports import OutboxEvent

_record_row = attrgetter(*RECORD_COLUMNS)
COHORT_RECORDS = (  # the released, active records of some children, as Records (a bitmap scan of records_pupil)
    f"SELECT {', '.join('r.' + c for c in RECORD_COLUMNS)} FROM eligibility.records r JOIN eligibility.extracts e "
    "USING (extract_id) WHERE r.pupil_id = ANY($1) AND r.active AND e.status = 'completed' AND e.released_at IS NOT NULL"
)
# A walk's chunk reads its 2,000 children's memberships one index probe each (``LATERAL … OFFSET 0``, which
# PostgreSQL does not flatten into a join). Asked as ``pupil_id = ANY($2)``, or as a plain join, PostgreSQL
# planned it as a sequential scan of the whole year (a parallel scan, or a hash join), a chunk's read growing
# with the table: 31-37 ms a chunk at 100,000 pupils in the pipeline, against 6.4-7.1 ms by the index
# (issue 28; tests/integration/test_cohort_index.py). The records' read stays as it was: in the pipeline
# PostgreSQL reads it from the pupil index as a bitmap, each table page once, and the same read as a probe per
# child took longer there (96-165 ms a chunk against 65-83, two runs each; a chunk of a lone extract of
# 100,000 children may still be read by a sequential scan, which EXPLAIN shows and no run has timed).
COHORT_HELD = (  # the memberships of some children of a year ($1), as last published
    "SELECT c.programme, c.pupil_id, c.status, c.fingerprint, c.revision FROM unnest($2::uuid[]) p(pupil_id), "
    "LATERAL (SELECT * FROM eligibility.cohort c WHERE c.academic_year = $1 AND c.pupil_id = p.pupil_id OFFSET 0) c"
)
PUPIL_ID = RECORD_COLUMNS.index("pupil_id")
COHORT_COLUMNS = tuple(CohortEntry.__dataclass_fields__)
_cohort_row = attrgetter(*COHORT_COLUMNS)
COHORT_TYPES = ("text", "text", "uuid", "int", "text", "text", "int", "uuid", "text", "text", "text")
COHORT_UPSERT = (
    "ON CONFLICT (academic_year, programme, pupil_id) DO UPDATE SET status=EXCLUDED.status, "
    "fingerprint=EXCLUDED.fingerprint, revision=EXCLUDED.revision, record_id=EXCLUDED.record_id, "
    "school_dfe=EXCLUDED.school_dfe, year_group=EXCLUDED.year_group, gender=EXCLUDED.gender, updated_at=now()"
)
_withdrawal_row = attrgetter(*Withdrawal.__dataclass_fields__)
FINDING_COLUMNS = tuple(Finding.__dataclass_fields__)
_finding_row = attrgetter(*FINDING_COLUMNS)
# The SQL type of each of RECORD_COLUMNS, in order (a test holds them to the table).
RECORD_TYPES = (
    *("uuid", "uuid", "uuid", "text", "date", "timestamptz", "text", "text", "text", "text", "uuid"),
    *("text", "text", "text", "text", "text", "text", "text", "jsonb"),
)

# Extracts of an academic year ($1) whose children are to be (re)computed: completed ones whose pupil
# events are all recorded (count and checksum as extract-completed said), not yet released or part-way;
# withdrawn ones whose children have not all left yet.
READY = (
    "SELECT e.extract_id, e.supersedes, e.status, e.released_at, e.released_through "
    "FROM eligibility.extracts e LEFT JOIN eligibility.extract_progress p USING (extract_id) "
    "WHERE e.academic_year=$1 AND e.reconciled_at IS NULL AND (e.status = 'withdrawn' OR (e.status = 'completed' "
    "AND e.accepted = coalesce(p.recorded, 0) AND (e.records_digest IS NULL OR e.records_digest = coalesce(p.digest, 0))))"
)


async def lock_extracts(conn: asyncpg.Connection, extract_ids: set[UUID], *, exclusive: bool) -> None:
    """Transaction-level advisory locks, one per extract, taken in one sorted sweep (no deadlock)."""
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(
        f"SELECT {fn}(3, h) FROM (SELECT DISTINCT hashtext(x::text) h FROM unnest($1::uuid[]) x ORDER BY h) s",
        sorted(extract_ids),
    )


class PgUnitOfWork:
    """One pooled connection in one transaction per ``async with uow() as repo``."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[EligibilityRepository]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield EligibilityRepository(conn)


# The next children of a walk, per extract from its (extract_id, pupil_id) index in order, merged. One statement
# with ``extract_id = ANY($1)`` went by the pupil index instead and read a record from the table for every entry
# it skipped: 48 ms a chunk at 100,000 pupils, against 4 ms.
CHILDREN_OF = (
    "SELECT DISTINCT pupil_id FROM unnest($1::uuid[]) x(extract_id), LATERAL (SELECT pupil_id FROM "
    "eligibility.records r WHERE r.extract_id = x.extract_id AND ($2::uuid IS NULL OR r.pupil_id > $2) "
    "ORDER BY r.pupil_id LIMIT $3) c ORDER BY pupil_id LIMIT $3"
)


class PgOutbox:
    def __init__(self, pool: asyncpg.Pool, publisher) -> None:
        self.pool, self.publisher = pool, publisher

    async def flush(self) -> int:
        return await flush_outbox(self.pool, "eligibility.outbox", self.publisher)

    async def publish(self, events: list[OutboxEvent]) -> int:
        return await publish_queued(self.pool, "eligibility.outbox", self.publisher, events)


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

    async def keys_destroyed_among(self, key_ids: set[UUID]) -> set[UUID]:
        return await destroyed_among(self.conn, key_ids)

    async def lock_extracts(self, extract_ids: set[UUID], *, exclusive: bool) -> None:
        """A lock per extract: shared while its pupil events are recorded, exclusive while it is discarded
        or deleted, so a batch in flight is either seen by the deletion or sees the extract ended."""
        await lock_extracts(self.conn, extract_ids, exclusive=exclusive)

    async def lock_children(self, year: str, match_keys: set[str]) -> None:
        """One exclusive lock per child (match key) of the batch, taken in one sorted sweep."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(2, h) FROM (SELECT DISTINCT hashtext($1 || k) h "
            "FROM unnest($2::text[]) k ORDER BY h) s",
            f"{year}:",
            sorted(match_keys),
        )

    async def lock_walk(self, extract_id: UUID) -> None:
        """One walker of an extract's release at a time (two instances): its cursor is read and moved under it."""
        await self.conn.execute("SELECT pg_advisory_xact_lock(4, hashtext($1::uuid::text))", extract_id)

    async def lock_pupils(self, year: str, pupil_ids: list[UUID]) -> None:
        """One exclusive lock per child a walk chunk recomputes, in one sorted sweep: two walks (of two extracts
        with a child in both, on two instances) never recompute one child at once."""
        await self.conn.execute(
            "SELECT pg_advisory_xact_lock(5, h) FROM (SELECT DISTINCT hashtext($1 || p::text) h "
            "FROM unnest($2::uuid[]) p ORDER BY h) s",
            f"{year}:",
            pupil_ids,
        )

    async def known_children(self, year: str, match_keys: list[str]) -> dict[str, list[Candidate]]:
        """Per match key, each child with active records: their postcode keys and extracts."""
        known: dict[str, list[Candidate]] = defaultdict(list)
        for r in await self.conn.fetch(
            "SELECT match_key, pupil_id, array_agg(postcode_key) pk, array_agg(extract_id) ex "
            "FROM eligibility.records WHERE academic_year=$1 AND match_key = ANY($2) AND active "
            "GROUP BY match_key, pupil_id",
            year,
            match_keys,
        ):
            known[r["match_key"]].append(Candidate(r["pupil_id"], frozenset(r["pk"]), frozenset(r["ex"])))
        return known

    async def add_records(self, records: list[Record]) -> set[UUID]:
        """Held records (in no cohort until their extract is released); a record stored before is kept as it
        was. The ids of those stored now."""
        stored = await insert_new_rows(  # new as a rule: COPY, unless an event came again
            self.conn,
            "eligibility.records",
            RECORD_COLUMNS,
            RECORD_TYPES,
            [_record_row(r) for r in records],
            "ON CONFLICT (record_id) DO NOTHING RETURNING record_id",
        )
        return set(stored)

    async def add_progress(self, rows: list[tuple[UUID, int, int]]) -> None:
        """(extract, records recorded in this batch, the sum of their digests mod 2^64)."""
        await self.conn.executemany(
            "INSERT INTO eligibility.extract_progress AS p (extract_id, recorded, digest) VALUES ($1, $2, $3) "
            "ON CONFLICT (extract_id) DO UPDATE SET recorded = p.recorded + EXCLUDED.recorded, "
            "digest = mod(p.digest + EXCLUDED.digest, 18446744073709551616)",
            rows,
        )

    async def ended_among(self, extract_ids: set[UUID]) -> set[UUID]:
        """Those of these extracts that failed: their late pupil events are discarded, never recorded."""
        rows = await self.conn.fetch(
            "SELECT extract_id FROM eligibility.extracts WHERE extract_id = ANY($1) AND status = 'failed'",
            list(extract_ids),
        )
        return {r["extract_id"] for r in rows}

    async def fail_extract(self, e: ExtractFailed) -> dict[str, int]:
        """An extract that failed: remember it, discard the records it left (never released)."""
        await lock_extracts(self.conn, {e.extract_id}, exclusive=True)
        await self.conn.execute(
            "INSERT INTO eligibility.extracts(extract_id, source, reference_date, academic_year, key_id, status, "
            "ended_reason) VALUES ($1,$2,$3,$4,$5,'failed',$6) ON CONFLICT (extract_id) DO UPDATE SET "
            "status='failed', ended_reason=EXCLUDED.ended_reason WHERE eligibility.extracts.released_at IS NULL",
            e.extract_id,
            e.source,
            e.reference_date,
            e.target_academic_year,
            e.key_id,
            e.code,
        )
        records = await self.conn.fetchval(
            "WITH d AS (DELETE FROM eligibility.records r WHERE r.extract_id=$1 AND NOT EXISTS (SELECT 1 FROM "
            "eligibility.extracts e WHERE e.extract_id=$1 AND e.released_at IS NOT NULL) RETURNING 1) "
            "SELECT count(*) FROM d",
            e.extract_id,
        )
        await self.conn.execute("DELETE FROM eligibility.extract_progress WHERE extract_id=$1", e.extract_id)
        return {"eligibility.records": records}

    async def withdraw_extract(self, extract_id: UUID, reason: str) -> bool:
        """A completed extract taken back: its records retired; its children to be walked again."""
        done = await self.conn.fetchval(
            "UPDATE eligibility.extracts SET status='withdrawn', ended_reason=$2, reconciled_at=NULL, "
            "released_through=NULL WHERE extract_id=$1 AND status='completed' RETURNING true",
            extract_id,
            reason,
        )
        if done:
            await self.conn.execute("UPDATE eligibility.records SET active=false WHERE extract_id=$1", extract_id)
        return bool(done)

    async def years_pending(self) -> list[str]:
        """Academic years with an extract not yet reconciled (held, part-way released, or withdrawn)."""
        rows = await self.conn.fetch(
            "SELECT DISTINCT academic_year FROM eligibility.extracts WHERE reconciled_at IS NULL "
            "AND status IN ('completed', 'withdrawn') ORDER BY 1"
        )
        return [r["academic_year"] for r in rows]

    async def start_release(self, extract_id: UUID) -> bool:
        """Mark a ready extract released (its records count in cohorts from now on); False if it already was."""
        return bool(
            await self.conn.fetchval(
                "UPDATE eligibility.extracts SET released_at=now() WHERE extract_id=$1 AND released_at IS NULL "
                "AND status='completed' RETURNING true",
                extract_id,
            )
        )

    async def release_cursor(self, extract_id: UUID) -> tuple[bool, UUID | None]:
        """(already reconciled, the last pupil id done) of an extract being walked."""
        r = await self.conn.fetchrow(
            "SELECT reconciled_at IS NOT NULL done, released_through FROM eligibility.extracts WHERE extract_id=$1",
            extract_id,
        )
        return (True, None) if r is None else (r["done"], r["released_through"])

    async def children_of(self, extract_ids: list[UUID], after: UUID | None, limit: int) -> list[UUID]:
        """The next ``limit`` children (pupil ids, in order, after ``after``) with a record in these extracts."""
        rows = await self.conn.fetch(CHILDREN_OF, extract_ids, after, limit)
        return [r["pupil_id"] for r in rows]

    async def released_findings(self, extract_id: UUID, pupil_ids: list[UUID]) -> list[Finding]:
        """What matching found about these children's records of the extract, as findings rows."""
        rows = await self.conn.fetch(
            "SELECT academic_year, pupil_id, school_dfe, match_findings FROM eligibility.records "
            "WHERE extract_id=$1 AND pupil_id = ANY($2) AND match_findings <> '[]'::jsonb",
            extract_id,
            pupil_ids,
        )
        return [
            Finding(r["academic_year"], r["pupil_id"], code, detail, r["school_dfe"])
            for r in rows
            for code, detail in json.loads(r["match_findings"])
        ]

    async def set_released_through(self, extract_id: UUID, pupil_id: UUID) -> None:
        await self.conn.execute(
            "UPDATE eligibility.extracts SET released_through=$2 WHERE extract_id=$1", extract_id, pupil_id
        )

    async def add_findings(self, findings: list[Finding]) -> None:
        for found in rounds(findings, Finding.key):  # a child and code twice: the later detail wins
            await insert_rows(
                self.conn,
                "eligibility.findings",
                FINDING_COLUMNS,
                ("text", "uuid", "text", "text", "text"),
                [_finding_row(f) for f in found],
                "ON CONFLICT (academic_year, pupil_id, code) "
                "DO UPDATE SET detail=EXCLUDED.detail, school_dfe=EXCLUDED.school_dfe, at=now()",
            )

    async def clear_findings(self, keys: list[FindingKey]) -> None:
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
    ) -> tuple[dict[UUID, list[Record]], dict[UUID, dict[str, Held]]]:
        """Each child's active records, and its memberships as last published."""
        records: dict[UUID, list[Record]] = defaultdict(list)
        ids = sorted(pupil_ids)  # the index in order
        for r in await self.conn.fetch(COHORT_RECORDS, ids):
            records[r[PUPIL_ID]].append(Record(*r))  # the columns in the Record's order
        held: dict[UUID, dict[str, Held]] = defaultdict(dict)
        for r in await self.conn.fetch(COHORT_HELD, year, ids):
            held[r["pupil_id"]][r["programme"]] = Held(r["status"], r["fingerprint"], r["revision"])
        return records, held

    async def save_cohort(
        self, upserts: list[CohortEntry], withdrawals: list[Withdrawal], outbox: list[OutboxEvent]
    ) -> None:
        """Memberships, withdrawals and their events, in the caller's transaction (each child and programme
        once: one recompute decides each membership once). A first revision is a membership not held before
        (the chunk read what is held under its children's locks), so those go by COPY."""
        for insert, entries in (
            (insert_new_rows, [u for u in upserts if u.revision == 1]),
            (insert_rows, [u for u in upserts if u.revision != 1]),
        ):
            await insert(
                self.conn,
                "eligibility.cohort",
                COHORT_COLUMNS,
                COHORT_TYPES,
                [_cohort_row(u) for u in entries],
                COHORT_UPSERT,
            )
        if withdrawals:
            await self.conn.execute(
                "UPDATE eligibility.cohort c SET status='withdrawn', revision=w.revision, updated_at=now() "
                "FROM unnest($1::text[], $2::text[], $3::uuid[], $4::int[]) AS w(y, p, pupil, revision) "
                "WHERE c.academic_year=w.y AND c.programme=w.p AND c.pupil_id=w.pupil",
                *map(list, zip(*map(_withdrawal_row, withdrawals), strict=True)),
            )
        await self.queue_events(outbox)

    async def queue_events(self, outbox: list[OutboxEvent]) -> None:
        """(event id, key, payload) into the outbox, in order, in the caller's transaction; an id queued twice once."""
        await insert_new_rows(
            self.conn,
            "eligibility.outbox",
            ("event_id", "key", "payload"),
            ("uuid", "bytea", "text"),
            outbox,
            "ON CONFLICT DO NOTHING",
        )

    async def add_extracts(self, completed: list[ExtractCompleted]) -> None:
        """Completed extracts, with the count and checksum of their pupil events; one that already failed
        stays failed."""
        await self.conn.executemany(
            "INSERT INTO eligibility.extracts(extract_id, source, reference_date, academic_year, accepted, "
            "supersedes, key_id, completed_at, records_digest) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
            "ON CONFLICT (extract_id) DO NOTHING",
            [
                (
                    e.extract_id,
                    e.source,
                    e.reference_date,
                    e.target_academic_year,
                    e.accepted,
                    e.supersedes,
                    e.key_id,
                    e.occurred_at,
                    int(e.records_digest, 16) if e.records_digest else None,
                )
                for e in completed
            ],
        )

    async def ready_extracts(self, year: str) -> list[ReadyExtract]:
        return [ReadyExtract(r["extract_id"], r["status"], r["supersedes"]) for r in await self.conn.fetch(READY, year)]

    async def retire_extract(self, extract_id: UUID) -> set[UUID]:
        """Deactivate a superseded extract's records; the children they belonged to."""
        rows = await self.conn.fetch(
            "UPDATE eligibility.records SET active=false WHERE extract_id=$1 AND active RETURNING pupil_id", extract_id
        )
        return {r["pupil_id"] for r in rows}

    async def mark_reconciled(self, extract_id: UUID) -> None:
        await self.conn.execute("UPDATE eligibility.extracts SET reconciled_at=now() WHERE extract_id=$1", extract_id)
