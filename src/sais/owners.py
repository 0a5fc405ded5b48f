"""Reads that cross services go through the owner: one pool per service, opened as that service's
role, handed to that service's ``queries`` module. No module here names a service's schema in SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import asyncpg
from sais_shared.db import create_pool
from sais_shared.keystore import KeyStore
from sais_shared.protocol import Protocol
from sais_shared.protocol_registry import in_force
from sais_shared.settings import SERVICES, CommonSettings


@dataclass
class Owners:
    pools: dict[str, asyncpg.Pool]
    protocol: Protocol
    settings: CommonSettings

    def __getattr__(self, service: str) -> asyncpg.Pool:
        try:
            return self.pools[service]
        except KeyError:
            raise AttributeError(service) from None

    def keys(self) -> KeyStore:
        """The key store as eligibility (the role that may open pupil records)."""
        s = self.settings
        return KeyStore(self.pools["eligibility"], s.key_ring())


@asynccontextmanager
async def open_owners(settings: CommonSettings | None = None) -> AsyncIterator[Owners]:
    settings = settings or CommonSettings()
    pools: dict[str, asyncpg.Pool] = {}
    try:
        for service in SERVICES:
            pools[service] = await create_pool(settings.database_login(service), max_size=2)
        protocol = await in_force(pools["delivery"])
        yield Owners(pools, protocol, settings)
    finally:
        for pool in pools.values():
            await pool.close()
