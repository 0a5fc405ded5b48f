"""Delivery's tables (members, batches and their parts, control, breaches, outbox) and what it reads of
the shared schema, as one unit of work: the SQL of delivery's use cases. Nothing here decides; the
domain (``domain/batch.py``) and the service layer do."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any
from uuid import UUID

import asyncpg
from sais_shared.db import insert_new_rows, insert_rows, rounds
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked
from sais_shared.keystore import audit
from sais_shared.outbox import flush_outbox

from ..domain.batch import Batch, Part, PartStatus, WindowSummary
from ..domain.member import COLUMNS, Member
from ..domain.parts import RowSize, SchoolLoad
from ..service_layer.ports import OpenBreach, Publisher

# The members a window delivers ($1 academic year, $2 the window's sources: those the child first came
# in through), and the fingerprint of their content: a batch is the same batch exactly when this is.
WINDOW_MEMBERS = "academic_year=$1 AND status='active' AND window_source = ANY($2)"
CONTENT_SHA256 = (
    "encode(sha256(convert_to(coalesce(string_agg(programme_key || '|' || pupil_id || '|' || revision, "
    "E'\\n' ORDER BY programme_key, pupil_id), ''), 'UTF8')), 'hex')"
)
MEMBER = ", ".join(COLUMNS)
# A batch's columns, less pupil_ids: a county's batch lists a million ids, which delivery never needs.
BATCH = (
    "batch_id, window_name, academic_year, recipient, message_id, status, content_sha256, counts, files, "
    "extract_ids, key_ids, replaces_batch, protocol_version, protocol_sha256, delete_by, attempts, last_error, "
    "prepared_at, sent_at, smtp_reply"
)
PART = (
    "part_no, message_id, status, segments, counts, files, size_bytes, attempts, last_error, smtp_reply, "
    "attempted_at, sent_at"
)
MEMBER_COLUMNS = (
    *("academic_year", "programme", "dose", "pupil_id", "status", "revision", "school_dfe", "school_name"),
    *("year_group", "gender", "source", "reference_date", "received_at", "extract_ids", "key_id", "personal"),
    *("window_source", "csv_bytes", "mavis_bytes"),
)
MEMBER_TYPES = (
    *("text", "text", "int", "uuid", "text", "int", "text", "text", "text", "text", "text", "date"),
    *("timestamptz", "uuid[]", "uuid", "text", "text", "int", "int"),
)
UPSERT = (
    "ON CONFLICT (academic_year, programme_key, pupil_id) DO UPDATE SET status=EXCLUDED.status, "
    "revision=EXCLUDED.revision, school_dfe=EXCLUDED.school_dfe, school_name=EXCLUDED.school_name, "
    "year_group=EXCLUDED.year_group, gender=EXCLUDED.gender, source=EXCLUDED.source, "
    "reference_date=EXCLUDED.reference_date, received_at=EXCLUDED.received_at, extract_ids=EXCLUDED.extract_ids, "
    "key_id=EXCLUDED.key_id, personal=EXCLUDED.personal, csv_bytes=EXCLUDED.csv_bytes, "
    "mavis_bytes=EXCLUDED.mavis_bytes, updated_at=now(), "
    # the window stays the one the child first came in through (a withdrawal carries no source)
    "window_source=CASE WHEN delivery.members.window_source = '' THEN EXCLUDED.window_source "
    "ELSE delivery.members.window_source END "
    "WHERE delivery.members.revision < EXCLUDED.revision"
)

# A withdrawal of members held ($1 academic year, $2 programme, $3 dose, $4 pupil, $5 revision, one array each),
# each for a revision newer than its own: it keeps no personal data. A member not held is not made up.
WITHDRAW = (
    "UPDATE delivery.members m SET status='withdrawn', revision=w.revision, school_dfe='', school_name='', "
    "year_group='', gender='', source='', reference_date=NULL, received_at=NULL, extract_ids='{}', key_id=NULL, "
    "personal=NULL, csv_bytes=NULL, mavis_bytes=NULL, updated_at=now() "
    "FROM unnest($1::text[], $2::text[], $3::int[], $4::uuid[], $5::int[]) AS w(y, programme, dose, pupil, revision) "
    "WHERE m.academic_year = w.y AND m.programme_key = w.programme || coalesce('-dose-' || w.dose, '') "
    "AND m.pupil_id = w.pupil AND m.revision < w.revision"
)


def _json(value: str | None, empty: Any = None) -> Any:
    return empty if value is None else json.loads(value)


def _part(r: asyncpg.Record) -> Part:
    return Part(
        part_no=r["part_no"],
        message_id=r["message_id"],
        status=PartStatus(r["status"]),
        segments=_json(r["segments"], []),
        counts=_json(r["counts"]),
        files=_json(r["files"]),
        size_bytes=r["size_bytes"],
        attempts=r["attempts"],
        last_error=r["last_error"],
        smtp_reply=r["smtp_reply"],
        attempted_at=r["attempted_at"],
        sent_at=r["sent_at"],
    )


def _batch(r: asyncpg.Record, parts: list[asyncpg.Record]) -> Batch:
    return Batch(
        batch_id=r["batch_id"],
        window=r["window_name"],
        academic_year=r["academic_year"],
        recipient=r["recipient"],
        message_id=r["message_id"],
        status=PartStatus(r["status"]),
        content_sha256=r["content_sha256"],
        counts=json.loads(r["counts"]),
        extract_ids=tuple(r["extract_ids"]),
        key_ids=tuple(r["key_ids"]),
        protocol_version=r["protocol_version"],
        protocol_sha256=r["protocol_sha256"],
        prepared_at=r["prepared_at"],
        delete_by=r["delete_by"],
        replaces_batch=r["replaces_batch"],
        files=json.loads(r["files"]),
        attempts=r["attempts"],
        last_error=r["last_error"],
        sent_at=r["sent_at"],
        smtp_reply=r["smtp_reply"],
        parts=tuple(_part(p) for p in parts),
    )


def _member_row(e: CohortMemberAdded, size: RowSize | None) -> tuple[Any, ...]:
    head = (e.academic_year, e.programme, e.dose, e.pupil_id)
    clear = (e.school_dfe, e.school_name, e.year_group, e.gender, e.source, e.reference_date, e.received_at)
    sealed = (e.extract_ids, e.personal.key_id, e.personal.model_dump_json())
    sized = (size.csv_bytes, size.mavis_bytes) if size else (None, None)
    return (*head, "active", e.revision, *clear, *sealed, e.source, *sized)


def _member_key(e: CohortMemberAdded | CohortMemberWithdrawn) -> tuple[Any, ...]:
    return (e.academic_year, e.programme, e.dose, e.pupil_id)


class PgBatches:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def _load(self, where: str, *args: Any, lock: bool = False) -> Batch | None:
        held = " FOR UPDATE" if lock else ""  # one sender at a time moves a batch on
        r = await self.conn.fetchrow(f"SELECT {BATCH} FROM delivery.batches WHERE {where}{held}", *args)
        if r is None:
            return None
        parts = await self.conn.fetch(
            f"SELECT {PART} FROM delivery.batch_parts WHERE batch_id=$1 ORDER BY part_no", r["batch_id"]
        )
        return _batch(r, parts)

    async def get(self, batch_id: UUID) -> Batch | None:
        return await self._load("batch_id=$1", batch_id)

    async def hold(self, batch_id: UUID) -> Batch | None:
        return await self._load("batch_id=$1", batch_id, lock=True)

    async def pending(self, window: str, academic_year: str) -> Batch | None:
        return await self._load(
            "window_name=$1 AND academic_year=$2 AND status IN ('prepared', 'sending', 'failed') "
            "ORDER BY prepared_at DESC LIMIT 1",
            window,
            academic_year,
        )

    async def last_sent(self, window: str, academic_year: str, recipient: str) -> Batch | None:
        return await self._load(
            "window_name=$1 AND academic_year=$2 AND recipient=$3 AND status='sent' ORDER BY sent_at DESC LIMIT 1",
            window,
            academic_year,
            recipient,
        )

    async def add(self, batch: Batch, sources: Sequence[str]) -> bool:
        inserted = await self.conn.fetchval(
            "INSERT INTO delivery.batches(batch_id, window_name, academic_year, recipient, message_id, status, "
            "content_sha256, counts, files, extract_ids, key_ids, pupil_ids, replaces_batch, protocol_version, "
            "protocol_sha256, delete_by, prepared_at, part_count) SELECT $1,$2,$3,$4,$5,'prepared',$6,$7::jsonb,"
            "'[]'::jsonb,$8,$9, (SELECT coalesce(array_agg(DISTINCT pupil_id), '{}') FROM delivery.members "
            "WHERE academic_year=$3 AND status='active' AND window_source = ANY($15)), $10,$11,$16,$12,$13,$14 "
            "ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
            batch.batch_id,
            batch.window,
            batch.academic_year,
            batch.recipient,
            batch.message_id,
            batch.content_sha256,
            json.dumps(batch.counts),
            list(batch.extract_ids),
            list(batch.key_ids),
            batch.replaces_batch,
            batch.protocol_version,
            batch.delete_by,
            batch.prepared_at,
            batch.part_count,
            list(sources),
            batch.protocol_sha256,
        )
        if not inserted:
            return False
        await self.conn.executemany(
            "INSERT INTO delivery.batch_parts(batch_id, part_no, message_id, status, segments) "
            "VALUES ($1, $2, $3, 'prepared', $4::jsonb)",
            [(batch.batch_id, p.part_no, p.message_id, json.dumps(p.segments)) for p in batch.parts],
        )
        await self._assign_members(batch, sources)
        return True

    async def _assign_members(self, batch: Batch, sources: Sequence[str]) -> None:
        """Which child goes in which part: each part's segments are runs of a school's rows, in file order."""
        flat = [
            (g["school_dfe"], p.part_no, g["offset"], g["offset"] + g["limit"] if g["limit"] else 2**31 - 1)
            for p in batch.parts
            for g in p.segments
        ]
        schools, part_nos, lows, highs = (list(c) for c in zip(*flat, strict=True)) if flat else ([], [], [], [])
        await self.conn.execute(
            "INSERT INTO delivery.batch_members(batch_id, part_no, programme_key, pupil_id, revision) "
            "SELECT $3, p.part_no, m.programme_key, m.pupil_id, m.revision FROM "
            "(SELECT programme_key, pupil_id, revision, school_dfe, row_number() OVER (PARTITION BY school_dfe "
            f"ORDER BY programme_key, pupil_id) - 1 AS i FROM delivery.members WHERE {WINDOW_MEMBERS}) m "
            "JOIN unnest($4::text[], $5::int[], $6::int[], $7::int[]) AS p(school_dfe, part_no, lo, hi) "
            "ON p.school_dfe = m.school_dfe AND m.i >= p.lo AND m.i < p.hi",
            batch.academic_year,
            list(sources),
            batch.batch_id,
            schools,
            part_nos,
            lows,
            highs,
        )

    async def save(self, before: Batch, after: Batch) -> None:
        old = {p.part_no: p for p in before.parts}
        for p in after.parts:
            if p == old[p.part_no]:
                continue
            done = await self.conn.execute(
                "UPDATE delivery.batch_parts SET status=$3, counts=$4::jsonb, files=$5::jsonb, size_bytes=$6, "
                "attempts=$7, last_error=$8, smtp_reply=$9, attempted_at=$10, sent_at=$11 "
                "WHERE batch_id=$1 AND part_no=$2 AND status=$12",
                after.batch_id,
                p.part_no,
                p.status.value,
                None if p.counts is None else json.dumps(p.counts),
                None if p.files is None else json.dumps(p.files),
                p.size_bytes,
                p.attempts,
                p.last_error,
                p.smtp_reply,
                p.attempted_at,
                p.sent_at,
                old[p.part_no].status.value,
            )
            if done != "UPDATE 1":
                raise RuntimeError(f"batch {after.batch_id} part {p.part_no} changed meanwhile: nothing was saved")
        await self.conn.execute(
            "UPDATE delivery.batches SET status=$2, attempts=$3, last_error=$4, sent_at=$5, smtp_reply=$6, "
            "files=$7::jsonb, delete_by=$8, key_ids=$9, extract_ids=$10, "
            "message=CASE WHEN $2='sent' THEN NULL ELSE message END WHERE batch_id=$1",
            after.batch_id,
            after.status.value,
            after.attempts,
            after.last_error,
            after.sent_at,
            after.smtp_reply,
            json.dumps(after.files),
            after.delete_by,
            list(after.key_ids),
            list(after.extract_ids),
        )

    async def drop(self, batch_id: UUID) -> None:
        await self.conn.execute("DELETE FROM delivery.batch_members WHERE batch_id=$1", batch_id)  # no cascade
        await self.conn.execute("DELETE FROM delivery.batches WHERE batch_id=$1", batch_id)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        rows = await self.conn.fetch(
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

    async def counts(self) -> tuple[dict[str, int], int]:
        rows = await self.conn.fetch("SELECT status, count(*) n FROM delivery.batches GROUP BY status")
        sending = await self.conn.fetchval("SELECT count(*) FROM delivery.batch_parts WHERE status='sending'")
        return {r["status"]: r["n"] for r in rows}, sending


class PgMembers:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def window_size(self, academic_year: str, sources: Sequence[str]) -> int:
        return await self.conn.fetchval(
            f"SELECT count(*) FROM delivery.members WHERE {WINDOW_MEMBERS}", academic_year, list(sources)
        )

    async def extracts_received_before(self, academic_year: str, sources: Sequence[str], before: datetime) -> list[str]:
        rows = await self.conn.fetch(
            f"SELECT DISTINCT x FROM delivery.members, unnest(extract_ids) x WHERE {WINDOW_MEMBERS} "
            "AND received_at < $3 ORDER BY 1",
            academic_year,
            list(sources),
            before,
        )
        return [str(r["x"]) for r in rows]

    async def key_ids(self, academic_year: str, sources: Sequence[str]) -> list[UUID]:
        rows = await self.conn.fetch(
            f"SELECT DISTINCT key_id FROM delivery.members WHERE {WINDOW_MEMBERS}", academic_year, list(sources)
        )
        return [r["key_id"] for r in rows]

    async def by_school(self, academic_year: str, sources: Sequence[str]) -> AsyncIterator[Member]:
        async for r in self.conn.cursor(
            f"SELECT {MEMBER} FROM delivery.members WHERE {WINDOW_MEMBERS} ORDER BY school_dfe, programme_key, pupil_id",
            academic_year,
            list(sources),
            prefetch=2000,
        ):
            yield Member(*r)

    async def summary(self, academic_year: str, sources: Sequence[str]) -> WindowSummary:
        args = (academic_year, list(sources))
        stats = await self.conn.fetchrow(
            f"SELECT {CONTENT_SHA256} AS content, array_agg(DISTINCT key_id) AS key_ids FROM delivery.members "
            f"WHERE {WINDOW_MEMBERS}",
            *args,
        )
        extracts = await self.conn.fetch(
            f"SELECT DISTINCT x FROM delivery.members, unnest(extract_ids) x WHERE {WINDOW_MEMBERS} ORDER BY 1", *args
        )
        counts = await self.conn.fetch(
            f"SELECT programme_key, count(*) n FROM delivery.members WHERE {WINDOW_MEMBERS} GROUP BY 1 ORDER BY 1",
            *args,
        )
        return WindowSummary(
            stats["content"],
            sorted(stats["key_ids"] or [], key=str),  # none in an empty window
            [r["x"] for r in extracts],
            {r["programme_key"]: r["n"] for r in counts},
        )

    async def of_part(
        self, batch_id: UUID, part_no: int, academic_year: str, chunk: int = 2000
    ) -> AsyncIterator[Member]:
        """A part's members in file order, from a server-side cursor, ``chunk`` rows at a time. The next
        chunk is asked for before this one is handed out, so the server reads it while the caller renders."""
        cursor = await self.conn.cursor(
            f"SELECT {', '.join('m.' + c for c in COLUMNS)} FROM delivery.batch_members bm JOIN delivery.members m "
            "ON m.academic_year=$3 AND m.programme_key=bm.programme_key AND m.pupil_id=bm.pupil_id "
            "AND m.status='active' WHERE bm.batch_id=$1 AND bm.part_no=$2 ORDER BY m.programme_key, m.pupil_id",
            batch_id,
            part_no,
            academic_year,
        )
        pending = asyncio.ensure_future(cursor.fetch(chunk))
        try:
            while rows := await pending:
                pending = asyncio.ensure_future(cursor.fetch(chunk))
                await asyncio.sleep(0)  # the request for the next chunk goes out before these are worked
                for r in rows:
                    yield Member(*r)
        finally:
            if not pending.done():  # the caller stopped early: no fetch left running on the connection
                pending.cancel()
                await asyncio.gather(pending, return_exceptions=True)

    async def school_loads(
        self, academic_year: str, sources: Sequence[str], *, with_mavis: bool
    ) -> list[SchoolLoad] | None:
        size = "csv_bytes + mavis_bytes" if with_mavis else "csv_bytes"
        rows = await self.conn.fetch(
            f"SELECT school_dfe, count(*) n, sum({size}) total, max({size}) biggest, "
            f"count(*) FILTER (WHERE csv_bytes IS NULL OR mavis_bytes IS NULL) unmeasured "
            f"FROM delivery.members WHERE {WINDOW_MEMBERS} GROUP BY school_dfe ORDER BY school_dfe",
            academic_year,
            list(sources),
        )
        if any(r["unmeasured"] for r in rows):
            return None
        return [SchoolLoad(r["school_dfe"], r["n"], r["total"], r["biggest"]) for r in rows]

    async def apply(
        self, events: Sequence[CohortMemberAdded | CohortMemberWithdrawn], sizes: Mapping[UUID, RowSize]
    ) -> None:
        # in revision order, a round per revision of the same child (two statements each): "latest wins" and
        # the window a child first came in through stay exact
        for batch in rounds(sorted(events, key=lambda e: e.revision), _member_key):
            added = [e for e in batch if isinstance(e, CohortMemberAdded)]
            for insert, events in (  # a first revision is new as a rule (COPY), unless it came again
                (insert_new_rows, [e for e in added if e.revision == 1]),
                (insert_rows, [e for e in added if e.revision != 1]),
            ):
                rows = [_member_row(e, sizes.get(e.event_id)) for e in events]
                await insert(self.conn, "delivery.members", MEMBER_COLUMNS, MEMBER_TYPES, rows, UPSERT)
            if withdrawn := [(*_member_key(e), e.revision) for e in batch if isinstance(e, CohortMemberWithdrawn)]:
                await self.conn.execute(WITHDRAW, *map(list, zip(*withdrawn, strict=True)))

    async def record_coverage(self, checks: Sequence[CoverageChecked]) -> None:
        for e in sorted(checks, key=lambda e: e.occurred_at):
            await self.conn.execute(
                "INSERT INTO delivery.coverage(academic_year, protocol_id, protocol_version, gaps, checked_at) "
                "VALUES ($1,$2,$3,$4::jsonb,$5) ON CONFLICT (academic_year, protocol_id, protocol_version) DO UPDATE "
                "SET gaps=EXCLUDED.gaps, checked_at=EXCLUDED.checked_at "
                "WHERE delivery.coverage.checked_at <= EXCLUDED.checked_at",
                e.academic_year,
                e.protocol_id,
                e.protocol_version,
                json.dumps([g.description for g in e.gaps]),
                e.occurred_at,
            )

    async def coverage_gaps(self, academic_year: str, protocol_id: str, protocol_version: str) -> list[str] | None:
        gaps = await self.conn.fetchval(
            "SELECT gaps FROM delivery.coverage WHERE academic_year=$1 AND protocol_id=$2 AND protocol_version=$3",
            academic_year,
            protocol_id,
            protocol_version,
        )
        return _json(gaps)

    async def school_register(self, dfes: set[str]) -> dict[str, tuple[str, str]]:
        rows = await self.conn.fetch("SELECT dfe, urn, status FROM shared.schools WHERE dfe = ANY($1)", list(dfes))
        return {r["dfe"]: (r["urn"], r["status"]) for r in rows}


class PgSharing:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def get(self) -> tuple[bool, str | None]:
        r = await self.conn.fetchrow("SELECT suspended, reason FROM delivery.control WHERE id=1")
        return bool(r["suspended"]), r["reason"]

    async def set(self, suspended: bool, reason: str, actor: str) -> None:
        await self.conn.execute(
            "UPDATE delivery.control SET suspended=$1, reason=$2, changed_by=$3, changed_at=now() WHERE id=1",
            suspended,
            reason,
            actor,
        )


class PgBreaches:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def add(self, breach: dict[str, Any], actor: str) -> None:
        await self.conn.execute(
            "INSERT INTO delivery.breaches(breach_id, what, discovered_at, discovered_by, reported_at, reported_by, "
            "ico_decision_due) VALUES ($1,$2,$3,$4,$5,$6,$7)",
            breach["breach_id"],
            breach["what"],
            breach["discovered_at"],
            breach["discovered_by"],
            breach["reported_at"],
            actor,
            breach["ico_decision_due"],
        )

    async def notified(self, breach_id: UUID, notified: Iterable[str]) -> None:
        await self.conn.execute(
            "UPDATE delivery.breaches SET notified=to_jsonb($2::text[]) WHERE breach_id=$1", breach_id, list(notified)
        )

    async def close(self, breach_id: UUID, *, outcome: str, ico_notified: bool, resume: bool, actor: str) -> int | None:
        done = await self.conn.fetchval(
            "UPDATE delivery.breaches SET outcome=$2, ico_notified=$3, resumed=$4, closed_at=now(), closed_by=$5 "
            "WHERE breach_id=$1 AND closed_at IS NULL RETURNING breach_id",
            breach_id,
            outcome,
            ico_notified,
            resume,
            actor,
        )
        if done is None:
            return None
        return await self.conn.fetchval("SELECT count(*) FROM delivery.breaches WHERE closed_at IS NULL")

    async def open(self) -> list[OpenBreach]:
        rows = await self.conn.fetch(
            "SELECT breach_id, discovered_at, ico_decision_due, notified FROM delivery.breaches "
            "WHERE closed_at IS NULL ORDER BY discovered_at"
        )
        return [
            OpenBreach(r["breach_id"], r["discovered_at"], r["ico_decision_due"], _json(r["notified"], []))
            for r in rows
        ]


class PgTx:
    """One connection in one transaction: every repository of delivery over it."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.batches = PgBatches(conn)
        self.members = PgMembers(conn)
        self.sharing = PgSharing(conn)
        self.breaches = PgBreaches(conn)

    async def installation_id(self) -> UUID:
        return await self.conn.fetchval("SELECT installation_id FROM shared.installation")

    async def audit(
        self, actor: str, action: str, subject: str, details: dict[str, Any], protocol_version: str
    ) -> None:
        await audit(self.conn, actor, action, subject, details, protocol_version)

    async def queue(self, event: Any, key: bytes) -> None:
        await self.conn.execute(
            "INSERT INTO delivery.outbox(event_id, key, payload) VALUES ($1,$2,$3)",
            event.event_id,
            key,
            event.model_dump_json(),
        )


class PgDeliveryUnitOfWork:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @asynccontextmanager
    async def __call__(self, *, snapshot: bool = False) -> AsyncIterator[PgTx]:
        async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read" if snapshot else None):
            yield PgTx(conn)

    async def flush_outbox(self, publisher: Publisher) -> int:
        return await flush_outbox(self.pool, "delivery.outbox", publisher)
