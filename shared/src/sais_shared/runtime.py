"""What every service process needs, opened once: pool (as the service's own role), key store,
protocol, clock."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import structlog

from . import notices, ops
from .clock import Clock
from .db import check_migrated, create_pool
from .errors import ConfigurationError
from .keystore import KeyStore
from .protocol_registry import FollowsProtocol, ProtocolRef, in_force
from .settings import SERVICES, CommonSettings, service_principal
from .topics import Topics

log = structlog.get_logger("sais.runtime")


@dataclass
class Runtime(FollowsProtocol):
    settings: CommonSettings
    pool: asyncpg.Pool
    keys: KeyStore | None  # None for a service that never opens data keys (retention)
    protocol_ref: ProtocolRef
    clock: Clock
    topics: Topics

    @property
    def key_store(self) -> KeyStore:
        """The data keys, for a service that holds the KEK (Wiring.holds_kek)."""
        if self.keys is None:
            raise ConfigurationError("this service holds no key-encryption key: it never opens data keys")
        return self.keys

    async def close(self) -> None:
        await self.protocol_ref.stop()
        await self.pool.close()


async def check_role(conn: asyncpg.Connection, service: str, dev_mode: bool) -> None:
    """A service runs as its own role: never another service's, and outside development mode never a
    superuser or any other role (the database's own grants are then what confine it)."""
    user, superuser = await conn.fetchrow("SELECT rolname, rolsuper FROM pg_roles WHERE rolname = current_user")
    own = service_principal(service)
    others = {service_principal(s) for s in SERVICES} - {own}
    if user in others or (not dev_mode and (superuser or user != own)):
        what = "a superuser" if superuser else f"the role {user}"
        raise ConfigurationError(
            f"the {service} service is connected to PostgreSQL as {what}; it must run as its own role {own} "
            "(SAIS_CREDENTIALS_DIR holds its password), so that the server confines it to what it may do"
        )


async def open_runtime(
    settings: CommonSettings,
    *migrations: tuple[str, str],
    service: str | None = None,
    pool_size: int = 5,
    holds_kek: bool = True,
) -> Runtime:
    """Fail fast on a missing KEK (unless the caller never opens data keys) or a bad protocol file, then connect (as ``service``'s own role, or
    with SAIS_DATABASE_URL's user for administrative commands), check that the schemas are migrated
    and read the protocol in force."""
    kek = settings.key_ring() if holds_kek else None
    pool = await create_pool(settings.database_login(service) if service else settings.database_url, max_size=pool_size)
    try:
        async with pool.acquire() as conn:
            if service is not None:
                await check_role(conn, service, settings.dev_mode)
            for schema, package in (("shared", "sais_shared"), *migrations):
                await check_migrated(conn, schema, package)
        protocol = await in_force(pool)
    except BaseException:
        await pool.close()
        raise
    clock = Clock(settings.as_of)
    ops.REVIEW_OVERDUE.set(1 if protocol.review_overdue(clock.today()) else 0)
    if protocol.review_overdue(clock.today()):
        log.warning(
            "protocol.review_overdue",
            protocol=protocol.id,
            version=protocol.version,
            review_date=protocol.review_date.isoformat(),
        )
        notices.notify(
            "protocol.review_overdue",
            f"the Information Sharing Protocol in force ({protocol.id} v{protocol.version}) was due for review on "
            f"{protocol.review_date:%d %B %Y} (ISP §15). Agree the review with the other parties, then load the "
            "reviewed version with `sais protocol load FILE`; delivery refuses to send until then (unless given --override-review and a reason).",
        )
    ref = ProtocolRef(protocol, pool, settings.protocol_refresh_s)
    keys = KeyStore(pool, kek) if kek is not None else None
    return Runtime(settings, pool, keys, ref, clock, Topics(settings.topic_prefix))
