"""retention's read functions for ``sais status`` and SAR (callers pass a pool opened as retention's role)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import asyncpg


async def pending_deletions(pool: asyncpg.Pool, today: date) -> dict[str, int]:
    """Deletions not yet certified: scheduled (due today or later) and overdue (past due)."""
    r = await pool.fetchrow(
        "SELECT count(*) FILTER (WHERE due_on >= $1) AS scheduled, count(*) FILTER (WHERE due_on < $1) AS overdue "
        "FROM retention.schedule WHERE executed_at IS NULL",
        today,
    )
    return dict(r)


async def schedule_for(pool: asyncpg.Pool, subjects: Sequence[str]) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT subject, due_on, executed_at FROM retention.schedule WHERE subject = ANY($1) ORDER BY due_on",
            list(subjects),
        )
    ]
