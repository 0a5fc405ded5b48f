"""Eligibility use cases. Each batch is one transaction: the processed-event ids, the state
change and the outgoing cohort events (outbox) commit together; the outbox is published after
commit, with deterministic event ids, so a crash anywhere duplicates nothing downstream.

Concurrency: pupil events are keyed by match key, so one child's events land on one partition and
partitions are the unit of concurrency: several instances record pupils of the same academic year
at once. Each batch holds a transaction-level advisory lock per match key (in sorted order, so no
deadlock), which keeps a partition handed over in a rebalance from being matched twice at once,
and a shared lock on its academic year. Reconciling a completed extract (a replacement dataset
retiring the one it supersedes touches children on every partition) takes that year's lock
exclusively, in its own short transaction, and only when an extract is found complete.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from sais_shared import ops
from sais_shared.clock import Clock
from sais_shared.crypto import Sealed
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    ExtractCompleted,
    PupilPersonal,
    PupilRecorded,
    pupil_aad,
    stable_id,
)
from sais_shared.kafka import claim_new
from sais_shared.keystore import KeyStore
from sais_shared.outbox import flush_outbox
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import (
    academic_year_label,
    expected_year_group,
    parse_academic_year,
    roll_forward,
)

from ..domain.model import Candidate, Record, match, memberships, unknown_sex_findings
from ..domain.rules import YearRules

log = structlog.get_logger("sais.eligibility")


@dataclass
class EligibilityService(FollowsProtocol):
    pool: asyncpg.Pool
    keys: KeyStore
    protocol_ref: ProtocolRef
    rules: dict[str, YearRules]
    cohort_publisher: Any
    clock: Clock


    # --- pupils ---------------------------------------------------------------------------

    async def handle_pupils(self, events: list[PupilRecorded]) -> None:
        shredded = await self.keys.destroyed_among({e.personal.key_id for e in events})
        if shredded:  # replayed events of deleted data: nothing left to process
            log.info("pupils.skipped_deleted", events=sum(e.personal.key_id in shredded for e in events))
            events = [e for e in events if e.personal.key_id not in shredded]
            if not events:
                return
        by_year: dict[str, list[PupilRecorded]] = defaultdict(list)
        for e in events:
            rule = self.protocol.source(e.source)
            by_year[academic_year_label(rule.target_academic_year(e.reference_date))].append(e)
        keys = await self.keys.get_many({e.personal.key_id for e in events})
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim_new(conn, "eligibility.processed", [e.event_id for e in events])
            for year in sorted(by_year):
                batch = [e for e in by_year[year] if e.event_id in fresh]
                if batch:
                    await _lock_year(conn, year, exclusive=False)
                    await _lock_children(conn, year, {e.match_key for e in batch})
                    await self._record(conn, year, batch, keys)
        for year in sorted(by_year):
            await self.reconcile_if_ready(year)
        await self.flush_outbox()

    async def reconcile_if_ready(self, year: str) -> None:
        """Reconcile the extracts of ``year`` whose rows are all recorded. The check runs without a
        lock; the batch that commits an extract's last row always sees it complete."""
        if not await self.pool.fetchval(f"SELECT EXISTS ({_READY})", year):
            return
        async with self.pool.acquire() as conn, conn.transaction():
            await _lock_year(conn, year, exclusive=True)
            await self._reconcile_ready(conn, year)

    async def _record(self, conn: asyncpg.Connection, year: str, events: list[PupilRecorded], keys) -> None:
        start = parse_academic_year(year)
        match_keys = list({e.match_key for e in events})
        rows = await conn.fetch(
            "SELECT match_key, pupil_id, array_agg(postcode_key) pk, array_agg(extract_id) ex "
            "FROM eligibility.records WHERE academic_year=$1 AND match_key = ANY($2) AND active "
            "GROUP BY match_key, pupil_id",
            year, match_keys,
        )
        candidates: dict[str, list[Candidate]] = defaultdict(list)
        for r in rows:
            candidates[r["match_key"]].append(Candidate(r["pupil_id"], frozenset(r["pk"]), frozenset(r["ex"])))

        kek = self.keys.kek
        inserts, findings, touched = [], [], set()
        opened: dict[UUID, PupilPersonal] = {}  # record id → personal fields, so _recompute opens each once
        for e in events:
            personal = keys[e.personal.key_id].open_model(e.personal, PupilPersonal, e.aad())
            opened[e.record_id] = personal
            postcode_key = kek.blind_index(personal.postcode)
            m = match(candidates[e.match_key], postcode_key, e.extract_id)
            pupil_id = m.pupil_id or stable_id("pupil", year, e.record_id)
            target = roll_forward(e.year_group, self.protocol.source(e.source).roll_forward_years)
            dob_year = expected_year_group(personal.date_of_birth, start)
            content_key = kek.blind_index(personal.model_dump_json())
            inserts.append((e.record_id, e.extract_id, year, pupil_id, e.match_key, postcode_key, content_key,
                            e.source, e.reference_date, e.occurred_at, e.school_dfe, e.school_name, e.year_group,
                            target, dob_year, e.gender, e.personal.key_id, e.personal.model_dump_json()))
            if m.postcode_differs:
                findings.append((year, pupil_id, "matched-postcode-differs",
                                 "matched on name and date of birth; postcode differs (a move, or two children?)",
                                 e.school_dfe))
            if m.ambiguous:
                findings.append((year, pupil_id, "ambiguous-match",
                                 "same name and date of birth as two or more children; not merged", e.school_dfe))
            if dob_year != target:
                findings.append((year, pupil_id, "out-of-year-group",
                                 f"taught in year {target}; date of birth implies year {dob_year}", e.school_dfe))
            # make this record a candidate for later rows of the same batch
            existing = next((c for c in candidates[e.match_key] if c.pupil_id == pupil_id), None)
            if existing:
                candidates[e.match_key].remove(existing)
                candidates[e.match_key].append(Candidate(pupil_id, existing.postcode_keys | {postcode_key},
                                                         existing.extract_ids | {e.extract_id}))
            else:
                candidates[e.match_key].append(Candidate(pupil_id, frozenset({postcode_key}), frozenset({e.extract_id})))
            touched.add(pupil_id)

        await conn.executemany(
            "INSERT INTO eligibility.records(record_id, extract_id, academic_year, pupil_id, match_key, postcode_key, "
            "content_key, source, reference_date, received_at, school_dfe, school_name, recorded_year_group, "
            "year_group, dob_year_group, gender, key_id, personal) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,"
            "$13,$14,$15,$16,$17,$18::jsonb) ON CONFLICT (record_id) DO NOTHING",
            inserts,
        )
        await self._add_findings(conn, findings)
        await self._recompute(conn, year, touched, opened)

    async def _add_findings(self, conn: asyncpg.Connection, findings: list[tuple]) -> None:
        if findings:
            await conn.executemany(
                "INSERT INTO eligibility.findings(academic_year, pupil_id, code, detail, school_dfe) "
                "VALUES ($1,$2,$3,$4,$5) ON CONFLICT (academic_year, pupil_id, code) "
                "DO UPDATE SET detail=EXCLUDED.detail, school_dfe=EXCLUDED.school_dfe, at=now()",
                findings,
            )

    # --- cohort ---------------------------------------------------------------------------

    async def _recompute(self, conn: asyncpg.Connection, year: str, pupil_ids: set[UUID],
                         opened: dict[UUID, PupilPersonal] | None = None) -> None:
        """Bring the cohort of these children in line with their active records; write the outbox.
        ``opened``: personal fields already opened in this batch, by record id."""
        opened = opened or {}
        rules = self.rules.get(year)
        if not pupil_ids:
            return
        if rules is None:
            log.warning("eligibility.no_rules", academic_year=year, pupils=len(pupil_ids))
            return
        recs = await conn.fetch(
            "SELECT * FROM eligibility.records WHERE pupil_id = ANY($1) AND active", list(pupil_ids)
        )
        by_pupil: dict[UUID, list[asyncpg.Record]] = defaultdict(list)
        for r in recs:
            by_pupil[r["pupil_id"]].append(r)
        current = await conn.fetch(
            "SELECT programme, pupil_id, status, fingerprint, revision FROM eligibility.cohort "
            "WHERE academic_year=$1 AND pupil_id = ANY($2)", year, list(pupil_ids),
        )
        cur = {(r["pupil_id"], r["programme"]): r for r in current}
        cur_by_pupil: dict[UUID, list[tuple[str, asyncpg.Record]]] = defaultdict(list)
        for r in current:
            cur_by_pupil[r["pupil_id"]].append((r["programme"], r))
        keys = await self.keys.get_many({r["key_id"] for r in recs})
        now = self.clock.now()
        upserts, outbox, findings = [], [], []
        changes: Counter[tuple[str, str]] = Counter()  # counted here, reported once per batch
        programmes = {p.key: p for p in rules.programmes}

        for pupil_id in pupil_ids:
            raw = by_pupil.get(pupil_id, [])
            records = [_record(r) for r in raw]
            raw_by_id = {r["record_id"]: r for r in raw}
            wanted = memberships(records, rules)
            for key in unknown_sex_findings(records, rules):
                findings.append((year, pupil_id, f"unknown-sex:{key}",
                                 f"sex not known; {key} is for {programmes[key].sexes} only", records[0].school_dfe))
            for key, mem in wanted.items():
                row = raw_by_id[mem.record.record_id]
                fp = _fingerprint(row)
                prev = cur.get((pupil_id, key))
                if prev is not None and prev["status"] == "active" and prev["fingerprint"] == fp:
                    continue  # unchanged: no event
                revision = (prev["revision"] if prev else 0) + 1
                change = "updated" if prev is not None and prev["status"] == "active" else "added"
                key_obj = keys[row["key_id"]]
                details = opened.get(row["record_id"]) or key_obj.open_model(
                    Sealed.model_validate_json(row["personal"]), PupilPersonal, record_aad(row))
                lineage = sorted({r.extract_id for r in records}, key=str)
                ev = CohortMemberAdded(
                    event_id=stable_id("cohort", year, key, pupil_id, revision), occurred_at=now, change=change,
                    academic_year=year, programme=mem.programme.id, dose=mem.programme.dose, pupil_id=pupil_id,
                    school_dfe=row["school_dfe"], school_name=row["school_name"], year_group=row["year_group"],
                    gender=row["gender"], source=row["source"], reference_date=row["reference_date"],
                    received_at=row["received_at"], extract_ids=lineage, revision=revision,
                    personal=Sealed(key_id=key_obj.key_id, nonce="", ciphertext=""),
                )
                ev = ev.model_copy(update={"personal": key_obj.seal_model(details, ev.aad())})
                upserts.append((year, key, pupil_id, mem.programme.dose, "active", fp, revision,
                                row["record_id"], row["school_dfe"], row["year_group"], row["gender"]))
                outbox.append((ev.event_id, pupil_id.bytes, ev.model_dump_json()))
                changes[(key, change)] += 1
            for key, prev in cur_by_pupil.get(pupil_id, ()):
                if key in wanted or prev["status"] != "active":
                    continue
                revision = prev["revision"] + 1
                p = programmes.get(key)
                ev = CohortMemberWithdrawn(
                    event_id=stable_id("cohort", year, key, pupil_id, revision), occurred_at=now,
                    academic_year=year, programme=p.id if p else key.split("-dose-")[0],
                    dose=p.dose if p else None, pupil_id=pupil_id, revision=revision,
                    reason="no longer in the cohort after a replacement dataset (ISP §9.6)" if not raw
                    else "details changed: no longer eligible",
                )
                await conn.execute(
                    "UPDATE eligibility.cohort SET status='withdrawn', revision=$4, updated_at=now() "
                    "WHERE academic_year=$1 AND programme=$2 AND pupil_id=$3", year, key, pupil_id, revision,
                )
                outbox.append((ev.event_id, pupil_id.bytes, ev.model_dump_json()))
                changes[(key, "withdrawn")] += 1

        if upserts:
            await conn.executemany(
                "INSERT INTO eligibility.cohort(academic_year, programme, pupil_id, dose, status, fingerprint, "
                "revision, record_id, school_dfe, year_group, gender) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11) "
                "ON CONFLICT (academic_year, programme, pupil_id) DO UPDATE SET status=EXCLUDED.status, "
                "fingerprint=EXCLUDED.fingerprint, revision=EXCLUDED.revision, record_id=EXCLUDED.record_id, "
                "school_dfe=EXCLUDED.school_dfe, year_group=EXCLUDED.year_group, gender=EXCLUDED.gender, "
                "updated_at=now()",
                upserts,
            )
        await self._add_findings(conn, findings)
        for (key, change), n in changes.items():
            ops.COHORT_EVENTS.labels(key, change).inc(n)
        if outbox:
            await conn.executemany(
                "INSERT INTO eligibility.outbox(event_id, key, payload) VALUES ($1,$2,$3) ON CONFLICT DO NOTHING",
                outbox,
            )

    # --- extracts and replacement datasets -------------------------------------------------

    async def handle_extracts(self, events: list[ExtractCompleted]) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            fresh = await claim_new(conn, "eligibility.processed", [e.event_id for e in events])
            for e in events:
                if e.event_id not in fresh:
                    continue
                await conn.execute(
                    "INSERT INTO eligibility.extracts(extract_id, source, reference_date, academic_year, accepted, "
                    "supersedes, key_id, completed_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8) "
                    "ON CONFLICT (extract_id) DO NOTHING",
                    e.extract_id, e.source, e.reference_date, e.target_academic_year, e.accepted, e.supersedes,
                    e.key_id, e.occurred_at,
                )
            for year in sorted({e.target_academic_year for e in events}):
                await _lock_year(conn, year, exclusive=True)
                await self._reconcile_ready(conn, year)
        await self.flush_outbox()

    async def _reconcile_ready(self, conn: asyncpg.Connection, year: str) -> None:
        """An extract is complete when all its accepted rows are recorded; then a replacement
        dataset retires the extract it supersedes, withdrawing children no longer present."""
        ready = await conn.fetch(_READY, year)
        for r in ready:
            if r["supersedes"] is not None:
                retired = await conn.fetch(
                    "UPDATE eligibility.records SET active=false WHERE extract_id=$1 AND active RETURNING pupil_id",
                    r["supersedes"],
                )
                await self._recompute(conn, year, {x["pupil_id"] for x in retired})
                log.info("extract.replaced", extract_id=str(r["extract_id"]), superseded=str(r["supersedes"]),
                         records_retired=len(retired))
            await conn.execute("UPDATE eligibility.extracts SET reconciled_at=now() WHERE extract_id=$1",
                               r["extract_id"])
            log.info("extract.reconciled", extract_id=str(r["extract_id"]), academic_year=year)

    # --- outbox ---------------------------------------------------------------------------

    async def flush_outbox(self) -> int:
        return await flush_outbox(self.pool, "eligibility.outbox", self.cohort_publisher)


# Extracts of an academic year ($1) not yet reconciled whose accepted rows are all recorded.
_READY = ("SELECT e.extract_id, e.supersedes FROM eligibility.extracts e WHERE e.academic_year=$1 "
          "AND e.reconciled_at IS NULL AND e.accepted = "
          "(SELECT count(*) FROM eligibility.records r WHERE r.extract_id = e.extract_id)")


async def _lock_year(conn: asyncpg.Connection, year: str, *, exclusive: bool) -> None:
    fn = "pg_advisory_xact_lock" if exclusive else "pg_advisory_xact_lock_shared"
    await conn.execute(f"SELECT {fn}(hashtext($1))", f"eligibility:{year}")


async def _lock_children(conn: asyncpg.Connection, year: str, match_keys: set[str]) -> None:
    """One exclusive lock per child (match key) of the batch, taken in one sorted sweep."""
    await conn.execute(
        "SELECT pg_advisory_xact_lock(2, h) FROM (SELECT DISTINCT hashtext($1 || k) h "
        "FROM unnest($2::text[]) k ORDER BY h) s", f"{year}:", sorted(match_keys))


def record_aad(row: asyncpg.Record) -> bytes:
    """The context a stored record's sealed fields were sealed under (its pupil event's)."""
    return pupil_aad(row["extract_id"], row["record_id"], source=row["source"], reference_date=row["reference_date"],
                     school_dfe=row["school_dfe"], school_name=row["school_name"],
                     year_group=row["recorded_year_group"], gender=row["gender"], match_key=row["match_key"])


def _fingerprint(row: asyncpg.Record) -> str:
    return f"{row['content_key']}|{row['school_dfe']}|{row['school_name']}|{row['year_group']}|{row['gender']}"


def _record(r: asyncpg.Record) -> Record:
    return Record(r["record_id"], r["extract_id"], r["pupil_id"], r["source"], r["reference_date"],
                  r["received_at"], r["school_dfe"], r["school_name"], r["year_group"], r["gender"], r["key_id"])
