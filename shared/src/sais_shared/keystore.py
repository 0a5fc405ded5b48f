"""Data-key store in PostgreSQL (``shared.data_keys``): one data key per extract, wrapped by the KEK.

Services reach the table only through its functions (``shared.create_data_key``,
``shared.wrapped_data_keys``, ``shared.live_data_keys``, ``shared.destroy_data_keys``), each
granted to the roles that need it: ingest creates keys, eligibility and delivery read them,
retention lists and destroys them.

Keys are looked up per batch and not cached across batches, so a destroyed key stops working
everywhere at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from uuid import UUID

import asyncpg

from .crypto import DataKey, KeyEncryptionKey
from .errors import KeyDestroyedError, UnknownKeyError
from .events import stable_id


async def destroyed_among(db, key_ids: Iterable[UUID]) -> set[UUID]:
    """Which of these keys retention has destroyed, read on ``db`` (a pool, or a connection already in a
    transaction, so a caller holding locks needs no second connection)."""
    rows = await db.fetch(
        "SELECT key_id FROM shared.wrapped_data_keys($1::uuid[]) WHERE wrapped IS NULL", list(set(key_ids))
    )
    return {r["key_id"] for r in rows}


class KeyStore:
    def __init__(self, pool: asyncpg.Pool, kek: KeyEncryptionKey) -> None:
        self._pool = pool
        self._kek = kek

    @property
    def kek(self) -> KeyEncryptionKey:
        return self._kek

    async def key_for_extract(self, extract_id: UUID) -> DataKey:
        """The extract's data key, created on first use; the same key on every later call."""
        key_id = stable_id("data-key", extract_id)
        candidate = DataKey.generate(key_id)
        async with self._pool.acquire() as conn:
            created = await conn.fetchval(
                "SELECT shared.create_data_key($1, $2, $3, $4)",
                key_id,
                extract_id,
                self._kek.kek_id,
                self._kek.wrap(candidate),
            )
        if created:
            return candidate
        return (await self.get_many([key_id]))[key_id]

    async def get_many(self, key_ids: Iterable[UUID]) -> dict[UUID, DataKey]:
        """Unwrapped keys by id; raises if any is unknown or destroyed."""
        wanted = set(key_ids)
        if not wanted:
            return {}
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key_id, wrapped FROM shared.wrapped_data_keys($1::uuid[])",
                list(wanted),
            )
        found = {r["key_id"]: r["wrapped"] for r in rows}
        missing = wanted - found.keys()
        if missing:
            raise UnknownKeyError(f"unknown data key(s): {sorted(map(str, missing))}")
        destroyed = [k for k, w in found.items() if w is None]
        if destroyed:
            raise KeyDestroyedError(f"data key(s) destroyed: {sorted(map(str, destroyed))}")
        return {k: self._kek.unwrap(k, w) for k, w in found.items()}

    async def destroyed_among(self, key_ids: Iterable[UUID]) -> set[UUID]:
        """Which of these keys retention has destroyed (their data is gone for good)."""
        return await destroyed_among(self._pool, key_ids)

    async def live_among(self, key_ids: Iterable[UUID]) -> set[UUID]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT key_id FROM shared.wrapped_data_keys($1::uuid[]) WHERE wrapped IS NOT NULL",
                list(set(key_ids)),
            )
        return {r["key_id"] for r in rows}


async def rewrap_all(conn: asyncpg.Connection, ring: KeyEncryptionKey) -> int:
    """KEK rotation: every live data key not yet wrapped by the KEK in force is opened (by whichever KEK of
    the ring wrapped it) and wrapped again by the one in force, in the caller's transaction. Keys a writer
    creates meanwhile are wrapped by the KEK it holds: run it again until `kek_usage` shows no other id."""
    rows = await conn.fetch(
        "SELECT key_id, wrapped FROM shared.data_keys WHERE wrapped IS NOT NULL AND kek_id <> $1 FOR UPDATE",
        ring.kek_id,
    )
    await conn.executemany(
        "UPDATE shared.data_keys SET wrapped=$2, kek_id=$3 WHERE key_id=$1",
        [(r["key_id"], ring.wrap(ring.unwrap(r["key_id"], r["wrapped"])), ring.kek_id) for r in rows],
    )
    return len(rows)


async def kek_usage(conn: asyncpg.Connection | asyncpg.Pool) -> dict[str, int]:
    """Live data keys by the id of the KEK that wraps them (administrator)."""
    rows = await conn.fetch(
        "SELECT kek_id, count(*) AS n FROM shared.data_keys WHERE wrapped IS NOT NULL GROUP BY kek_id ORDER BY kek_id"
    )
    return {r["kek_id"]: r["n"] for r in rows}


async def destroy_keys(conn: asyncpg.Connection, key_ids: Iterable[UUID], by: str) -> list[UUID]:
    """Destroy data keys inside the caller's transaction; returns those destroyed now."""
    rows = await conn.fetch("SELECT k FROM shared.destroy_data_keys($1::uuid[], $2) k", list(set(key_ids)), by)
    return sorted(r["k"] for r in rows)


async def live_keys(conn: asyncpg.Connection | asyncpg.Pool) -> list[tuple[UUID, UUID]]:
    """(key id, extract id) of every live data key (retention's purge)."""
    return [(r["key_id"], r["extract_id"]) for r in await conn.fetch("SELECT * FROM shared.live_data_keys()")]


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: str,
    action: str,
    subject: str,
    details: dict | None = None,
    protocol_version: str | None = None,
) -> None:
    """Append to the audit trail. ``details`` must hold ids and counts only."""
    await conn.execute(
        "INSERT INTO shared.audit_log(actor, action, subject, details, protocol_version) "
        "VALUES ($1, $2, $3, $4::jsonb, $5)",
        actor,
        action,
        subject,
        json.dumps(details or {}, default=str),
        protocol_version,
    )
