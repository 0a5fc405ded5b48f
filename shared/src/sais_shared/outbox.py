"""Transactional outbox: events are written in the same transaction as the state change that
caused them, and published after commit. Rows are locked while publishing (SKIP LOCKED), deleted
once the broker acknowledged them, and event ids are deterministic — so a crash between publish
and delete only republishes events that consumers already discard as seen."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from .kafka import publish_many


async def flush_outbox(pool: asyncpg.Pool, table: str, publisher: Any, limit: int = 5000) -> int:
    """Publish and delete everything in ``table`` (columns seq, key, payload: an event's JSON, written
    by this service from its own model); returns how many."""
    total = 0
    while True:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                f"SELECT seq, key, payload FROM {table} ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED", limit
            )
            if not rows:
                return total
            await publish_many(publisher, ((r["key"], r["payload"].encode()) for r in rows))
            await conn.execute(f"DELETE FROM {table} WHERE seq = ANY($1)", [r["seq"] for r in rows])
            total += len(rows)


async def publish_queued(
    pool: asyncpg.Pool, table: str, publisher: Any, events: Sequence[tuple[Any, bytes, str]]
) -> int:
    """Publish ``events`` (event id, key, payload), which the caller committed to ``table`` just now, from
    memory: only their rows are read (locked, SKIP LOCKED, so a flush running beside it keeps its own), never
    their payloads. Those still queued go, in the order given, and are deleted once the broker acknowledged
    them; one another flush took or already published is left to it. A crash before the delete leaves the
    rows for :func:`flush_outbox`, which publishes them again under the same event ids. Returns how many."""
    if not events:
        return 0
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(
            f"SELECT seq, event_id FROM {table} WHERE event_id = ANY($1::uuid[]) FOR UPDATE SKIP LOCKED",
            [event_id for event_id, _, _ in events],
        )
        held = {r["event_id"]: r["seq"] for r in rows}
        await publish_many(
            publisher, ((key, payload.encode()) for event_id, key, payload in events if event_id in held)
        )
        await conn.execute(f"DELETE FROM {table} WHERE seq = ANY($1)", list(held.values()))
    return len(held)
