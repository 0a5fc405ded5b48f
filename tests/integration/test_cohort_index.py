"""The cohort read behind every eligibility batch and release chunk goes by index and stays flat as the table
grows (issue 28: it was a parallel sequential scan, 276 ms a batch at county size, growing with the square of
the extract; and again, on 7 December, for a release walk's chunk of 2,000 children, 30-40 ms a chunk at
100,000 pupils while the index read them in 5-7 ms)."""

import json
import uuid

import asyncpg
import pytest

pytestmark = pytest.mark.integration


async def _grow(conn: asyncpg.Connection, upto: int) -> None:
    await conn.execute(
        "INSERT INTO eligibility.cohort (academic_year, programme, pupil_id, dose, status, fingerprint, revision, "
        "record_id, school_dfe, year_group, gender) "
        "SELECT y, p, (lpad(to_hex(i), 32, '0'))::uuid, NULL, 'active', 'f', 1, gen_random_uuid(), '9372000', "
        "'Y8', 'F' FROM generate_series((SELECT count(*) FROM eligibility.cohort) / 6 + 1, $1) i, "
        "unnest(ARRAY['2017/18', '2018/19']) y, unnest(ARRAY['flu', 'hpv', 'td-ipv']) p",
        upto,
    )
    await conn.execute("ANALYZE eligibility.cohort")


async def _plan(conn: asyncpg.Connection, children: int) -> dict:
    from sais_eligibility.adapters.repository import COHORT_HELD

    ids = [uuid.UUID(f"{i:032x}") for i in range(1, 10_001, 10_000 // children)]  # a batch's or a chunk's
    [row] = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {COHORT_HELD}", "2017/18", ids)
    return json.loads(row[0])[0]["Plan"]


def _nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _buffers(plan: dict) -> int:
    return plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]


@pytest.mark.parametrize("children", [100, 2000])  # a pupil batch's children; a release walk's chunk
async def test_the_cohort_read_uses_its_index_and_reads_as_much_at_ten_times_the_size(settings_env, children):
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        await _grow(conn, 10_000)
        small = await _plan(conn, children)
        await _grow(conn, 100_000)  # a county: 600,000 cohort rows
        large = await _plan(conn, children)
    finally:
        await conn.close()
    for plan in (small, large):
        kinds = {(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan)}
        assert ("Seq Scan", "cohort") not in kinds, kinds
        assert any(n.get("Index Name") == "cohort_pkey" for n in _nodes(plan)), kinds
        assert plan["Actual Rows"] == 3 * children  # each child's 3 programmes in 2017/18
    assert _buffers(large) < 2 * _buffers(small), (_buffers(small), _buffers(large))


async def _prepared_plan(pool: asyncpg.Pool, table: str) -> set[str]:
    """The node types of a statement prepared on a pooled connection: executed six times while its table
    is small (when PostgreSQL may settle on a generic plan), then again once the table has grown."""
    query = f"SELECT pupil_id, array_agg(k) FROM {table} WHERE y = $1 AND k = ANY($2) GROUP BY pupil_id"
    async with pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {table} SELECT '2017/18', 'k' || i, gen_random_uuid() FROM generate_series(1, 50) i"
        )
        await conn.execute(f"ANALYZE {table}")  # as autovacuum would, early in a run
        await conn.execute(f"PREPARE q AS {query}")
        for _ in range(6):
            await conn.execute("EXECUTE q('2017/18', ARRAY['k1', 'k2'])")
        await conn.execute(
            f"INSERT INTO {table} SELECT '2017/18', 'k' || i, gen_random_uuid() FROM generate_series(51, 200000) i"
        )
        await conn.execute(f"ANALYZE {table}")
        keys = ",".join(f"'k{i}'" for i in range(1, 200_000, 200))
        [row] = await conn.fetch(f"EXPLAIN (FORMAT JSON) EXECUTE q('2017/18', ARRAY[{keys}])")
        await conn.execute("DEALLOCATE q")
    return {n["Node Type"] for n in _nodes(json.loads(row[0])[0]["Plan"])}


async def test_a_statement_prepared_on_a_small_table_is_planned_with_its_parameters_as_the_table_grows(
    settings_env,
):
    """asyncpg prepares every statement once per connection. Left to itself, PostgreSQL may keep a generic
    plan made while the table was small: a sequential scan per batch on a table of a county's records.
    The pools plan each execution with its parameters (``plan_cache_mode``)."""
    from sais_shared.db import create_pool

    table = f"public.grow_{uuid.uuid4().hex[:8]}"
    pool = await create_pool(settings_env["SAIS_DATABASE_URL"])
    try:
        await pool.execute(f"CREATE TABLE {table} (y text, k text, pupil_id uuid)")
        await pool.execute(f"CREATE INDEX ON {table} (y, k)")
        nodes = await _prepared_plan(pool, table)
        mode = await pool.fetchval("SHOW plan_cache_mode")
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}")
        await pool.close()
    assert "Seq Scan" not in nodes, nodes
    assert mode == "force_custom_plan"


async def _records(conn: asyncpg.Connection, extract: uuid.UUID, pupils: range, *, shuffled: bool = False) -> None:
    """Records of ``extract`` for the children numbered ``pupils``: pupil ids in the order of the numbers, or
    (``shuffled``) as unrelated to where the rows lie as real pupil ids (uuid5) are."""
    pupil = "md5(i::text)::uuid" if shuffled else "(lpad(to_hex(i), 32, '0'))::uuid"
    await conn.execute(
        "INSERT INTO eligibility.records (record_id, extract_id, academic_year, pupil_id, match_key, postcode_key, "
        "content_key, source, reference_date, received_at, school_dfe, school_name, recorded_year_group, "
        "year_group, dob_year_group, gender, key_id, personal) "
        f"SELECT gen_random_uuid(), $1, '2017/18', {pupil}, 'm' || i, 'p', 'c', "
        "'summer-census', '2017-05-18', now(), '9372000', 'A School', '7', '8', '8', 'F', $1, '{}' "
        "FROM generate_series($2::int, $3::int, $4::int) i",
        extract,
        pupils.start,
        pupils.stop - 1,
        pupils.step,
    )


async def test_a_release_walk_takes_its_next_children_from_the_extract_index_as_the_extracts_grow(settings_env):
    """The walk's next chunk of children across an extract and the one it supersedes (``CHILDREN_OF``) is read
    from the (extract_id, pupil_id) index, as much at ten times the size. It went by the pupil index, and read
    a record from the table for each one of another extract it skipped (48 ms a chunk at county size)."""
    from sais_eligibility.adapters.repository import CHILDREN_OF

    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    a, b = uuid.uuid4(), uuid.uuid4()
    plans = []
    try:
        for size in (10_000, 100_000):
            await conn.execute("DELETE FROM eligibility.records WHERE extract_id = ANY($1)", [a, b])
            await _records(conn, a, range(1, size + 1), shuffled=True)
            await _records(conn, b, range(2, 2 * size + 1, 2), shuffled=True)  # every other child of a, and more
            await conn.execute("ANALYZE eligibility.records")
            after = uuid.UUID(int=2**127)  # half way through
            [row] = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {CHILDREN_OF}", [a, b], after, 2000)
            plans.append(json.loads(row[0])[0]["Plan"])
    finally:
        await conn.execute("DELETE FROM eligibility.records WHERE extract_id = ANY($1)", [a, b])
        await conn.close()
    for plan in plans:
        kinds = {(n["Node Type"], n.get("Relation Name")) for n in _nodes(plan)}
        assert ("Seq Scan", "records") not in kinds, kinds
        assert {n.get("Index Name") for n in _nodes(plan) if "Index" in n["Node Type"]} == {"records_extract_pupil"}
        assert plan["Actual Rows"] == 2000
    small, large = plans
    assert _buffers(large) < 2 * _buffers(small), (_buffers(small), _buffers(large))


async def test_a_release_walk_meets_every_child_of_an_extract_and_the_one_it_supersedes_once_in_order(
    settings_env,
):
    from sais_eligibility.adapters.repository import EligibilityRepository

    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    a, b = uuid.uuid4(), uuid.uuid4()
    try:
        await _records(conn, a, range(1, 51))
        await _records(conn, b, range(3, 80, 3))  # some children in both, some in the newer extract only
        await _records(conn, uuid.uuid4(), range(1, 200))  # another extract's children are not met
        repo, seen, after = EligibilityRepository(conn), [], None
        while chunk := await repo.children_of([a, b], after, 7):
            assert len(chunk) <= 7
            seen += chunk
            after = chunk[-1]
    finally:
        await conn.execute("DELETE FROM eligibility.records WHERE academic_year = '2017/18'")
        await conn.close()
    expected = sorted({*range(1, 51), *range(3, 80, 3)})
    assert seen == [uuid.UUID(f"{i:032x}") for i in expected]
