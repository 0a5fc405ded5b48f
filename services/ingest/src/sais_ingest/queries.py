"""ingest's read functions for other parts of the product (``sais status``, SAR, quality view).

Nothing outside ingest names its schema in SQL: callers pass a pool opened as ingest's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg


async def recent_extracts(pool: asyncpg.Pool, limit: int = 10) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT source, reference_date, status, rows_in, accepted, rejected, out_of_scope, completed_at, "
            "purged_at IS NOT NULL AS purged FROM ingest.extracts ORDER BY started_at DESC LIMIT $1",
            limit,
        )
    ]


async def extracts_by_id(pool: asyncpg.Pool, extract_ids: Sequence[UUID]) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT extract_id, source, reference_date, file_name, originator, started_at FROM ingest.extracts "
            "WHERE extract_id = ANY($1) ORDER BY started_at",
            list(extract_ids),
        )
    ]


async def rows_from_schools_outside_the_la(pool: asyncpg.Pool, academic_year: str) -> int:
    """Rows refused because their school is not in the LA (code school_dfe.la), for one target year."""
    return await pool.fetchval(
        "SELECT count(*) FROM ingest.row_problems p JOIN ingest.extracts e USING (extract_id) "
        "WHERE e.target_academic_year=$1 AND p.code='school_dfe.la'",
        academic_year,
    )
