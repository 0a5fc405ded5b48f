"""Eligibility use cases. Each batch is one transaction: the state change, what says the batch's
events were seen (a pupil event's record itself; an extract event's id) and the outgoing cohort events
(outbox) commit together; the outbox is published after commit, with deterministic event ids, so a crash
anywhere duplicates nothing downstream.

Concurrency: pupil events are keyed by match key, so one child's events land on one partition and
partitions are the unit of concurrency: several instances record pupils of the same academic year
at once. Each batch holds a transaction-level advisory lock per match key (in sorted order, so no
deadlock), which keeps a partition handed over in a rebalance from being matched twice at once,
and a shared lock on its academic year. Starting the release of a completed extract (a replacement
dataset retiring the one it supersedes touches children on every partition) takes that year's lock
exclusively, in its own short transaction, and only when an extract is found complete. The walk's
chunks then hold the year's lock shared, like the consumers' batches, and run beside them: a batch
writes only held records and its extracts' progress, which a walk never reads (it reads released
records), and a walk writes only the cohort, its findings, its outbox and its cursor, which a batch
never reads. A chunk locks its extract's walk (one walker of an extract at a time: its cursor) and
each child it recomputes (two walks of two extracts never recompute one child at once), each set in
one sorted sweep.

All or nothing: a pupil event is recorded and matched as it comes, but its record is *held*: it is
in no cohort until its extract is released, that is, once its extract-completed event has come and
every one of its pupil events is recorded (the count and the order-free checksum ingest sent).
Releasing walks the extract's children (and those of the extract it supersedes) in chunks, each its
own transaction, resumable from the last child done. It runs in a task of its own (``run_releases``),
never inside a consumer's batch: a consumer that kept a batch longer than ``max.poll.interval.ms`` would
be taken out of its group, have its commit refused and stop. An extract that failed is discarded (its late
events too); a withdrawn one has its records retired and its children walked again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from types import SimpleNamespace as Namespace
from uuid import UUID

import structlog
from sais_shared import ops
from sais_shared.crypto import DataKey, Sealed
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    CoverageChecked,
    CoverageGap,
    ExtractCompleted,
    ExtractFailed,
    ExtractWithdrawn,
    PupilPersonal,
    PupilRecorded,
    cohort_aad_of,
    record_digest_part,
    stable_id,
)
from sais_shared.ports import Clock, Keys
from sais_shared.protocol import Protocol
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import (
    academic_year_label,
    expected_year_group,
    parse_academic_year,
    roll_forward,
)

from ..domain.cohort import CohortEntry, Finding, FindingKey, Held, ReadyExtract, Withdrawal, diff_cohort
from ..domain.coverage import Gap, coverage_gaps
from ..domain.model import Candidate, Record, match, memberships, schools_now, unknown_sex_findings
from ..domain.rules import Programme, YearRules
from .ports import CohortOutbox, OutboxEvent, Repository, UnitOfWork

log = structlog.get_logger("sais.eligibility")

SCHOOL_NOT_KNOWN = "school-not-yet-known"  # finding: a child rolled forward past the school's last year
RELEASE_CHUNK = 2000  # children recomputed per transaction when an extract is released or withdrawn
WITHDRAWN_REASON = "its extract was withdrawn by the local authority"


class Releases:
    """The academic years whose extracts may have become ready, asked for by the consumers and taken by the
    releaser (:meth:`EligibilityService.run_releases`). A hint, not a record: what is ready is decided from
    the database when it is taken, and a year asked for twice before it is taken is walked once."""

    def __init__(self) -> None:
        self._years: set[str] = set()
        self._asked = asyncio.Event()

    def want(self, years) -> None:
        if years:
            self._years.update(years)
            self._asked.set()

    def take(self) -> set[str]:
        years, self._years = self._years, set()
        self._asked.clear()
        return years

    async def wait(self, timeout_s: float) -> bool:
        """Until a year is asked for (True) or ``timeout_s`` has passed (False)."""
        try:
            await asyncio.wait_for(self._asked.wait(), timeout_s)
        except TimeoutError:
            return False
        return True


@dataclass
class EligibilityService(FollowsProtocol):
    uow: UnitOfWork
    keys: Keys
    protocol_ref: ProtocolRef
    rules: dict[str, YearRules]
    outbox: CohortOutbox
    clock: Clock
    releases: Releases = field(default_factory=lambda: Releases())

    # --- pupils ---------------------------------------------------------------------------

    async def handle_pupils(self, events: list[PupilRecorded]) -> None:
        shredded = await self.keys.destroyed_among({e.personal.key_id for e in events})
        if shredded:  # replayed events of deleted (or failed) extracts: nothing left to process
            log.info("pupils.skipped_deleted", events=sum(e.personal.key_id in shredded for e in events))
            events = [e for e in events if e.personal.key_id not in shredded]
            if not events:
                return
        by_year: dict[str, list[PupilRecorded]] = defaultdict(list)
        for e in events:
            rule = self.protocol.source(e.source)
            by_year[academic_year_label(rule.target_academic_year(e.reference_date))].append(e)
        keys = await self.keys.get_many({e.personal.key_id for e in events})
        async with self.uow() as repo:
            # an extract failed or deleted meanwhile: its lock orders this batch before or after that
            await repo.lock_extracts({e.extract_id for e in events}, exclusive=False)
            failed = await repo.ended_among({e.extract_id for e in events})
            if late := await repo.keys_destroyed_among({e.personal.key_id for e in events}):
                failed |= {e.extract_id for e in events if e.personal.key_id in late}
            for year in sorted(by_year):  # an event seen before stores nothing: its record is there (_record)
                batch = [e for e in by_year[year] if e.extract_id not in failed]
                if batch:
                    await repo.lock_year(year, exclusive=False)
                    await repo.lock_children(year, {e.match_key for e in batch})
                    await self._record(repo, year, batch, keys)
        self.releases.want(by_year)  # released beside the consumer, never inside its batch

    async def reconcile_if_ready(self, year: str) -> None:
        """Release (or walk again) the extracts of ``year`` that are ready. The check runs without a
        lock; the batch that commits an extract's last row always sees it complete."""
        async with self.uow() as repo:
            if not await repo.any_ready(year):
                return
            ready = await repo.ready_extracts(year)
        for r in ready:
            await self._walk(year, r)

    async def reconcile_pending(self) -> None:
        """Finish every release or withdrawal not yet done, whatever its year: one a stop cut short, one
        whose batch came to another instance."""
        async with self.uow() as repo:
            years = await repo.years_pending()
        for year in years:
            await self.reconcile_if_ready(year)
        await self.flush_outbox()

    async def release_wanted(self) -> None:
        """Release (or walk again) the extracts of the years the consumers have asked for since last time."""
        years = self.releases.take()
        try:
            for year in sorted(years):
                await self.reconcile_if_ready(year)
            await self.flush_outbox()
        except BaseException:
            self.releases.want(years)  # asked again: a chunk done is kept, the walk resumes after it
            raise

    async def run_releases(self, check_every_s: float, retry_s: float = 5.0) -> None:
        """The releaser, a task of its own beside the consumers, for the service's life. A release walks a
        whole extract (a million children at the largest), far longer than a consumer may take over a batch
        before the broker takes it out of its group (``max.poll.interval.ms``), so the consumers only ask
        for it (:class:`Releases`). It starts with every year pending (a release a stop cut short), then
        releases what is asked for as it is asked, and looks at every pending year again every
        ``check_every_s``. A failure (a server away) is logged and retried after ``retry_s``: nothing is
        lost, since what is ready is read from the database each time."""
        pending = True
        while True:
            try:
                if pending:
                    await self.reconcile_pending()
                await self.release_wanted()
            except Exception as exc:
                log.error("release.failed", error=type(exc).__name__)
                pending = True
                await asyncio.sleep(retry_s)
                continue
            pending = not await self.releases.wait(check_every_s)

    async def _walk(self, year: str, r: ReadyExtract) -> None:
        """Recompute every child of a ready extract, a chunk per transaction: a completed one is released
        (its records count from now on; the extract it supersedes is retired), a withdrawn one's children
        leave. Resumable: the last child done is kept with each chunk."""
        extract_id = r.extract_id
        subjects = [extract_id]
        why = WITHDRAWN_REASON if r.status == "withdrawn" else None
        if r.status == "completed":
            async with self.uow() as repo:
                await repo.lock_year(year, exclusive=True)
                if await repo.start_release(extract_id) and r.supersedes is not None:
                    retired = await repo.retire_extract(r.supersedes)
                    log.info(
                        "extract.replaced",
                        extract_id=str(extract_id),
                        superseded=str(r.supersedes),
                        records_retired=len(retired),
                    )
            if r.supersedes is not None:
                subjects.append(r.supersedes)
        # A chunk's events are published while the next chunk is worked: the broker's acknowledgements and
        # the outbox's delete wait on servers, not on this process. One chunk at a time, in order, from memory:
        # the outbox holds them only for a stop before they went (flush_outbox, at start and after each walk).
        flushing: asyncio.Future[int] | None = None
        try:
            while True:
                async with self.uow() as repo:
                    await repo.lock_year(year, exclusive=False)  # beside the consumers (module docstring)
                    await repo.lock_walk(extract_id)
                    done, after = await repo.release_cursor(extract_id)
                    if done:
                        break  # another instance finished it
                    pupils = await repo.children_of(subjects, after, RELEASE_CHUNK)
                    if not pupils:
                        await repo.mark_reconciled(extract_id)
                        log.info("extract.reconciled", extract_id=str(extract_id), academic_year=year, status=r.status)
                        break
                    await repo.lock_pupils(year, pupils)
                    if why is None:
                        await repo.add_findings(await repo.released_findings(extract_id, pupils))
                    queued = await self._recompute(repo, year, set(pupils), why=why)
                    await repo.set_released_through(extract_id, pupils[-1])
                if flushing is not None:
                    await flushing
                flushing = asyncio.ensure_future(self.outbox.publish(queued))
        except BaseException:
            if flushing is not None:  # never left running beside a retry; what it did not publish stays queued
                await asyncio.gather(flushing, return_exceptions=True)
            raise
        if flushing is not None:
            await flushing

    async def _record(self, repo: Repository, year: str, events: list[PupilRecorded], keys) -> None:
        start = parse_academic_year(year)
        candidates = await repo.known_children(year, list({e.match_key for e in events}))

        kek = self.keys.kek
        inserts = []
        for e in events:
            plaintext = keys[e.personal.key_id].open(e.personal, e.aad())
            personal = PupilPersonal.model_validate_json(plaintext)
            postcode_key = kek.blind_index(personal.postcode)
            m = match(candidates.get(e.match_key, []), postcode_key, e.extract_id)
            pupil_id = m.pupil_id or stable_id("pupil", year, e.record_id)
            target = roll_forward(e.year_group, self.protocol.source(e.source).roll_forward_years)
            dob_year = expected_year_group(personal.date_of_birth, start)
            content_key = kek.blind_index(plaintext.decode())  # as ingest wrote it: model_dump_json
            inserts.append(
                Record(
                    e.record_id,
                    e.extract_id,
                    pupil_id,
                    e.source,
                    e.reference_date,
                    e.occurred_at,
                    e.school_dfe,
                    e.school_name,
                    target,
                    e.gender,
                    e.personal.key_id,
                    academic_year=year,
                    match_key=e.match_key,
                    postcode_key=postcode_key,
                    content_key=content_key,
                    recorded_year_group=e.year_group,
                    dob_year_group=dob_year,
                    personal=e.personal.model_dump_json(),
                    match_findings=_json(match_findings(m, target, dob_year)),  # reported once released
                )
            )
            remember(
                candidates.setdefault(e.match_key, []), pupil_id, postcode_key, e.extract_id
            )  # for later rows of the batch

        # Held: in no cohort until the extract is released. Only records stored now count towards their
        # extract: an event delivered again (a consumer that stopped before its offsets were committed, or a
        # producer's retry) finds its record there and counts once, so no table of event ids is needed.
        stored = await repo.add_records(inserts)
        progress: dict[UUID, list[int]] = defaultdict(lambda: [0, 0])  # extract → [recorded, digest]
        for r in inserts:
            if r.record_id in stored:
                p = progress[r.extract_id]
                p[0], p[1] = p[0] + 1, (p[1] + record_digest_part(r.record_id)) % 2**64
                stored.discard(r.record_id)  # one record twice in a batch counts once
        await repo.add_progress([(x, n, d) for x, (n, d) in progress.items()])

    # --- cohort ---------------------------------------------------------------------------

    async def _recompute(
        self,
        repo: Repository,
        year: str,
        pupil_ids: set[UUID],
        why: str | None = None,
    ) -> list[OutboxEvent]:
        """Bring the cohort of these children in line with their released, active records; write the
        outbox, and return what it was given. ``why``: a withdrawal's reason."""
        rules = self.rules.get(year)
        if not pupil_ids:
            return []
        if rules is None:
            log.warning("eligibility.no_rules", academic_year=year, pupils=len(pupil_ids))
            return []
        records, held = await repo.cohort_state(year, pupil_ids)
        keys = await self.keys.get_many({r.key_id for rows in records.values() for r in rows})
        spans = await repo.school_spans({r.school_dfe for rows in records.values() for r in rows})
        out, now = _CohortWrites(), self.clock.now()  # one time for the chunk's events
        for pupil_id in pupil_ids:
            self._recompute_child(
                out,
                year,
                rules,
                pupil_id,
                records.get(pupil_id, []),
                held.get(pupil_id, {}),
                keys,
                spans,
                now,
                why,
            )
        await repo.save_cohort(out.upserts, out.withdrawals, out.outbox)
        await repo.clear_findings(out.cleared)
        await repo.add_findings(out.findings)
        for (key, change), n in out.changes.items():
            ops.COHORT_EVENTS.labels(key, change).inc(n)
        return out.outbox

    def _recompute_child(
        self,
        out: _CohortWrites,
        year: str,
        rules: YearRules,
        pupil_id: UUID,
        records: list[Record],
        held: dict[str, Held],
        keys,
        spans: dict,
        now: datetime,
        why: str | None = None,
    ) -> None:
        """One child: what the rules want from its records, diffed against what was published."""
        programmes = {p.key: p for p in rules.programmes}
        wanted = memberships(records, rules)
        rows = {key: mem.record for key, mem in wanted.items()}
        schools = self._findings(out, year, pupil_id, records, rules, programmes, rows, spans)
        fingerprints = {key: _fingerprint(rows[key], schools[key]) for key in wanted}
        lineage = sorted({r.extract_id for r in records}, key=str)
        gone = "no longer in the cohort after a replacement dataset (ISP §9.6)" if not records else None
        for change in diff_cohort(fingerprints, held):
            key, revision = change.programme, change.revision
            ev: CohortMemberAdded | CohortMemberWithdrawn
            if change.kind == "withdrawn":
                reason = why or gone or "details changed: no longer eligible"
                ev = self._withdrawn_event(year, key, programmes.get(key), pupil_id, revision, reason, now)
                out.withdrawals.append(Withdrawal(year, key, pupil_id, revision))
            else:
                mem, row, school = wanted[key], rows[key], schools[key]
                ev = self._member_event(year, mem, row, change.kind, revision, keys[row.key_id], lineage, school, now)
                out.upserts.append(
                    CohortEntry(
                        year,
                        key,
                        pupil_id,
                        mem.programme.dose,
                        "active",
                        fingerprints[key],
                        revision,
                        row.record_id,
                        school[0],
                        row.year_group,
                        row.gender,
                    )
                )
            out.outbox.append((ev.event_id, pupil_id.bytes, ev.model_dump_json()))
            out.changes[(key, change.kind)] += 1

    @staticmethod
    def _findings(
        out: _CohortWrites,
        year: str,
        pupil_id: UUID,
        records: list[Record],
        rules: YearRules,
        programmes: dict[str, Programme],
        rows: dict[str, Record],
        spans: dict,
    ) -> dict[str, tuple[str, str]]:
        """The data-quality findings of one child (a sex the rules cannot place, a school the child has
        left), and the school each membership goes out with."""
        for key in unknown_sex_findings(records, rules):
            finding = f"sex not known; {key} is for {programmes[key].sexes} only"
            out.findings.append(Finding(year, pupil_id, f"unknown-sex:{key}", finding, records[0].school_dfe))
        schools, left = schools_now(rows, spans)
        if left:
            out.findings.append(Finding(year, pupil_id, SCHOOL_NOT_KNOWN, *left[0]))
        else:
            out.cleared.append((year, pupil_id, SCHOOL_NOT_KNOWN))
        return schools

    @staticmethod
    def _withdrawn_event(
        year: str, key: str, p: Programme | None, pupil_id: UUID, revision: int, reason: str, now: datetime
    ) -> CohortMemberWithdrawn:
        return CohortMemberWithdrawn(
            event_id=stable_id("cohort", year, key, pupil_id, revision),
            occurred_at=now,
            academic_year=year,
            programme=p.id if p else key.split("-dose-")[0],
            dose=p.dose if p else None,
            pupil_id=pupil_id,
            revision=revision,
            reason=reason,
        )

    def _member_event(
        self,
        year: str,
        mem,
        row: Record,
        change: str,
        revision: int,
        key_obj: DataKey,
        lineage: list[UUID],
        school: tuple[str, str],
        now: datetime,
    ) -> CohortMemberAdded:
        """The cohort event of a child's membership, its personal fields sealed afresh to the event: the
        record's sealed bytes opened under the record's context and sealed under the event's, never parsed.
        Every field comes from a record validated when its pupil event came, so the event is built as it is."""
        fields = dict(
            event_id=stable_id("cohort", year, mem.programme.key, row.pupil_id, revision),
            occurred_at=now,
            change=change,
            academic_year=year,
            programme=mem.programme.id,
            dose=mem.programme.dose,
            pupil_id=row.pupil_id,
            school_dfe=school[0],
            school_name=school[1],
            year_group=row.year_group,
            gender=row.gender,
            source=row.source,
            reference_date=row.reference_date,
            received_at=row.received_at,
            extract_ids=lineage,
            revision=revision,
        )
        sealed = key_obj.reseal(Sealed.model_validate_json(row.personal), row.aad(), cohort_aad_of(Namespace(**fields)))
        return CohortMemberAdded.model_construct(**fields, personal=sealed)

    # --- extracts and replacement datasets -------------------------------------------------

    async def handle_extracts(self, events: list[ExtractCompleted | ExtractFailed | ExtractWithdrawn]) -> None:
        """How extracts ended: a completed one is released once its pupil events are all recorded, a
        failed one's held records are discarded, a withdrawn one's children leave the cohorts."""
        years = {e.target_academic_year for e in events}  # a redelivery resumes a walk a crash cut short
        async with self.uow() as repo:
            fresh = await repo.claim_new([e.event_id for e in events])
            events = [e for e in events if e.event_id in fresh]
            await repo.add_extracts([e for e in events if isinstance(e, ExtractCompleted)])
            await repo.lock_extracts({e.extract_id for e in events if isinstance(e, ExtractFailed)}, exclusive=True)
            for e in events:
                if isinstance(e, ExtractFailed):
                    discarded = await repo.fail_extract(e)
                    log.warning(
                        "extract.discarded",
                        extract_id=str(e.extract_id),
                        code=e.code,
                        **{"records": discarded["eligibility.records"]},
                    )
                elif isinstance(e, ExtractWithdrawn) and await repo.withdraw_extract(e.extract_id, e.reason):
                    log.info("extract.withdrawn", extract_id=str(e.extract_id))
        self.releases.want(years)

    # --- the rules against the protocol in force -----------------------------------------

    async def check_coverage(self, protocol: Protocol | None = None) -> dict[str, list[Gap]]:
        """Every rules year's coverage gaps under the protocol in force (at start, and whenever the
        protocol changes): a gauge and a warning each, and a ``CoverageChecked`` event per year for
        delivery, which warns when it sends under a gap."""
        protocol = protocol or self.protocol
        out, events = {}, []
        for year, year_rules in sorted(self.rules.items()):
            gaps = out[year] = coverage_gaps(year_rules, protocol)
            ops.COVERAGE_GAPS.labels(year).set(sum(len(g.year_groups) * len(g.sexes) for g in gaps))
            for g in gaps:
                log.warning(
                    "protocol.coverage_gap",
                    academic_year=year,
                    programme=g.programme,
                    year_groups=list(g.year_groups),
                    sexes=list(g.sexes),
                    protocol_version=protocol.version,
                )
            checked = [
                CoverageGap(
                    programme=g.programme,
                    year_groups=list(g.year_groups),
                    sexes=list(g.sexes),
                    sources=list(g.sources),
                    description=g.describe(),
                )
                for g in gaps
            ]
            digest = hashlib.sha256(json.dumps([c.model_dump() for c in checked]).encode()).hexdigest()
            ev = CoverageChecked(
                event_id=stable_id("coverage", year, protocol.id, protocol.version, digest),
                occurred_at=self.clock.now(),
                academic_year=year,
                protocol_id=protocol.id,
                protocol_version=protocol.version,
                gaps=checked,
            )
            events.append((ev.event_id, year.encode(), ev.model_dump_json()))
        async with self.uow() as repo:
            await repo.queue_events(events)
        await self.flush_outbox()
        return out

    # --- outbox ---------------------------------------------------------------------------

    async def flush_outbox(self) -> int:
        return await self.outbox.flush()


@dataclass
class _CohortWrites:
    """What one recompute writes, gathered to be written in a few statements."""

    upserts: list[CohortEntry] = field(default_factory=list)
    withdrawals: list[Withdrawal] = field(default_factory=list)
    outbox: list[OutboxEvent] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    cleared: list[FindingKey] = field(default_factory=list)  # findings that no longer hold
    changes: Counter[tuple[str, str]] = field(default_factory=Counter)


def match_findings(m, target: str, dob_year: str) -> list[tuple[str, str]]:
    """What a data officer should look at about one matched row: (code, detail)."""
    out = []
    if m.postcode_differs:
        out.append(
            (
                "matched-postcode-differs",
                "matched on name and date of birth; postcode differs (a move, or two children?)",
            )
        )
    if m.ambiguous:
        out.append(("ambiguous-match", "same name and date of birth as two or more children; not merged"))
    if dob_year != target:
        out.append(("out-of-year-group", f"taught in year {target}; date of birth implies year {dob_year}"))
    return out


def remember(candidates: list[Candidate], pupil_id: UUID, postcode_key: str, extract_id: UUID) -> None:
    """Make a recorded row a match candidate for the later rows of its batch."""
    existing = next((c for c in candidates if c.pupil_id == pupil_id), None)
    if existing:
        candidates.remove(existing)
        candidates.append(
            Candidate(pupil_id, existing.postcode_keys | {postcode_key}, existing.extract_ids | {extract_id})
        )
    else:
        candidates.append(Candidate(pupil_id, frozenset({postcode_key}), frozenset({extract_id})))


def _json(findings: list[tuple[str, str]]) -> str:
    return json.dumps(findings) if findings else "[]"


def _fingerprint(row: Record, school: tuple[str, str]) -> str:
    return f"{row.content_key}|{school[0]}|{school[1]}|{row.year_group}|{row.gender}"
