"""delivery's read functions for ``sais status`` and SAR (callers pass a pool opened as delivery's role)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg


async def recent_batches(pool: asyncpg.Pool, limit: int = 10) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT batch_id, window_name, academic_year, status, sent_at, delete_by FROM delivery.batches "
            "ORDER BY prepared_at DESC LIMIT $1",
            limit,
        )
    ]


async def work_in_hand(pool: asyncpg.Pool) -> dict[str, int]:
    """Events delivery has written and not yet published (its outbox)."""
    return {"delivery outbox": await pool.fetchval("SELECT count(*) FROM delivery.outbox")}


async def sharing_control(pool: asyncpg.Pool) -> dict[str, Any]:
    """Whether sharing is suspended (§16.4), why, and how many breaches are open."""
    control = await pool.fetchrow("SELECT suspended, reason FROM delivery.control")
    breaches = await pool.fetchval("SELECT count(*) FROM delivery.breaches WHERE closed_at IS NULL")
    return {
        "suspended": bool(control and control["suspended"]),
        "reason": control["reason"] if control else None,
        "open_breaches": breaches,
    }


async def batches_carrying(pool: asyncpg.Pool, pupil_ids: Sequence[UUID]) -> list[dict[str, Any]]:
    """The batches that carried any of these children: when, to whom, and when they are deleted."""
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT batch_id, window_name, academic_year, recipient, status, sent_at, delete_by FROM delivery.batches "
            "WHERE pupil_ids && $1 ORDER BY prepared_at",
            list(pupil_ids),
        )
    ]
