"""The protocol versions loaded into this installation (``shared.protocols``), and the one in force.

Loading a version validates it first, stores its text and hash, and is audited. The version in
force is the last one loaded; an installation that has loaded none starts with the bundled file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg

from .keystore import audit
from .protocol import Protocol, bundled_protocol_path, parse_protocol, read_protocol_file


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
    digest = hashlib.sha256(text.encode()).hexdigest()
    await conn.execute(
        "INSERT INTO shared.protocols(protocol_id, version, sha256, content, loaded_by) VALUES ($1,$2,$3,$4,$5)",
        protocol.id, protocol.version, digest, text, actor)
    await audit(conn, actor, "protocol.loaded", f"protocol:{protocol.id}",
                {"version": protocol.version, "sha256": digest, "origin": origin,
                 "review_date": protocol.review_date.isoformat()}, protocol.version)
    return protocol


async def in_force(pool: asyncpg.Pool, override: Path | None = None) -> Protocol:
    """The protocol every service enforces: an explicit file (SAIS_PROTOCOL_FILE), else the last loaded."""
    if override is not None:
        return parse_protocol(read_protocol_file(override), str(override))
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext('shared.protocols'))")
        row = await conn.fetchrow("SELECT content, protocol_id, version FROM shared.protocols ORDER BY seq DESC LIMIT 1")
        if row is None:
            path = bundled_protocol_path()
            return await load_version(conn, read_protocol_file(path), str(path.name), "install")
    return parse_protocol(row["content"], f"shared.protocols {row['protocol_id']} v{row['version']}")


async def history(pool: asyncpg.Pool) -> list[LoadedVersion]:
    rows = await pool.fetch("SELECT protocol_id, version, sha256, loaded_at, loaded_by FROM shared.protocols ORDER BY seq")
    return [LoadedVersion(**dict(r)) for r in rows]
