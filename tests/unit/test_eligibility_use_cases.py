"""Eligibility's use cases in memory, through its ports (unit of work, key store, outbox, clock), as in
cosmicpython: the real domain and service layer, fake storage. The PostgreSQL adapter behind the same
port is exercised by the integration tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from sais_eligibility.adapters.rules_files import load_all_rules
from sais_eligibility.domain.cohort import Held
from sais_eligibility.service_layer.handlers import EligibilityService
from sais_shared.crypto import DataKey, KeyEncryptionKey, Sealed
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    ExtractCompleted,
    PupilPersonal,
    PupilRecorded,
    cohort_event_adapter,
    stable_id,
)
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit

MAY = date(2017, 5, 18)


# --- fakes ------------------------------------------------------------------------------------


@dataclass
class FakeRepository:
    processed: set[UUID] = field(default_factory=set)
    records: dict[UUID, dict] = field(default_factory=dict)
    cohort: dict[tuple[str, str, UUID], dict] = field(default_factory=dict)
    extracts: dict[UUID, dict] = field(default_factory=dict)
    findings: dict[tuple, str] = field(default_factory=dict)
    outbox: list[tuple[UUID, bytes, str]] = field(default_factory=list)

    async def claim_new(self, event_ids):
        fresh = set(event_ids) - self.processed
        self.processed |= fresh
        return fresh

    async def lock_year(self, year, *, exclusive):
        pass  # one task: nothing to serialise

    async def lock_children(self, year, match_keys):
        pass

    async def known_children(self, year, match_keys):
        out: dict[tuple[str, UUID], dict] = {}
        for r in self.records.values():
            if r["academic_year"] == year and r["match_key"] in match_keys and r["active"]:
                row = out.setdefault(
                    (r["match_key"], r["pupil_id"]),
                    {"match_key": r["match_key"], "pupil_id": r["pupil_id"], "pk": [], "ex": []},
                )
                row["pk"].append(r["postcode_key"])
                row["ex"].append(r["extract_id"])
        return list(out.values())

    async def add_records(self, rows):
        cols = (
            "record_id",
            "extract_id",
            "academic_year",
            "pupil_id",
            "match_key",
            "postcode_key",
            "content_key",
            "source",
            "reference_date",
            "received_at",
            "school_dfe",
            "school_name",
            "recorded_year_group",
            "year_group",
            "dob_year_group",
            "gender",
            "key_id",
            "personal",
        )
        for row in rows:
            self.records.setdefault(row[0], {**dict(zip(cols, row, strict=True)), "active": True})

    async def add_findings(self, findings):
        for year, pupil_id, code, detail, _school in findings:
            self.findings[(year, pupil_id, code)] = detail

    async def cohort_state(self, year, pupil_ids):
        records: dict[UUID, list[dict]] = {}
        for r in self.records.values():
            if r["pupil_id"] in pupil_ids and r["active"]:
                records.setdefault(r["pupil_id"], []).append(r)
        held: dict[UUID, dict[str, Held]] = {}
        for (y, programme, pupil_id), m in self.cohort.items():
            if y == year and pupil_id in pupil_ids:
                held.setdefault(pupil_id, {})[programme] = Held(m["status"], m["fingerprint"], m["revision"])
        return records, held

    async def save_cohort(self, upserts, withdrawals, outbox):
        for year, programme, pupil_id, dose, status, fingerprint, revision, record_id, *_ in upserts:
            self.cohort[(year, programme, pupil_id)] = {
                "status": status,
                "fingerprint": fingerprint,
                "revision": revision,
                "record_id": record_id,
            }
        for year, programme, pupil_id, revision in withdrawals:
            self.cohort[(year, programme, pupil_id)].update(status="withdrawn", revision=revision)
        known = {e[0] for e in self.outbox}
        self.outbox += [e for e in outbox if e[0] not in known]

    async def add_extracts(self, rows):
        for extract_id, source, ref, year, accepted, supersedes, key_id, completed in rows:
            self.extracts.setdefault(
                extract_id,
                {
                    "extract_id": extract_id,
                    "academic_year": year,
                    "accepted": accepted,
                    "supersedes": supersedes,
                    "reconciled": False,
                },
            )

    def _ready(self, year):
        return [
            e
            for e in self.extracts.values()
            if e["academic_year"] == year
            and not e["reconciled"]
            and e["accepted"] == sum(r["extract_id"] == e["extract_id"] for r in self.records.values())
        ]

    async def any_ready(self, year):
        return bool(self._ready(year))

    async def ready_extracts(self, year):
        return self._ready(year)

    async def retire_extract(self, extract_id):
        retired = {r["pupil_id"] for r in self.records.values() if r["extract_id"] == extract_id and r["active"]}
        for r in self.records.values():
            if r["extract_id"] == extract_id:
                r["active"] = False
        return retired

    async def mark_reconciled(self, extract_id):
        self.extracts[extract_id]["reconciled"] = True


class FakeUnitOfWork:
    def __init__(self) -> None:
        self.repo = FakeRepository()

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[FakeRepository]:
        yield self.repo


class FakeKeys:
    def __init__(self) -> None:
        self.kek = KeyEncryptionKey(os.urandom(32))
        self.keys: dict[UUID, DataKey] = {}
        self.destroyed: set[UUID] = set()

    def new(self) -> DataKey:
        key = DataKey.generate(uuid4())
        self.keys[key.key_id] = key
        return key

    async def get_many(self, key_ids):
        return {k: self.keys[k] for k in key_ids}

    async def destroyed_among(self, key_ids):
        return set(key_ids) & self.destroyed


class FakeOutbox:
    def __init__(self, repo: FakeRepository) -> None:
        self.repo, self.published = repo, []

    async def flush(self) -> int:
        n = len(self.repo.outbox)
        self.published += [cohort_event_adapter.validate_json(payload) for _, _, payload in self.repo.outbox]
        self.repo.outbox.clear()
        return n


class FixedClock:
    def now(self) -> datetime:
        return datetime(2017, 6, 1, 9, tzinfo=UTC)

    def today(self) -> date:
        return date(2017, 6, 1)


@dataclass
class ProtocolInForce:
    current: object


@pytest.fixture
def world():
    uow, keys = FakeUnitOfWork(), FakeKeys()
    outbox = FakeOutbox(uow.repo)
    svc = EligibilityService(uow, keys, ProtocolInForce(load_protocol()), load_all_rules(), outbox, FixedClock())
    return svc, uow.repo, keys, outbox


# --- how an upstream extract arrives ---------------------------------------------------------------


def pupil(
    keys: FakeKeys,
    key: DataKey,
    extract_id: UUID,
    row: int,
    *,
    forename="Ada",
    surname="Lovelace",
    dob=date(2010, 3, 4),
    postcode="CV34 4AB",
    year_group="2",
    school="9372001",
    received: datetime = datetime(2017, 6, 1, tzinfo=UTC),
) -> PupilRecorded:
    personal = PupilPersonal(
        surname=surname,
        forename=forename,
        date_of_birth=dob,
        address_lines=["1 High Street", "Warwick"],
        postcode=postcode,
    )
    event = PupilRecorded(
        event_id=stable_id("pupil", extract_id, row),
        occurred_at=received,
        extract_id=extract_id,
        record_id=stable_id("record", extract_id, row),
        source="summer-census",
        reference_date=MAY,
        row_number=row,
        originator="LA",
        protocol_version="0.2",
        school_dfe=school,
        school_name="Castle Primary",
        year_group=year_group,
        gender="F",
        match_key=keys.kek.blind_index(forename, surname, dob.isoformat()),
        personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
    )
    return event.model_copy(update={"personal": key.seal_model(personal, event.aad())})


def completed(extract_id: UUID, key: DataKey, accepted: int, supersedes: UUID | None = None) -> ExtractCompleted:
    return ExtractCompleted(
        event_id=stable_id("extract-completed", extract_id),
        occurred_at=datetime(2017, 6, 1, tzinfo=UTC),
        extract_id=extract_id,
        source="summer-census",
        reference_date=MAY,
        target_academic_year="2017/18",
        content_sha256="0" * 64,
        rows_in=accepted,
        accepted=accepted,
        rejected=0,
        out_of_scope=0,
        warnings=0,
        supersedes=supersedes,
        key_id=key.key_id,
        originator="LA",
        protocol_version="0.2",
        ingested_by="test",
    )


async def send(svc, pupils, done):
    await svc.handle_pupils(pupils)
    await svc.handle_extracts([done])


# --- the use cases -------------------------------------------------------------------------------


async def test_a_may_census_child_is_rolled_forward_into_the_flu_cohort_once(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await send(svc, [pupil(keys, key, ex, 2)], completed(ex, key, 1))
    [added] = outbox.published
    assert isinstance(added, CohortMemberAdded)
    assert (added.programme, added.year_group, added.academic_year, added.change) == ("flu", "3", "2017/18", "added")
    opened = key.open_model(added.personal, PupilPersonal, added.aad())
    assert opened.surname == "Lovelace"  # sealed to the cohort event's own context


async def test_redelivered_events_publish_nothing_more(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, 2), pupil(keys, key, ex, 3, forename="Alan", surname="Turing")]
    await send(svc, events, completed(ex, key, 2))
    await send(svc, events, completed(ex, key, 2))
    assert len(outbox.published) == 2


async def test_the_same_child_in_a_second_extract_is_one_member_updated(world):
    svc, repo, keys, outbox = world
    key1, ex1, key2, ex2 = keys.new(), uuid4(), keys.new(), uuid4()
    await send(svc, [pupil(keys, key1, ex1, 2)], completed(ex1, key1, 1))
    later = datetime(2017, 6, 20, tzinfo=UTC)  # the newer record wins (ties broken by record id: not here)
    await send(svc, [pupil(keys, key2, ex2, 7, school="9372002", received=later)], completed(ex2, key2, 1))
    added, updated = outbox.published
    assert added.pupil_id == updated.pupil_id and updated.change == "updated" and updated.revision == 2
    assert updated.school_dfe == "9372002"


async def test_a_replacement_dataset_withdraws_a_child_no_longer_in_it(world):
    svc, repo, keys, outbox = world
    key1, ex1, key2, ex2 = keys.new(), uuid4(), keys.new(), uuid4()
    await send(
        svc,
        [pupil(keys, key1, ex1, 2), pupil(keys, key1, ex1, 3, forename="Alan", surname="Turing")],
        completed(ex1, key1, 2),
    )
    await send(svc, [pupil(keys, key2, ex2, 2)], completed(ex2, key2, 1, supersedes=ex1))
    withdrawn = [e for e in outbox.published if isinstance(e, CohortMemberWithdrawn)]
    assert len(withdrawn) == 1 and "replacement dataset" in withdrawn[0].reason
    names = {
        e.pupil_id: key1.open_model(e.personal, PupilPersonal, e.aad()).forename
        for e in outbox.published
        if isinstance(e, CohortMemberAdded)
    }
    assert names[withdrawn[0].pupil_id] == "Alan"
    assert {k[2] for k, m in repo.cohort.items() if m["status"] == "active"} == {
        p for p, name in names.items() if name == "Ada"
    }


async def test_a_child_outside_the_programme_years_gets_no_event_and_an_age_finding(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    # recorded in Year 5 in May (Year 6 in 2017/18: no programme), born as a Year 2 child would be
    await send(svc, [pupil(keys, key, ex, 2, year_group="5")], completed(ex, key, 1))
    assert outbox.published == []
    assert [code for (_, _, code) in repo.findings] == ["out-of-year-group"]


async def test_replayed_events_of_deleted_data_are_skipped(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    keys.destroyed.add(key.key_id)  # retention destroyed the extract's key
    await svc.handle_pupils([pupil(keys, key, ex, 2)])
    assert repo.records == {} and outbox.published == []
