"""Ingest's extract store: the part of its contract the one-child-once rule, the report and the dip
sample rely on, run against both the in-memory fake of the use-case unit tests and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import date

import pytest
from sais_ingest.adapters.repository import ExtractRepository
from sais_ingest.app import WIRING
from sais_ingest.domain.extracts import DipSampleRow, RowKeys, RowProblem

from tests.fakes import FakeExtractStore
from tests.helpers import service_pool

pytestmark = pytest.mark.integration


@pytest.fixture(params=["in-memory", "postgresql"])
async def store(request, settings_env) -> AsyncIterator:
    if request.param == "in-memory":
        yield FakeExtractStore()
        return
    async with service_pool(WIRING.migrations) as pool:
        yield ExtractRepository(pool)


async def started(store, extract_id: uuid.UUID | None = None) -> uuid.UUID:
    extract_id = extract_id or uuid.uuid4()
    await store.start(
        extract_id=extract_id,
        sha256=uuid.uuid4().hex * 2,
        source="summer-census",
        reference_date=date(2017, 5, 18),
        target_academic_year="2017/18",
        file_name="may.csv",
        encoding="utf-8",
        supersedes=None,
        key_id=uuid.uuid4(),
        originator="test",
        protocol_version="1.0",
        ingested_by="test",
    )
    return extract_id


async def test_a_row_that_repeats_an_earlier_one_exactly_is_named_with_the_first_even_across_chunks(store):
    x = await started(store)
    assert await store.index_rows(x, [RowKeys(3, "ada", "c-1"), RowKeys(2, "bob", "c-2")]) == {}
    assert await store.index_rows(x, [RowKeys(5, "ada", "c-1"), RowKeys(4, "ada", "c-3"), RowKeys(6, "x", "c-3")]) == {
        5: 3,
        6: 4,
    }
    assert sorted(await store.same_child_rows(x)) == [(4, 3)]  # same name and birth date, other details differ


async def test_a_resumed_extract_starts_its_problems_and_row_index_again(store):
    x = await started(store)
    await store.index_rows(x, [RowKeys(2, "ada", "c-1")])
    await store.add_problems(x, [RowProblem(2, "rejected", "DOB", "dob.invalid", "not a date")])
    await started(store, x)  # again: resumed
    assert await store.problems(x, "rejected") == []
    assert await store.index_rows(x, [RowKeys(3, "ada", "c-1")]) == {}  # row 2 is no longer indexed


async def test_problems_are_listed_by_kind_in_row_order_and_the_dip_sample_reads_back_as_written(store):
    x = await started(store)
    problems = [
        RowProblem(9, "rejected", "Postcode", "postcode.invalid", "not a postcode"),
        RowProblem(3, "warning", "row", "row.repeated", "repeats row 2 exactly"),
        RowProblem(3, "rejected", "DOB", "dob.invalid", "not a date"),
    ]
    await store.add_problems(x, problems)
    assert await store.problems(x, "rejected") == [problems[2], problems[0]]
    assert await store.problems(x, "rejected", limit=1) == [problems[2]]
    assert [p.shown() for p in await store.problems(x, "warning")] == [
        {"row_number": 3, "field": "row", "code": "row.repeated", "reason": "repeats row 2 exactly"}
    ]
    sealed = '{"key_id": "00000000-0000-0000-0000-000000000001", "nonce": "n", "ciphertext": "c"}'
    sample = [DipSampleRow(7, "9372001", "3", "F", sealed), DipSampleRow(2, "9372002", "R", "M", sealed)]
    await store.save_dip_sample(x, sample)
    back = await store.dip_sample(x)
    assert [(r.row_number, r.school_dfe, r.year_group, r.gender) for r in back] == [
        (2, "9372002", "R", "M"),
        (7, "9372001", "3", "F"),
    ]
