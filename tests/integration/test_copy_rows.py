"""Rows that are new as a rule go by one COPY in a savepoint; one that is there already turns the whole
statement into the INSERT with its ON CONFLICT clause, inside the same transaction, losing nothing and
writing nothing twice (issue 28)."""

from __future__ import annotations

from uuid import UUID, uuid4

import asyncpg
import pytest
from sais_shared.db import copy_new_rows, insert_new_rows

pytestmark = pytest.mark.integration

COLUMNS = ("id", "n", "tags", "doc")
TYPES = ("uuid", "int", "uuid[]", "jsonb")
TABLE = "public.t"


@pytest.fixture
async def conn(database):
    c = await asyncpg.connect(database)
    await c.execute(
        "CREATE TABLE public.t (id uuid PRIMARY KEY, n int NOT NULL, tags uuid[], doc jsonb, seen int DEFAULT 1)"
    )
    try:
        yield c
    finally:
        await c.close()


def _rows(n: int) -> list[tuple]:
    return [(uuid4(), i, [uuid4(), uuid4()], f'{{"k": {i}}}') for i in range(n)]


async def _table(c) -> dict[UUID, tuple]:
    return {
        r["id"]: (r["n"], list(r["tags"] or []), r["doc"], r["seen"]) for r in await c.fetch("SELECT * FROM public.t")
    }


async def test_new_rows_go_by_copy_with_their_arrays_and_json(conn):
    rows = _rows(5)
    async with conn.transaction():
        assert await copy_new_rows(conn, TABLE, COLUMNS, rows) is True
    assert await _table(conn) == {r[0]: (r[1], r[2], r[3], 1) for r in rows}


async def test_a_row_there_already_writes_nothing_and_keeps_the_transaction(conn):
    first = _rows(2)
    await copy_new_rows(conn, TABLE, COLUMNS, first)
    async with conn.transaction():
        assert await copy_new_rows(conn, TABLE, COLUMNS, [*_rows(3), first[0]]) is False
        await conn.execute("UPDATE public.t SET seen = 2")  # the transaction is still usable: only the savepoint went
    assert {v[3] for v in (await _table(conn)).values()} == {2}
    assert set(await _table(conn)) == {r[0] for r in first}


async def test_a_repeat_falls_back_to_the_conflict_clause_for_all_of_them(conn):
    first = _rows(2)
    await insert_new_rows(conn, TABLE, COLUMNS, TYPES, first, "ON CONFLICT DO NOTHING")
    more = _rows(3)
    changed = (first[0][0], 99, [], '{"k": 99}')
    async with conn.transaction():
        await insert_new_rows(
            conn, TABLE, COLUMNS, TYPES, [*more, changed], "ON CONFLICT (id) DO UPDATE SET n = EXCLUDED.n, seen = 2"
        )
    table = await _table(conn)
    assert set(table) == {r[0] for r in [*first, *more]}
    assert table[first[0][0]][0::3] == (99, 2)  # the conflict clause ran for the row that was there
    assert all(table[r[0]] == (r[1], r[2], r[3], 1) for r in more)  # the others as given, arrays included


async def test_returning_gives_the_rows_stored_now(conn):
    first = _rows(2)
    stored = await insert_new_rows(conn, TABLE, COLUMNS, TYPES, first, "ON CONFLICT DO NOTHING RETURNING id")
    assert stored == [r[0] for r in first]
    more = _rows(2)
    again = await insert_new_rows(
        conn, TABLE, COLUMNS, TYPES, [first[1], *more, more[0]], "ON CONFLICT DO NOTHING RETURNING id"
    )
    assert sorted(again) == sorted(r[0] for r in more)  # a row twice in one statement, too, is stored once
    assert len(await _table(conn)) == 4
    assert await insert_new_rows(conn, TABLE, COLUMNS, TYPES, [], "ON CONFLICT DO NOTHING RETURNING id") == []


async def test_one_savepoint_name_serves_every_copy_of_a_transaction_and_none_is_needed_outside_one(conn):
    first = _rows(1)
    assert await copy_new_rows(conn, TABLE, COLUMNS, first)  # no transaction: the COPY alone
    assert not await copy_new_rows(conn, TABLE, COLUMNS, [*_rows(2), first[0]])  # and all or nothing
    ok = _rows(2)
    async with conn.transaction():
        assert not await copy_new_rows(conn, TABLE, COLUMNS, [*_rows(1), first[0]])
        assert await copy_new_rows(conn, TABLE, COLUMNS, ok)
        assert not await copy_new_rows(conn, TABLE, COLUMNS, [first[0]])
    assert set(await _table(conn)) == {r[0] for r in [*first, *ok]}
    assert not conn.is_in_transaction()
