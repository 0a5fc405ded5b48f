"""Transactional outbox: events are written in the same transaction as the state change that
caused them, and published after commit. Rows are locked while publishing (SKIP LOCKED), deleted
once the broker acknowledged them, and event ids are deterministic — so a crash between publish
and delete only republishes events that consumers already discard as seen."""

from __future__ import annotations

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
