"""ingest's read functions for other parts of the product (``sais status``, SAR, quality view).

Nothing outside ingest names its schema in SQL: callers pass a pool opened as ingest's role.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg

from .adapters.repository import is_held


async def recent_extracts(pool: asyncpg.Pool, limit: int = 10) -> list[dict[str, Any]]:
    """The latest extracts: how each ended (completed, refused, failed, withdrawn) and why. One still
    ``started`` that no process holds any more was abandoned (the ingest service ends it on its next
    sweep): it is shown as such, never as if it were in progress."""
    rows = [
        dict(r)
        for r in await pool.fetch(
            "SELECT extract_id, file_name, source, reference_date, status, rows_in, accepted, repeated, rejected, "
            "out_of_scope, published, failure_code, failure, ended_by, completed_at, ended_at, "
            "purged_at IS NOT NULL AS purged FROM ingest.extracts WHERE content_sha256 NOT LIKE 'dry-run:%' "
            "ORDER BY started_at DESC LIMIT $1",
            limit,
        )
    ]
    for r in rows:
        if r["status"] == "started":
            if await is_held(pool, r["extract_id"]):
                r["status"] = "in progress"
            else:
                r["status"], r["failure_code"] = "abandoned", "abandoned"
                r["failure"] = "the ingest stopped before the end of the extract; nothing of it is delivered"
        r["extract_id"] = str(r["extract_id"])
    return rows


async def ended_extracts(pool: asyncpg.Pool, limit: int = 50) -> list[dict[str, Any]]:
    """Extracts refused or failed part-way (none of their children is delivered), newest first."""
    return [
        {**dict(r), "extract_id": str(r["extract_id"])}
        for r in await pool.fetch(
            "SELECT extract_id, file_name, source, reference_date, status, failure_code, failure, published, "
            "ended_by, ended_at FROM ingest.extracts WHERE status IN ('refused', 'failed') "
            "ORDER BY ended_at DESC LIMIT $1",
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
