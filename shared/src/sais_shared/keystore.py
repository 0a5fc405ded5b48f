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
from dataclasses import dataclass, field
from uuid import UUID

import asyncpg

from .crypto import DataKey, DecryptionError, KeyEncryptionKey
from .errors import ConfigurationError, KeyDestroyedError, UnknownKeyError
from .events import stable_id

KEK_CONTRADICTS_STORE = "SAK01"  # shared.create_data_key: this KEK's id and fingerprint disagree with the store


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
            try:
                created = await conn.fetchval(
                    "SELECT shared.create_data_key($1, $2, $3, $4, $5)",
                    key_id,
                    extract_id,
                    self._kek.kek_id,
                    self._kek.fingerprint,
                    self._kek.wrap(candidate),
                )
            except asyncpg.PostgresError as exc:
                if getattr(exc, "sqlstate", None) == KEK_CONTRADICTS_STORE:
                    raise ConfigurationError(f"{exc}: check SAIS_KEK_FILE and SAIS_KEK_ID") from None
                raise
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


@dataclass
class KekCensus:
    """Every live data key, tried against the ring: by the id it is labelled with, and by the KEK that
    really opens it (None: no KEK held opens it)."""

    by_label: dict[str, int] = field(default_factory=dict)
    opened_by: dict[str | None, int] = field(default_factory=dict)
    unopenable: list[UUID] = field(default_factory=list)
    mislabelled: list[UUID] = field(default_factory=list)

    def add(self, key_id: UUID, label: str, opener: str | None, fingerprint_ok: bool) -> None:
        self.by_label[label] = self.by_label.get(label, 0) + 1
        self.opened_by[opener] = self.opened_by.get(opener, 0) + 1
        if opener is None:
            self.unopenable.append(key_id)
        elif opener != label or not fingerprint_ok:
            self.mislabelled.append(key_id)

    def only_under(self, kek_id: str) -> bool:
        """Every live key opens with this KEK and says so: the others can be removed."""
        return not self.unopenable and not self.mislabelled and set(self.opened_by) <= {kek_id}


def _opener(ring: KeyEncryptionKey, key_id: UUID, wrapped: bytes) -> tuple[DataKey | None, str | None]:
    try:
        return ring.unwrap_with_id(key_id, wrapped)
    except DecryptionError:
        return None, None


async def kek_census(conn: asyncpg.Connection | asyncpg.Pool, ring: KeyEncryptionKey) -> KekCensus:
    """Each live data key unwrapped by trial (administrator): what opens it, not what its label says."""
    census = KekCensus()
    rows = await conn.fetch(
        "SELECT key_id, kek_id, kek_fingerprint, wrapped FROM shared.data_keys WHERE wrapped IS NOT NULL ORDER BY key_id"
    )
    for r in rows:
        _, opener = _opener(ring, r["key_id"], r["wrapped"])
        fp_ok = opener is not None and r["kek_fingerprint"] == ring.fingerprint_of(opener)
        census.add(r["key_id"], r["kek_id"], opener, fp_ok)
    return census


async def rewrap_all(conn: asyncpg.Connection, ring: KeyEncryptionKey) -> tuple[int, KekCensus]:
    """KEK rotation: every live data key is opened by trial with the ring; each one not yet wrapped by the
    KEK in force, or labelled otherwise, is wrapped again by it (id and fingerprint set), in the caller's
    transaction. Keys no KEK held opens are left as they are and listed. Returns the number re-wrapped and
    the census taken after it. Keys a writer creates meanwhile are wrapped by the KEK it holds: run it
    again until the census shows only the KEK in force."""
    rows = await conn.fetch(
        "SELECT key_id, kek_id, kek_fingerprint, wrapped FROM shared.data_keys WHERE wrapped IS NOT NULL FOR UPDATE"
    )
    changes = []
    for r in rows:
        key, opener = _opener(ring, r["key_id"], r["wrapped"])
        if key is None:
            continue
        if opener != ring.kek_id:
            changes.append((r["key_id"], ring.wrap(key), ring.kek_id, ring.fingerprint))
        elif r["kek_id"] != ring.kek_id or r["kek_fingerprint"] != ring.fingerprint:
            changes.append((r["key_id"], r["wrapped"], ring.kek_id, ring.fingerprint))
    await conn.executemany(
        "UPDATE shared.data_keys SET wrapped=$2, kek_id=$3, kek_fingerprint=$4 WHERE key_id=$1", changes
    )
    return len(changes), await kek_census(conn, ring)


async def destroy_keys(conn: asyncpg.Connection, key_ids: Iterable[UUID], by: str) -> list[UUID]:
    """Destroy data keys inside the caller's transaction; returns those destroyed now."""
    rows = await conn.fetch("SELECT k FROM shared.destroy_data_keys($1::uuid[], $2) k", list(set(key_ids)), by)
    return sorted(r["k"] for r in rows)


async def live_keys(conn: asyncpg.Connection | asyncpg.Pool) -> list[tuple[UUID, UUID]]:
    """(key id, extract id) of every live data key (retention's purge)."""
    return [(r["key_id"], r["extract_id"]) for r in await conn.fetch("SELECT * FROM shared.live_data_keys()")]


@dataclass(frozen=True)
class AuditEntry:
    """An audit entry to write in the same transaction as the change it records."""

    actor: str
    action: str
    subject: str
    details: dict
    protocol_version: str | None = None


async def write_audit(conn: asyncpg.Connection | asyncpg.Pool, entry: AuditEntry | None) -> None:
    if entry is not None:
        await audit(conn, entry.actor, entry.action, entry.subject, entry.details, entry.protocol_version)


async def audit(
    conn: asyncpg.Connection | asyncpg.Pool,
    actor: str,
    action: str,
    subject: str,
    details: dict | None = None,
    protocol_version: str | None = None,
) -> None:
    """Append to the audit trail. ``details`` must hold ids and counts only. The server sets the entry's id,
    time and login role (``shared.audit``: no role may insert into the table itself)."""
    await conn.execute(
        "SELECT shared.audit($1, $2, $3, $4::jsonb, $5)",
        actor,
        action,
        subject,
        json.dumps(details or {}, default=str),
        protocol_version,
    )
