"""What every service process needs, opened once: pool (migrated), key store, protocol, clock."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from .clock import Clock
from .crypto import KeyEncryptionKey
from .db import create_pool, migrate, migrate_shared
from .keystore import KeyStore
from .protocol import Protocol, load_protocol
from .settings import CommonSettings
from .topics import Topics


@dataclass
class Runtime:
    settings: CommonSettings
    pool: asyncpg.Pool
    keys: KeyStore
    protocol: Protocol
    clock: Clock
    topics: Topics

    async def close(self) -> None:
        await self.pool.close()


async def open_runtime(settings: CommonSettings, *migrations: tuple[str, str], pool_size: int = 5) -> Runtime:
    """Fail fast on a missing KEK or a bad protocol file, then connect and migrate."""
    kek = KeyEncryptionKey(settings.key_encryption_key_bytes(), settings.kek_id)
    protocol = load_protocol(settings.protocol_file)
    pool = await create_pool(settings.database_url, max_size=pool_size)
    try:
        async with pool.acquire() as conn:
            await migrate_shared(conn)
            for schema, package in migrations:
                await migrate(conn, schema, package)
    except BaseException:
        await pool.close()
        raise
    return Runtime(settings, pool, KeyStore(pool, kek), protocol, Clock(settings.as_of), Topics(settings.topic_prefix))
