"""Eligibility's repository: the part of its contract the matching and the all-or-nothing hold rely on,
run against both the in-memory fake of the use-case unit tests and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime

import pytest
from sais_eligibility.adapters.repository import PgUnitOfWork
from sais_eligibility.app import WIRING
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings

from tests.unit.test_eligibility_use_cases import FakeUnitOfWork

pytestmark = pytest.mark.integration


@pytest.fixture(params=["in-memory", "postgresql"])
async def uow(request, settings_env) -> AsyncIterator:
    if request.param == "in-memory":
        yield FakeUnitOfWork()
        return
    rt = await open_runtime(CommonSettings(), *WIRING.migrations)
    try:
        yield PgUnitOfWork(rt.pool)
    finally:
        await rt.close()


def record(
    extract: uuid.UUID,
    pupil: uuid.UUID,
    match_key: str,
    postcode_key: str,
    *,
    year: str = "2017/18",
    record_id: uuid.UUID | None = None,
    school: str = "9372001",
) -> tuple:
    return (
        record_id or uuid.uuid4(),
        extract,
        year,
        pupil,
        match_key,
        postcode_key,
        "content",
        "summer-census",
        date(2017, 5, 18),
        datetime(2017, 6, 1, 9, tzinfo=UTC),
        school,
        "School",
        "R",
        "R",
        "R",
        "F",
        uuid.uuid4(),
        json.dumps({"key_id": str(uuid.uuid4()), "nonce": "", "ciphertext": ""}),
        "[]",
    )


def children(rows) -> dict[tuple[str, uuid.UUID], tuple[list[str], list[uuid.UUID]]]:
    return {(r["match_key"], r["pupil_id"]): (sorted(r["pk"]), sorted(r["ex"], key=str)) for r in rows}


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
        await repo.add_records(
            [
                held,
                record(second, ada, "mk-ada", "pc-2"),
                record(first, twin, "mk-ada", "pc-1"),
                record(first, uuid.uuid4(), "mk-other", "pc-9"),
                record(first, uuid.uuid4(), "mk-ada", "pc-1", year="2018/19"),
            ]
        )
        await repo.add_records([(*held[:4], "mk-changed", *held[5:])])  # the same record again: kept as it was
    async with uow() as repo:
        found = children(await repo.known_children("2017/18", ["mk-ada"]))
    assert found == {
        ("mk-ada", ada): (["pc-1", "pc-2"], sorted([first, second], key=str)),
        ("mk-ada", twin): (["pc-1"], [first]),
    }
    async with uow() as repo:
        assert await repo.known_children("2017/18", ["mk-changed"]) == []


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
