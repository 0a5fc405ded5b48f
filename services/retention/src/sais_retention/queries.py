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


async def work_in_hand(pool: asyncpg.Pool) -> dict[str, int]:
    """Events and deletion requests retention has written and not yet published (its outboxes)."""
    r = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM retention.outbox) AS o, (SELECT count(*) FROM retention.requests_outbox) AS q"
    )
    return {"retention outbox": r["o"], "retention requests outbox": r["q"]}


async def schedule_for(pool: asyncpg.Pool, subjects: Sequence[str]) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT subject, due_on, executed_at FROM retention.schedule WHERE subject = ANY($1) ORDER BY due_on",
            list(subjects),
        )
    ]
