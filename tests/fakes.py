"""In-memory stand-ins for the ports the service layers depend on, for the use-case unit tests. Each
keeps the behaviour its PostgreSQL adapter promises (``tests/integration/test_delivery_contract.py``
runs the same checks against both), and no more."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

from sais_delivery.domain.batch import Batch, PartStatus, WindowSummary
from sais_delivery.domain.member import Member
from sais_delivery.domain.parts import RowSize, SchoolLoad
from sais_delivery.domain.render import RenderedFile
from sais_delivery.service_layer.ports import OpenBreach
from sais_eligibility.domain.cohort import CohortEntry, Finding, FindingKey, Held, ReadyExtract, Withdrawal
from sais_eligibility.domain.model import Candidate, Record, SchoolSpan
from sais_ingest.domain.extracts import DipSampleRow, ExtractRow, RowProblem
from sais_retention.domain.plan import DeletionRequest, ScheduledDeletion
from sais_shared.crypto import DataKey, KeyEncryptionKey
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked, cohort_event_adapter


class FixedClock:
    def __init__(self, at: datetime = datetime(2017, 6, 1, 9, tzinfo=UTC)) -> None:
        self.at = at

    def now(self) -> datetime:
        return self.at

    def today(self) -> date:
        return self.at.date()


@dataclass
class ProtocolInForce:
    current: object


class FakeKeys:
    def __init__(self) -> None:
        self.kek = KeyEncryptionKey(os.urandom(32))
        self.keys: dict[UUID, DataKey] = {}
        self.by_extract: dict[UUID, DataKey] = {}
        self.destroyed: set[UUID] = set()

    async def key_for_extract(self, extract_id: UUID) -> DataKey:
        if extract_id not in self.by_extract:
            key = DataKey.generate(extract_id)
            self.by_extract[extract_id] = self.keys[key.key_id] = key
        return self.by_extract[extract_id]

    def new(self) -> DataKey:
        key = DataKey.generate(uuid4())
        self.keys[key.key_id] = key
        return key

    async def get_many(self, key_ids: Iterable[UUID]) -> dict[UUID, DataKey]:
        return {k: self.keys[k] for k in key_ids}

    async def destroyed_among(self, key_ids: Iterable[UUID]) -> set[UUID]:
        return set(key_ids) & self.destroyed


# --- delivery ----------------------------------------------------------------------------------


@dataclass
class DeliveryState:
    """What delivery's tables hold."""

    members: dict[tuple[str, str, UUID], dict[str, Any]] = field(default_factory=dict)  # (year, programme, pupil)
    coverage: dict[tuple[str, str, str], tuple[list[str], datetime]] = field(default_factory=dict)
    batches: dict[UUID, Batch] = field(default_factory=dict)
    batch_sources: dict[UUID, list[str]] = field(default_factory=dict)
    assigned: dict[UUID, dict[tuple[str, UUID], int]] = field(default_factory=dict)  # batch → member → part
    suspended: tuple[bool, str | None] = (False, None)
    breaches: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    audited: list[tuple[str, str, dict]] = field(default_factory=list)  # (action, subject, details)
    outbox: list[tuple[bytes, Any]] = field(default_factory=list)
    schools: dict[str, tuple[str, str]] = field(default_factory=dict)  # the register: DfE → (URN, status)
    installation: UUID = field(default_factory=uuid4)


def _key(programme: str, dose: int | None) -> str:
    return programme + (f"-dose-{dose}" if dose else "")


class _Members:
    def __init__(self, s: DeliveryState) -> None:
        self.s = s

    def _window(self, academic_year: str, sources: Sequence[str]) -> list[dict[str, Any]]:
        rows = [m for m in self.s.members.values() if m["academic_year"] == academic_year]
        return [m for m in rows if m["status"] == "active" and m["window_source"] in sources]

    async def window_size(self, academic_year: str, sources: Sequence[str]) -> int:
        return len(self._window(academic_year, sources))

    def _content(self, academic_year: str, sources: Sequence[str]) -> str:
        rows = sorted(self._window(academic_year, sources), key=lambda m: (m["programme_key"], str(m["pupil_id"])))
        text = "\n".join(f"{m['programme_key']}|{m['pupil_id']}|{m['revision']}" for m in rows)
        return hashlib.sha256(text.encode()).hexdigest()

    async def extracts_received_before(self, academic_year: str, sources: Sequence[str], before: datetime) -> list[str]:
        rows = self._window(academic_year, sources)
        return sorted({str(x) for m in rows if m["received_at"] < before for x in m["extract_ids"]})

    async def key_ids(self, academic_year: str, sources: Sequence[str]) -> list[UUID]:
        return sorted({m["key_id"] for m in self._window(academic_year, sources)}, key=str)

    async def by_school(self, academic_year: str, sources: Sequence[str]) -> AsyncIterator[Member]:
        rows = self._window(academic_year, sources)
        for m in sorted(rows, key=lambda m: (m["school_dfe"], m["programme_key"], str(m["pupil_id"]))):
            yield _member(m)

    async def summary(self, academic_year: str, sources: Sequence[str]) -> WindowSummary:
        rows = self._window(academic_year, sources)
        content = self._content(academic_year, sources)
        counts: dict[str, int] = {}
        for m in rows:
            counts[m["programme_key"]] = counts.get(m["programme_key"], 0) + 1
        return WindowSummary(
            content,
            sorted({m["key_id"] for m in rows}, key=str),
            sorted({x for m in rows for x in m["extract_ids"]}, key=str),
            dict(sorted(counts.items())),
        )

    async def of_part(self, batch_id: UUID, part_no: int, academic_year: str) -> AsyncIterator[Member]:
        chosen = [k for k, n in self.s.assigned[batch_id].items() if n == part_no]
        for programme_key, pupil_id in sorted(chosen, key=lambda k: (k[0], str(k[1]))):
            m = self.s.members.get((academic_year, programme_key, pupil_id))
            if m is not None and m["status"] == "active":
                yield _member(m)

    async def school_loads(
        self, academic_year: str, sources: Sequence[str], *, with_mavis: bool
    ) -> list[SchoolLoad] | None:
        rows = self._window(academic_year, sources)
        if any(m.get("size") is None for m in rows):
            return None
        loads: dict[str, list[int]] = {}
        for m in rows:
            n = m["size"].planned(with_mavis)
            load = loads.setdefault(m["school_dfe"], [0, 0, 0])
            load[0], load[1], load[2] = load[0] + 1, load[1] + n, max(load[2], n)
        return [SchoolLoad(school, *load) for school, load in sorted(loads.items())]

    async def apply(
        self, events: Sequence[CohortMemberAdded | CohortMemberWithdrawn], sizes: Mapping[UUID, RowSize]
    ) -> None:
        for e in sorted(events, key=lambda e: e.revision):
            k = (e.academic_year, _key(e.programme, e.dose), e.pupil_id)
            old = self.s.members.get(k)
            if old is not None and old["revision"] >= e.revision:
                continue
            if old is None and isinstance(e, CohortMemberWithdrawn):
                continue  # a member not held is not made up
            row = {
                "academic_year": e.academic_year,
                "programme": e.programme,
                "programme_key": k[1],
                "dose": e.dose,
                "pupil_id": e.pupil_id,
                "revision": e.revision,
            }
            if isinstance(e, CohortMemberAdded):
                row |= {
                    "status": "active",
                    "school_dfe": e.school_dfe,
                    "school_name": e.school_name,
                    "year_group": e.year_group,
                    "gender": e.gender,
                    "source": e.source,
                    "reference_date": e.reference_date,
                    "received_at": e.received_at,
                    "extract_ids": list(e.extract_ids),
                    "key_id": e.personal.key_id,
                    "personal": e.personal.model_dump_json(),
                    "size": sizes.get(e.event_id),
                }
            else:
                row |= {
                    "status": "withdrawn",
                    "school_dfe": "",
                    "school_name": "",
                    "year_group": "",
                    "gender": "",
                    "source": "",
                    "reference_date": None,
                    "received_at": None,
                    "extract_ids": [],
                    "key_id": None,
                    "personal": None,
                }
            row["window_source"] = old["window_source"] if old and old["window_source"] else row["source"]
            self.s.members[k] = row

    async def record_coverage(self, checks: Sequence[CoverageChecked]) -> None:
        for e in sorted(checks, key=lambda e: e.occurred_at):
            k = (e.academic_year, e.protocol_id, e.protocol_version)
            if k not in self.s.coverage or self.s.coverage[k][1] <= e.occurred_at:
                self.s.coverage[k] = ([g.description for g in e.gaps], e.occurred_at)

    async def coverage_gaps(self, academic_year: str, protocol_id: str, protocol_version: str) -> list[str] | None:
        found = self.s.coverage.get((academic_year, protocol_id, protocol_version))
        return None if found is None else list(found[0])

    async def school_register(self, dfes: set[str]) -> dict[str, tuple[str, str]]:
        return {d: self.s.schools[d] for d in dfes if d in self.s.schools}


def _member(m: dict[str, Any]) -> Member:
    return Member(*(m[f] for f in Member.__dataclass_fields__))


class _Batches:
    def __init__(self, s: DeliveryState, members: _Members) -> None:
        self.s, self.members = s, members

    async def get(self, batch_id: UUID) -> Batch | None:
        return self.s.batches.get(batch_id)

    async def hold(self, batch_id: UUID) -> Batch | None:
        return self.s.batches.get(batch_id)

    def _newest(self, where) -> Batch | None:
        found = [b for b in self.s.batches.values() if where(b)]
        return max(found, key=lambda b: b.sent_at or b.prepared_at, default=None)

    async def pending(self, window: str, academic_year: str) -> Batch | None:
        waiting = {PartStatus.PREPARED, PartStatus.SENDING, PartStatus.FAILED}
        return self._newest(lambda b: (b.window, b.academic_year) == (window, academic_year) and b.status in waiting)

    async def last_sent(self, window: str, academic_year: str, recipient: str) -> Batch | None:
        return self._newest(
            lambda b: (
                (b.window, b.academic_year, b.recipient, b.status)
                == (window, academic_year, recipient, PartStatus.SENT)
            )
        )

    async def add(self, batch: Batch, sources: Sequence[str]) -> bool:
        if batch.batch_id in self.s.batches:
            return False
        self.s.batches[batch.batch_id] = batch
        assigned: dict[tuple[str, UUID], int] = {}
        by_school: dict[str, list[Member]] = {}
        async for m in self.members.by_school(batch.academic_year, sources):
            by_school.setdefault(m.school_dfe, []).append(m)
        for p in batch.parts:
            for g in p.segments:
                rows = by_school.get(g["school_dfe"], [])
                end = g["offset"] + g["limit"] if g["limit"] else len(rows)
                for m in rows[g["offset"] : end]:
                    assigned[(m.programme_key, m.pupil_id)] = p.part_no
        self.s.assigned[batch.batch_id] = assigned
        return True

    async def save(self, before: Batch, after: Batch) -> None:
        stored = self.s.batches[after.batch_id]
        for p in after.parts:
            if p != before.part(p.part_no) and stored.part(p.part_no).status is not before.part(p.part_no).status:
                raise RuntimeError(f"batch {after.batch_id} part {p.part_no} changed meanwhile: nothing was saved")
        self.s.batches[after.batch_id] = after

    async def drop(self, batch_id: UUID) -> None:
        self.s.batches.pop(batch_id, None)
        self.s.assigned.pop(batch_id, None)

    async def recent(self, limit: int) -> list[dict[str, Any]]:
        return [
            {"batch_id": b.batch_id, "status": b.status.value, "parts": [p.status.value for p in b.parts]}
            for b in sorted(self.s.batches.values(), key=lambda b: b.prepared_at, reverse=True)[:limit]
        ]

    async def counts(self) -> tuple[dict[str, int], int]:
        by: dict[str, int] = {}
        for b in self.s.batches.values():
            by[b.status.value] = by.get(b.status.value, 0) + 1
        return by, sum(len(b.interrupted()) for b in self.s.batches.values())


class _Sharing:
    def __init__(self, s: DeliveryState) -> None:
        self.s = s

    async def get(self) -> tuple[bool, str | None]:
        return self.s.suspended

    async def set(self, suspended: bool, reason: str, actor: str) -> None:
        self.s.suspended = (suspended, reason)


class _Breaches:
    def __init__(self, s: DeliveryState) -> None:
        self.s = s

    async def add(self, breach: dict[str, Any], actor: str) -> None:
        self.s.breaches[breach["breach_id"]] = breach | {"notified": [], "closed": False}

    async def notified(self, breach_id: UUID, notified: Iterable[str]) -> None:
        self.s.breaches[breach_id]["notified"] = list(notified)

    async def close(self, breach_id: UUID, *, outcome: str, ico_notified: bool, resume: bool, actor: str) -> int | None:
        b = self.s.breaches.get(breach_id)
        if b is None or b["closed"]:
            return None
        b["closed"] = True
        return sum(not x["closed"] for x in self.s.breaches.values())

    async def open(self) -> list[OpenBreach]:
        return [
            OpenBreach(b["breach_id"], b["discovered_at"], b["ico_decision_due"], b["notified"])
            for b in sorted(self.s.breaches.values(), key=lambda b: b["discovered_at"])
            if not b["closed"]
        ]


class _Tx:
    def __init__(self, s: DeliveryState) -> None:
        self.s = s
        self.members = _Members(s)
        self.batches = _Batches(s, self.members)
        self.sharing = _Sharing(s)
        self.breaches = _Breaches(s)

    async def installation_id(self) -> UUID:
        return self.s.installation

    async def audit(
        self, actor: str, action: str, subject: str, details: dict[str, Any], protocol_version: str
    ) -> None:
        self.s.audited.append((action, subject, details))

    async def queue(self, event: Any, key: bytes) -> None:
        self.s.outbox.append((key, event))


class InMemoryDelivery:
    """Delivery's unit of work over ``state``: what a block did is undone when it raises."""

    def __init__(self, state: DeliveryState | None = None) -> None:
        self.state = state or DeliveryState()
        self.published: list[Any] = []

    @asynccontextmanager
    async def __call__(self, *, snapshot: bool = False) -> AsyncIterator[_Tx]:
        saved = copy.deepcopy(self.state)
        try:
            yield _Tx(self.state)
        except BaseException:
            self.state.__dict__.update(saved.__dict__)
            raise

    async def flush_outbox(self, publisher: Any) -> int:
        n = len(self.state.outbox)
        self.published += [event for _, event in self.state.outbox]
        self.state.outbox.clear()
        return n


class FakeMailer:
    """Accepts every message, or raises what ``answers`` says for the next sends (an exception each)."""

    def __init__(self, *answers: BaseException) -> None:
        self.answers = list(answers)
        self.sent: list[tuple[bytes, str]] = []

    async def send(self, message: bytes, *, sender: str, recipient: str) -> str:
        if self.answers:
            raise self.answers.pop(0)
        self.sent.append((message, recipient))
        return f"250 2.0.0 queued as {len(self.sent)}"


@dataclass
class BuiltMessage:
    subject: str
    message_id: str
    files: list[RenderedFile]


class FakeSmime:
    """Builds a message as its files, unsigned and unencrypted: the content, not the cryptography, is what the
    use-case tests look at (``built`` keeps each)."""

    def __init__(self) -> None:
        self.built: list[BuiltMessage] = []

    def __call__(self, recipient: str) -> FakeSmime:
        return self

    def build(self, *, subject: str, message_id: str, body: str, files: list[RenderedFile], date: datetime) -> bytes:
        self.built.append(BuiltMessage(subject, message_id, list(files)))
        return b"".join(f.content for f in files)


# --- eligibility -------------------------------------------------------------------------------


@dataclass
class _Extract:
    extract_id: UUID
    academic_year: str
    status: str  # completed | failed | withdrawn
    accepted: int = 0
    supersedes: UUID | None = None
    digest: int | None = None
    released: bool = False
    reconciled: bool = False
    released_through: UUID | None = None


@dataclass
class FakeRepository:
    """Eligibility's repository in memory (``tests/integration/test_eligibility_contract.py`` holds it to
    the same contract as PostgreSQL's)."""

    processed: set[UUID] = field(default_factory=set)
    records: dict[UUID, Record] = field(default_factory=dict)
    inactive: set[UUID] = field(default_factory=set)  # record ids retired or withdrawn
    cohort: dict[tuple[str, str, UUID], CohortEntry] = field(default_factory=dict)
    extracts: dict[UUID, _Extract] = field(default_factory=dict)
    findings: dict[FindingKey, str] = field(default_factory=dict)
    schools: dict[str, SchoolSpan] = field(default_factory=dict)
    outbox: list[tuple[UUID, bytes, str]] = field(default_factory=list)
    progress: dict[UUID, list[int]] = field(default_factory=dict)
    destroyed_keys: set[UUID] = field(default_factory=set)  # the keys' table, as the transaction reads it

    def _active(self) -> list[Record]:
        return [r for r in self.records.values() if r.record_id not in self.inactive]

    async def claim_new(self, event_ids: Iterable[UUID]) -> set[UUID]:
        fresh = set(event_ids) - self.processed
        self.processed |= fresh
        return fresh

    async def lock_year(self, year: str, *, exclusive: bool) -> None:
        pass  # one task: nothing to serialise

    async def lock_walk(self, extract_id: UUID) -> None:
        pass

    async def lock_pupils(self, year: str, pupil_ids: list[UUID]) -> None:
        pass

    async def lock_children(self, year: str, match_keys: set[str]) -> None:
        pass

    async def lock_extracts(self, extract_ids: set[UUID], *, exclusive: bool) -> None:
        pass  # one event loop, one fake: nothing runs beside it

    async def known_children(self, year: str, match_keys: list[str]) -> dict[str, list[Candidate]]:
        found: dict[tuple[str, UUID], tuple[set[str], set[UUID]]] = {}
        for r in self._active():
            if r.academic_year == year and r.match_key in match_keys:
                pks, exs = found.setdefault((r.match_key, r.pupil_id), (set(), set()))
                pks.add(r.postcode_key)
                exs.add(r.extract_id)
        known: dict[str, list[Candidate]] = {}
        for (match_key, pupil_id), (pks, exs) in found.items():
            known.setdefault(match_key, []).append(Candidate(pupil_id, frozenset(pks), frozenset(exs)))
        return known

    async def add_records(self, records: list[Record]) -> set[UUID]:
        stored = set()
        for r in records:
            if r.record_id not in self.records:
                self.records[r.record_id] = r
                stored.add(r.record_id)
        return stored

    async def add_progress(self, rows: list[tuple[UUID, int, int]]) -> None:
        for extract_id, n, digest in rows:
            p = self.progress.setdefault(extract_id, [0, 0])
            p[0], p[1] = p[0] + n, (p[1] + digest) % 2**64

    async def keys_destroyed_among(self, key_ids: set[UUID]) -> set[UUID]:
        return set(key_ids) & self.destroyed_keys

    async def ended_among(self, extract_ids: set[UUID]) -> set[UUID]:
        return {x for x in extract_ids if x in self.extracts and self.extracts[x].status == "failed"}

    async def fail_extract(self, e: Any) -> dict[str, int]:
        known = self.extracts.get(e.extract_id)
        if known is not None and known.released:
            return {"eligibility.records": 0}
        self.extracts[e.extract_id] = _Extract(e.extract_id, e.target_academic_year, "failed")
        gone = [k for k, r in self.records.items() if r.extract_id == e.extract_id]
        for k in gone:
            del self.records[k]
        self.progress.pop(e.extract_id, None)
        return {"eligibility.records": len(gone)}

    async def withdraw_extract(self, extract_id: UUID, reason: str) -> bool:
        e = self.extracts.get(extract_id)
        if e is None or e.status != "completed":
            return False
        e.status, e.reconciled, e.released_through = "withdrawn", False, None
        self.inactive |= {r.record_id for r in self.records.values() if r.extract_id == extract_id}
        return True

    async def years_pending(self) -> list[str]:
        pending = ("completed", "withdrawn")
        return sorted({e.academic_year for e in self.extracts.values() if not e.reconciled and e.status in pending})

    async def start_release(self, extract_id: UUID) -> bool:
        e = self.extracts[extract_id]
        if e.released or e.status != "completed":
            return False
        e.released = True
        return True

    async def release_cursor(self, extract_id: UUID) -> tuple[bool, UUID | None]:
        e = self.extracts.get(extract_id)
        return (True, None) if e is None else (e.reconciled, e.released_through)

    async def children_of(self, extract_ids: list[UUID], after: UUID | None, limit: int) -> list[UUID]:
        ids = sorted({r.pupil_id for r in self.records.values() if r.extract_id in extract_ids})
        return [p for p in ids if after is None or p > after][:limit]

    async def released_findings(self, extract_id: UUID, pupil_ids: list[UUID]) -> list[Finding]:
        return [
            Finding(r.academic_year, r.pupil_id, code, detail, r.school_dfe)
            for r in self.records.values()
            if r.extract_id == extract_id and r.pupil_id in pupil_ids
            for code, detail in json.loads(r.match_findings)
        ]

    async def set_released_through(self, extract_id: UUID, pupil_id: UUID) -> None:
        self.extracts[extract_id].released_through = pupil_id

    async def add_findings(self, findings: list[Finding]) -> None:
        for f in findings:
            self.findings[f.key()] = f.detail

    async def clear_findings(self, keys: list[FindingKey]) -> None:
        for k in keys:
            self.findings.pop(k, None)

    async def school_spans(self, dfes: set[str]) -> dict[str, SchoolSpan]:
        return {d: s for d, s in self.schools.items() if d in dfes}

    async def cohort_state(
        self, year: str, pupil_ids: set[UUID]
    ) -> tuple[dict[UUID, list[Record]], dict[UUID, dict[str, Held]]]:
        records: dict[UUID, list[Record]] = {}
        released = {x for x, e in self.extracts.items() if e.status == "completed" and e.released}
        for r in self._active():
            if r.pupil_id in pupil_ids and r.extract_id in released:
                records.setdefault(r.pupil_id, []).append(r)
        held: dict[UUID, dict[str, Held]] = {}
        for (y, programme, pupil_id), m in self.cohort.items():
            if y == year and pupil_id in pupil_ids:
                held.setdefault(pupil_id, {})[programme] = Held(m.status, m.fingerprint, m.revision)
        return records, held

    async def save_cohort(
        self, upserts: list[CohortEntry], withdrawals: list[Withdrawal], outbox: list[tuple[UUID, bytes, str]]
    ) -> None:
        for u in upserts:
            self.cohort[(u.academic_year, u.programme, u.pupil_id)] = u
        for w in withdrawals:
            key = (w.academic_year, w.programme, w.pupil_id)
            self.cohort[key] = dataclasses.replace(self.cohort[key], status="withdrawn", revision=w.revision)
        await self.queue_events(outbox)

    async def queue_events(self, outbox: list[tuple[UUID, bytes, str]]) -> None:
        known = {e[0] for e in self.outbox}
        self.outbox += [e for e in outbox if e[0] not in known]

    async def add_extracts(self, completed: list[Any]) -> None:
        for e in completed:
            digest = int(e.records_digest, 16) if e.records_digest else None
            self.extracts.setdefault(
                e.extract_id,
                _Extract(e.extract_id, e.target_academic_year, "completed", e.accepted, e.supersedes, digest),
            )

    def _ready(self, year: str) -> list[ReadyExtract]:
        def complete(e: _Extract) -> bool:
            n, d = self.progress.get(e.extract_id, [0, 0])
            return e.accepted == n and e.digest in (None, d)

        return [
            ReadyExtract(e.extract_id, e.status, e.supersedes)
            for e in self.extracts.values()
            if e.academic_year == year
            and not e.reconciled
            and (e.status == "withdrawn" or (e.status == "completed" and complete(e)))
        ]

    async def any_ready(self, year: str) -> bool:
        return bool(self._ready(year))

    async def ready_extracts(self, year: str) -> list[ReadyExtract]:
        return self._ready(year)

    async def retire_extract(self, extract_id: UUID) -> set[UUID]:
        retired = {r for r in self._active() if r.extract_id == extract_id}
        self.inactive |= {r.record_id for r in retired}
        return {r.pupil_id for r in retired}

    async def mark_reconciled(self, extract_id: UUID) -> None:
        self.extracts[extract_id].reconciled = True


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.repo = FakeRepository()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[FakeRepository]:
        yield self.repo


class FakeOutbox:
    """Eligibility's outbox: what is flushed is 'published' (parsed as delivery would read it)."""

    def __init__(self, repo: FakeRepository) -> None:
        self.repo, self.published = repo, list[Any]()

    async def flush(self) -> int:
        n = len(self.repo.outbox)
        self.published += [cohort_event_adapter.validate_json(payload) for _, _, payload in self.repo.outbox]
        self.repo.outbox.clear()
        return n

    async def publish(self, events: list[tuple[UUID, bytes, str]]) -> int:
        queued = {event_id for event_id, _, _ in self.repo.outbox}
        going = [e for e in events if e[0] in queued]
        self.published += [cohort_event_adapter.validate_json(payload) for _, _, payload in going]
        gone = {e[0] for e in going}
        self.repo.outbox[:] = [e for e in self.repo.outbox if e[0] not in gone]
        return len(going)


# --- ingest ------------------------------------------------------------------------------------


@dataclass
class FakeExtractStore:
    """Ingest's extract store in memory."""

    extracts: dict[UUID, ExtractRow] = field(default_factory=dict)
    problems_: dict[UUID, list[RowProblem]] = field(default_factory=dict)
    index: dict[UUID, dict[int, tuple[str, str]]] = field(default_factory=dict)  # extract → row → (child, content)
    dip: dict[UUID, list[DipSampleRow]] = field(default_factory=dict)
    audited: list[tuple[str, str]] = field(default_factory=list)
    held: set[UUID] = field(default_factory=set)
    announced_: set[UUID] = field(default_factory=set)

    async def audit(self, actor, action, subject, details, protocol_version):
        self.audited.append((action, subject))

    @asynccontextmanager
    async def hold(self, extract_id):
        self.held.add(extract_id)
        try:
            yield
        finally:
            self.held.discard(extract_id)

    async def is_held(self, extract_id):
        return extract_id in self.held

    def _same(self, sha256, source, reference_date, target_year):
        return [
            e
            for e in self.extracts.values()
            if (e.content_sha256, e.source, e.reference_date, e.target_academic_year)
            == (sha256, source, reference_date, target_year)
        ]

    async def identity(self, sha256, source, reference_date, target_year):
        live = [
            e for e in self._same(sha256, source, reference_date, target_year) if e.status in ("started", "completed")
        ]
        return live[-1] if live else None

    async def attempts(self, sha256, source, reference_date, target_year):
        return len(self._same(sha256, source, reference_date, target_year))

    async def end(self, extract_id, status, code, reason, by, *, published, audit_entry=None):
        e = self.extracts[extract_id]
        if e.status != ("completed" if status == "withdrawn" else "started"):
            return False
        if audit_entry is not None:  # in the same transaction as the change, as the adapter writes it
            self.audited.append((audit_entry.action, audit_entry.subject))
        kept = e.published if status == "withdrawn" else published
        self.extracts[extract_id] = replace(
            e, status=status, failure_code=code, failure=reason, ended_by=by, published=kept
        )
        if status != "withdrawn":
            self.index.pop(extract_id, None)
        return True

    async def abandoned(self):
        out = []
        for x, e in list(self.extracts.items()):
            if e.status == "started" and x not in self.held:
                await self.end(x, "failed", "abandoned", "abandoned", "ingest", published=0)
                out.append(x)
        return out

    async def unannounced(self):
        ended = ("refused", "failed", "withdrawn")
        return [e for x, e in self.extracts.items() if e.status in ended and x not in self.announced_]

    async def announced(self, extract_id):
        self.announced_.add(extract_id)

    async def index_rows(self, extract_id, rows):
        idx = self.index.setdefault(extract_id, {})
        first = {content: n for n, (_, content) in sorted(idx.items())}
        repeats = {}
        for r in sorted(rows, key=lambda r: r.row_number):
            n, content = r.row_number, r.content_key
            if content in first and first[content] < n:
                repeats[n] = first[content]
            else:
                first.setdefault(content, n)
                idx[n] = (r.child_key, content)
        return repeats

    async def same_child_rows(self, extract_id):
        first: dict[str, int] = {}
        out = []
        for n, (child, _) in sorted(self.index.get(extract_id, {}).items()):
            if child in first:
                out.append((n, first[child]))
            else:
                first[child] = n
        return out

    async def replacement_effect(self, extract_id, supersedes):
        def children(x):
            out: dict[str, set[str]] = {}
            for child, content in self.index.get(x, {}).values():
                out.setdefault(child, set()).add(content)
            return out

        new, old = children(extract_id), children(supersedes)
        both = set(new) & set(old)
        return {
            "adds": len(set(new) - set(old)),
            "updates": sum(new[c] != old[c] for c in both),
            "unchanged": sum(new[c] == old[c] for c in both),
            "withdrawals": len(set(old) - set(new)),
            "before": len(old),
        }

    async def discard(self, extract_id):
        self.index.pop(extract_id, None)
        self.extracts.pop(extract_id, None)
        self.problems_.pop(extract_id, None)

    async def get(self, extract_id):
        return self.extracts.get(extract_id)

    async def latest_completed(self, source, reference_date, other_than):
        done = [
            e
            for e in self.extracts.values()
            if (e.source, e.reference_date, e.status) == (source, reference_date, "completed")
            and e.extract_id != other_than
        ]
        return done[-1].extract_id if done else None

    async def start(
        self,
        *,
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
    ):
        self.extracts[extract_id] = ExtractRow(
            extract_id,
            sha256,
            source,
            reference_date,
            "started",
            0,
            0,
            0,
            0,
            0,
            supersedes,
            file_name,
            target_academic_year,
            [],
            protocol_version,
            key_id=key_id,
        )
        self.problems_.pop(extract_id, None)  # a resumed extract starts again: nothing is counted twice
        self.index.pop(extract_id, None)

    async def add_problems(self, extract_id, rows):
        self.problems_.setdefault(extract_id, []).extend(rows)

    async def save_dip_sample(self, extract_id, rows):
        self.dip[extract_id] = list(rows)

    async def dip_sample(self, extract_id):
        return sorted(self.dip.get(extract_id, []), key=lambda r: r.row_number)

    async def problems(self, extract_id, kind, limit=1000):
        found = [p for p in self.problems_.get(extract_id, []) if p.kind == kind]
        return sorted(found, key=lambda p: (p.row_number, p.field))[:limit]

    async def complete(
        self,
        extract_id,
        *,
        rows_in,
        accepted,
        rejected,
        out_of_scope,
        warnings,
        dropped_columns,
        repeated=0,
        audit_entry=None,
    ):
        if audit_entry is not None and self.extracts[extract_id].status == "started":
            self.audited.append((audit_entry.action, audit_entry.subject))
        self.extracts[extract_id] = replace(
            self.extracts[extract_id],
            status="completed",
            repeated=repeated,
            published=accepted,
            rows_in=rows_in,
            accepted=accepted,
            rejected=rejected,
            out_of_scope=out_of_scope,
            warnings=warnings,
            dropped_columns=dropped_columns,
        )


class FakePublisher:
    """Collects what would go to one topic (serialised, as the Kafka adapter sends it)."""

    def __init__(self, topic: str) -> None:
        self.topic, self.sent = topic, []

    async def publish(self, message, *, key=None, **_):
        self.sent.append((key, message if isinstance(message, bytes) else message.model_dump_json().encode()))
        done = asyncio.get_running_loop().create_future()  # the broker's acknowledgement, already in
        done.set_result(None)
        return done


# --- retention ---------------------------------------------------------------------------------


@dataclass
class _Scheduled:
    subject: str
    rule: str
    due_on: date
    extract_ids: list
    key_ids: list
    requested: bool = False
    executed: bool = False
    certificate_id: UUID | None = None


@dataclass
class FakeRetentionRepository:
    """Retention's repository in memory, with the key store's live keys."""

    live: dict[UUID, UUID]  # key id → extract id: the key store
    processed: set = field(default_factory=set)
    schedule_: dict[str, _Scheduled] = field(default_factory=dict)
    requests: dict[UUID, DeletionRequest] = field(default_factory=dict)
    confirmed: dict[UUID, dict[str, dict]] = field(default_factory=dict)
    certificates: list = field(default_factory=list)
    outbox: list = field(default_factory=list)
    audited: list[str] = field(default_factory=list)

    async def claim_new(self, event_ids):
        fresh = set(event_ids) - self.processed
        self.processed |= fresh
        return fresh

    async def schedule(self, subject, rule, due_on, extract_ids, key_ids):
        self.schedule_.setdefault(subject, _Scheduled(subject, rule, due_on, list(extract_ids), list(key_ids)))

    async def due_subjects(self, today):
        rows = [r for r in self.schedule_.values() if not (r.executed or r.requested) and r.due_on <= today]
        return [r.subject for r in sorted(rows, key=lambda r: (r.due_on, r.subject))]

    async def claim_due(self, subject):
        r = self.schedule_.get(subject)
        if r is None or r.executed or r.requested:
            return None
        return ScheduledDeletion(r.subject, r.rule, r.extract_ids, r.key_ids), r.due_on

    async def live_scheduled(self, rule, other_than):
        live = [r for r in self.schedule_.values() if not r.executed and r.subject != other_than and r.rule == rule]
        return [ScheduledDeletion(r.subject, r.rule, r.extract_ids, r.key_ids) for r in live]

    async def mark_executed(self, subject):
        self.schedule_[subject].executed = True

    async def mark_requested(self, subject):
        for r in self.schedule_.values():
            if (subject is None and not r.executed) or r.subject == subject:
                r.requested = True

    async def live_keys(self):
        return list(self.live.items())

    async def destroy_keys(self, key_ids, by):
        destroyed = sorted(k for k in set(key_ids) if k in self.live)
        for k in destroyed:
            del self.live[k]
        return destroyed

    async def audit(self, actor, action, subject, details, protocol_version):
        self.audited.append(action)

    async def request_exists(self, subject):
        return any(r.subject == subject for r in self.requests.values())

    async def add_request(self, req, due_on, destroyed, keys_retained):
        self.requests[req.request_id] = DeletionRequest(
            req.request_id, req.subject, req.rule, due_on, req.owners, destroyed, keys_retained, req.occurred_at
        )
        self.outbox.append(req)

    async def claim_request(self, request_id):
        return self.requests.get(request_id)

    async def add_confirmation(self, request_id, service, rows_deleted):
        self.confirmed.setdefault(request_id, {}).setdefault(service, rows_deleted)

    async def confirmations(self, request_id):
        return dict(self.confirmed.get(request_id, {}))

    async def close_request(self, request_id, certificate_id):
        self.requests[request_id] = dataclasses.replace(
            self.requests[request_id], completed_at=datetime.now(UTC), certificate_id=certificate_id
        )

    async def add_certificate(self, cert, keys_retained):
        self.certificates.append(cert)
        self.outbox.append(cert)

    async def certify_scheduled(self, certificate_id, *, subject=None, requested_by=None):
        for r in self.schedule_.values():
            if r.subject == subject or (subject is None and r.requested and not r.executed):
                r.executed, r.certificate_id = True, certificate_id

    async def pending_counts(self, today):
        pending = [r for r in self.schedule_.values() if not r.executed]
        return sum(r.due_on >= today for r in pending), sum(r.due_on < today for r in pending)

    async def unconfirmed(self, requested_before):
        return [
            (r.owners, list(self.confirmed.get(r.request_id, {})))
            for r in self.requests.values()
            if r.completed_at is None and r.requested_at < requested_before
        ]


class FakeRetentionUnitOfWork:
    def __init__(self, repo: FakeRetentionRepository) -> None:
        self.repo = repo

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[FakeRetentionRepository]:
        yield self.repo


class FakeRetentionOutbox:
    def __init__(self, repo: FakeRetentionRepository) -> None:
        self.repo, self.published = repo, list[Any]()

    async def flush(self) -> int:
        n = len(self.repo.outbox)
        self.published += self.repo.outbox
        self.repo.outbox = []
        return n
