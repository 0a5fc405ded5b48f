"""The protocol versions loaded into this installation (``shared.protocols``), and the one in force.

Loading a version validates it first, stores its text and hash, and is audited. The version in
force is the last one loaded; ``sais db migrate`` puts one in force when none is (SAIS_PROTOCOL_FILE,
else the bundled example). Services and commands read the version in force from the registry only: a
file named in their environment is never what they enforce (so no one can swap the protocol by setting
a variable, unaudited).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import structlog

from .errors import ConfigurationError
from .keystore import audit
from .protocol import (
    Protocol,
    bundled_protocol_path,
    parse_protocol,
    protocol_sha256,
    read_protocol_file,
)

log = structlog.get_logger("sais.protocol")


@dataclass(frozen=True)
class LoadedVersion:
    protocol_id: str
    version: str
    sha256: str
    loaded_at: datetime
    loaded_by: str


async def load_version(conn: asyncpg.Connection | asyncpg.Pool, text: str, origin: str, actor: str) -> Protocol:
    """Validate and put a protocol version in force (audited). Raises ProtocolError naming the field."""
    protocol = parse_protocol(text, origin)
    digest = protocol_sha256(text)
    await conn.execute(
        "INSERT INTO shared.protocols(protocol_id, version, sha256, content, loaded_by) VALUES ($1,$2,$3,$4,$5)",
        protocol.id,
        protocol.version,
        digest,
        text,
        actor,
    )
    await audit(
        conn,
        actor,
        "protocol.loaded",
        f"protocol:{protocol.id}",
        {
            "version": protocol.version,
            "sha256": digest,
            "origin": origin,
            "review_date": protocol.review_date.isoformat(),
        },
        protocol.version,
    )
    return protocol


async def in_force(pool: asyncpg.Pool) -> Protocol:
    """The protocol every service and command enforces: the last version loaded into the registry."""
    row = await pool.fetchrow("SELECT content, protocol_id, version FROM shared.protocols ORDER BY seq DESC LIMIT 1")
    if row is None:
        raise ConfigurationError("no protocol is in force: `sais db migrate` (or `sais protocol load FILE`) first")
    return parse_protocol(row["content"], f"shared.protocols {row['protocol_id']} v{row['version']}")


class ProtocolRef:
    """The protocol in force for a long-running service: re-read from the registry every ``interval``
    seconds, so a version loaded with ``sais protocol load`` takes effect without a restart."""

    def __init__(self, protocol: Protocol, pool: asyncpg.Pool, interval: float = 30.0) -> None:
        self._protocol = protocol
        self._pool = pool
        self._interval = interval
        self._task: asyncio.Task | None = None
        self._listeners: list[Callable[[Protocol], Awaitable[object]]] = []

    def on_change(self, listener: Callable[[Protocol], Awaitable[object]]) -> None:
        """Call ``listener(new protocol)`` whenever a refresh finds another version in force."""
        self._listeners.append(listener)

    @property
    def current(self) -> Protocol:
        return self._protocol

    async def refresh(self) -> Protocol:
        latest = await in_force(self._pool)
        if (latest.id, latest.version) != (self._protocol.id, self._protocol.version) or latest != self._protocol:
            log.info("protocol.changed", protocol=latest.id, old=self._protocol.version, new=latest.version)
            self._protocol = latest
            for listener in self._listeners:
                try:
                    await listener(latest)
                except Exception as exc:  # the new version is in force; a listener's failure is its own
                    log.warning("protocol.listener_failed", error=type(exc).__name__)
        return self._protocol

    def start(self) -> None:
        async def loop() -> None:
            while True:
                await asyncio.sleep(self._interval)
                try:
                    await self.refresh()
                except Exception as exc:  # keep the version we have; try again next time
                    log.warning("protocol.refresh_failed", error=type(exc).__name__)

        self._task = asyncio.create_task(loop())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class FollowsProtocol:
    """Mixin for anything holding a ``protocol_ref``: ``self.protocol`` is the version in force now."""

    protocol_ref: ProtocolRef

    @property
    def protocol(self) -> Protocol:
        return self.protocol_ref.current


async def ensure_in_force(conn: asyncpg.Connection, path: Path | None, actor: str) -> Protocol | None:
    """Put ``path`` (else the bundled example) in force when no version is; the one loaded, or None."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('shared.protocols'))")
        if await conn.fetchval("SELECT count(*) FROM shared.protocols"):
            return None
        path = path or bundled_protocol_path()
        return await load_version(conn, read_protocol_file(path), str(path.name), actor)


async def history(pool: asyncpg.Pool) -> list[LoadedVersion]:
    rows = await pool.fetch(
        "SELECT protocol_id, version, sha256, loaded_at, loaded_by FROM shared.protocols ORDER BY seq"
    )
    return [LoadedVersion(**dict(r)) for r in rows]
