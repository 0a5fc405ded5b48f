"""Eligibility's repository: the part of its contract the matching and the all-or-nothing hold rely on,
run against both the in-memory fake of the use-case unit tests and PostgreSQL."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from sais_eligibility.adapters.repository import PgUnitOfWork
from sais_eligibility.app import WIRING
from sais_eligibility.domain.cohort import CohortEntry, Finding, Held, Withdrawal
from sais_eligibility.domain.model import Record

from tests.fakes import FakeUnitOfWork
from tests.helpers import extract_completed, service_pool

pytestmark = pytest.mark.integration


@pytest.fixture(params=["in-memory", "postgresql"])
async def uow(request, settings_env) -> AsyncIterator:
    if request.param == "in-memory":
        yield FakeUnitOfWork()
        return
    async with service_pool(WIRING.migrations) as pool:
        yield PgUnitOfWork(pool)


def record(
    extract: uuid.UUID,
    pupil: uuid.UUID,
    match_key: str,
    postcode_key: str,
    *,
    year: str = "2017/18",
    record_id: uuid.UUID | None = None,
    school: str = "9372001",
) -> Record:
    return Record(
        record_id or uuid.uuid4(),
        extract,
        pupil,
        "summer-census",
        date(2017, 5, 18),
        datetime(2017, 6, 1, 9, tzinfo=UTC),
        school,
        "School",
        "R",
        "F",
        uuid.uuid4(),
        academic_year=year,
        match_key=match_key,
        postcode_key=postcode_key,
        content_key="content",
        recorded_year_group="R",
        dob_year_group="R",
        personal=json.dumps({"key_id": str(uuid.uuid4()), "nonce": "", "ciphertext": ""}),
    )


def children(known) -> dict[tuple[str, uuid.UUID], tuple[list[str], list[uuid.UUID]]]:
    return {
        (match_key, c.pupil_id): (sorted(c.postcode_keys), sorted(c.extract_ids, key=str))
        for match_key, candidates in known.items()
        for c in candidates
    }


async def test_each_event_is_claimed_once(uow):
    a, b = uuid.uuid4(), uuid.uuid4()
    async with uow() as repo:
        assert await repo.claim_new([a, b]) == {a, b}
    async with uow() as repo:
        assert await repo.claim_new([a, b, c := uuid.uuid4()]) == {c}


async def test_known_children_are_grouped_by_match_key_and_child_and_a_record_is_held_once(uow):
    first, second = uuid.uuid4(), uuid.uuid4()
    ada, twin = uuid.uuid4(), uuid.uuid4()
    held = record(first, ada, "mk-ada", "pc-1")
    async with uow() as repo:
        rows = [
            held,
            record(second, ada, "mk-ada", "pc-2"),
            record(first, twin, "mk-ada", "pc-1"),
            record(first, uuid.uuid4(), "mk-other", "pc-9"),
            record(first, uuid.uuid4(), "mk-ada", "pc-1", year="2018/19"),
        ]
        assert await repo.add_records([*rows, held]) == {r.record_id for r in rows}  # stored now, each once
        again = dataclasses.replace(held, match_key="mk-changed")
        assert await repo.add_records([again]) == set()  # the same again: kept as it was, and not stored now
    async with uow() as repo:
        found = children(await repo.known_children("2017/18", ["mk-ada"]))
    assert found == {
        ("mk-ada", ada): (["pc-1", "pc-2"], sorted([first, second], key=str)),
        ("mk-ada", twin): (["pc-1"], [first]),
    }
    async with uow() as repo:
        assert not await repo.known_children("2017/18", ["mk-changed"])


async def test_progress_adds_up_per_extract_modulo_two_to_the_sixty_four(uow):
    extract = uuid.uuid4()
    async with uow() as repo:
        await repo.add_progress([(extract, 3, 2**64 - 5)])
        await repo.add_progress([(extract, 2, 7)])
    async with uow() as repo:
        assert await repo.ended_among({extract}) == set()  # progress alone ends nothing
    if isinstance(uow, FakeUnitOfWork):
        assert uow.repo.progress[extract] == [5, 2]
    else:
        async with uow.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT recorded, digest FROM eligibility.extract_progress WHERE extract_id=$1", extract
            )
        assert (row["recorded"], int(row["digest"])) == (5, 2)


async def test_a_held_record_reaches_the_cohort_read_only_once_its_extract_is_released_and_reads_back_whole(uow):
    extract, ada = uuid.uuid4(), uuid.uuid4()
    held = dataclasses.replace(record(extract, ada, "mk-ada", "pc-1"), match_findings='[["postcode-differs", "x"]]')
    async with uow() as repo:
        await repo.add_records([held])
        await repo.add_progress([(extract, 1, 0)])
        await repo.add_extracts([extract_completed(extract, uuid.uuid4(), 1)])
        assert await repo.cohort_state("2017/18", {ada}) == ({}, {})  # held: in no cohort yet
        assert [r.extract_id for r in await repo.ready_extracts("2017/18")] == [extract]
        assert await repo.start_release(extract) and not await repo.start_release(extract)
    async with uow() as repo:
        records, held_now = await repo.cohort_state("2017/18", {ada})
        [back] = records[ada]  # the sealed fields as JSON (PostgreSQL's jsonb keeps the value, not the spelling)
        assert json.loads(back.personal) == json.loads(held.personal) and held_now == {}
        assert dataclasses.replace(back, personal=held.personal) == held and back.aad() == held.aad()
        assert await repo.released_findings(extract, [ada]) == [
            Finding("2017/18", ada, "postcode-differs", "x", "9372001")
        ]


async def test_memberships_and_findings_are_saved_withdrawn_and_cleared_as_the_use_cases_write_them(uow):
    extract, ada = uuid.uuid4(), uuid.uuid4()
    rec = record(extract, ada, "mk-ada", "pc-1")
    entry = CohortEntry("2017/18", "hpv-dose-1", ada, 1, "active", "fp-1", 1, rec.record_id, "9372001", "8", "F")
    finding = Finding("2017/18", ada, "school-not-yet-known", "why", "9372001")
    async with uow() as repo:
        await repo.add_records([rec])
        await repo.save_cohort([entry], [], [(uuid.uuid4(), ada.bytes, "{}")])
        await repo.add_findings([finding])
    async with uow() as repo:
        assert (await repo.cohort_state("2017/18", {ada}))[1] == {ada: {"hpv-dose-1": Held("active", "fp-1", 1)}}
        await repo.save_cohort([], [Withdrawal("2017/18", "hpv-dose-1", ada, 2)], [])
        await repo.clear_findings([finding.key()])
    async with uow() as repo:
        assert (await repo.cohort_state("2017/18", {ada}))[1] == {ada: {"hpv-dose-1": Held("withdrawn", "fp-1", 2)}}
        assert await repo.released_findings(extract, [ada]) == []
