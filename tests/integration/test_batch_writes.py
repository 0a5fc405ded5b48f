"""The one-statement batch writes name each column's type themselves: held here to the tables the
migrations make, so that a column added or retyped cannot travel under the wrong type."""

from __future__ import annotations

import pytest
from sais_delivery.adapters.store import MEMBER_COLUMNS, MEMBER_TYPES
from sais_delivery.app import WIRING as DELIVERY
from sais_eligibility.adapters.repository import COHORT_COLUMNS, COHORT_TYPES, RECORD_TYPES
from sais_eligibility.app import WIRING as ELIGIBILITY
from sais_eligibility.domain.model import RECORD_COLUMNS

from tests.helpers import service_pool

pytestmark = pytest.mark.integration

SQL_NAMES = {"integer": "int", "ARRAY": "uuid[]", "timestamp with time zone": "timestamptz"}


async def _types(pool, table: str, columns) -> tuple[str, ...]:
    schema, name = table.split(".")
    rows = await pool.fetch(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema=$1 AND table_name=$2",
        schema,
        name,
    )
    found = {r["column_name"]: SQL_NAMES.get(r["data_type"], r["data_type"]) for r in rows}
    return tuple(found[c] for c in columns)


@pytest.mark.parametrize(
    "wiring, table, columns, types",
    [
        (ELIGIBILITY, "eligibility.records", RECORD_COLUMNS, RECORD_TYPES),
        (ELIGIBILITY, "eligibility.cohort", COHORT_COLUMNS, COHORT_TYPES),
        (DELIVERY, "delivery.members", MEMBER_COLUMNS, MEMBER_TYPES),
    ],
    ids=["records", "cohort", "members"],
)
async def test_each_column_travels_as_its_table_types_it(settings_env, wiring, table, columns, types):
    async with service_pool(wiring.migrations) as pool:
        assert await _types(pool, table, columns) == tuple(types)
