"""asyncpg helpers: pool creation and per-service SQL migrations."""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable

import asyncpg


async def create_pool(dsn: str, *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)


def _migration_files(package: str) -> list[Traversable]:
    folder = resources.files(package) / "migrations"
    return sorted(
        (f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name
    )


async def migrate(conn: asyncpg.Connection, schema: str, package: str) -> list[str]:
    """Apply ``<package>/migrations/*.sql`` in name order, once each; safe to run concurrently."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')}
        for f in _migration_files(package):
            if f.name in done:
                continue
            await conn.execute(f.read_text())
            await conn.execute(
                f'INSERT INTO "{schema}".schema_migrations(name) VALUES ($1)', f.name
            )
            applied.append(f.name)
    return applied


async def migrate_shared(conn: asyncpg.Connection) -> None:
    """The key store and the audit trail, used by every service."""
    await migrate(conn, "shared", "sais_shared")
