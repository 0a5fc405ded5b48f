"""Administration of the database: migrations for every service, and the audit chain's check.

``sais db migrate`` is the only code that runs DDL. It runs as the database administrator (the
user in SAIS_DATABASE_URL), once per release: a Kubernetes Job, compose's ``migrate`` service, or
the local runner. It creates the schemas, applies each service's migrations, confines each
service role to its own schema, and puts a protocol in force when none is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sais_shared.db import migrate, migrate_shared
from sais_shared.protocol_registry import ensure_in_force
from sais_shared.settings import read_secret, service_principal

# (schema, package, service): each service's migrations, in dependency order.
SERVICE_SCHEMAS = (
    ("ingest", "sais_ingest", "ingest"),
    ("eligibility", "sais_eligibility", "eligibility"),
    ("delivery", "sais_delivery", "delivery"),
    ("retention", "sais_retention", "retention"),
)


async def migrate_all(
    conn: asyncpg.Connection,
    protocol_file: Path | None = None,
    actor: str = "install",
    credentials_dir: Path | None = None,
    example_protocol: bool = True,
) -> dict[str, list[str]]:
    """Every schema migrated and granted; the migrations applied now, by schema. With a credentials
    folder, each service role whose password file (postgres-sais_<service>) is there may log in with it."""
    applied = {"shared": await migrate_shared(conn)}
    if credentials_dir is not None:
        await set_passwords(conn, credentials_dir)
    for schema, package, service in SERVICE_SCHEMAS:
        applied[schema] = await migrate(conn, schema, package, service_principal(service))
    if protocol_file is not None or example_protocol:  # never the example by default outside development
        await ensure_in_force(conn, protocol_file, actor)
    return applied


async def set_passwords(conn: asyncpg.Connection, credentials_dir: Path) -> list[str]:
    """LOGIN PASSWORD for every service role that has a password file; the roles set."""
    done = []
    for _, _, service in SERVICE_SCHEMAS:
        role = service_principal(service)
        path = credentials_dir / f"postgres-{role}"
        if path.exists():
            password = read_secret(path, "SAIS_CREDENTIALS_DIR")
            await conn.execute(f"ALTER ROLE {role} LOGIN PASSWORD {_literal(password)}")
            done.append(role)
    return done


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@dataclass(frozen=True)
class ChainReport:
    rows: int
    head: str  # hex of the last row's hash: record it elsewhere to detect a rewritten chain
    problems: list[str]

    @property
    def intact(self) -> bool:
        return not self.problems


async def verify_audit_chain(conn: asyncpg.Connection) -> ChainReport:
    """Recompute the audit log's hash chain in Python: a removed, altered or inserted row breaks it."""
    problems: list[str] = []
    prev = b""
    expected_seq = 1
    n = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        async for r in conn.cursor(
            "SELECT id, chain_seq, prev_hash, row_hash, shared.audit_row_text(chain_seq, at, actor, action, "
            "subject, details, protocol_version) AS text FROM shared.audit_log ORDER BY chain_seq NULLS FIRST"
        ):
            n += 1
            if r["chain_seq"] is None:
                problems.append(f"row id {r['id']} is outside the chain")
                continue
            if r["chain_seq"] != expected_seq:
                problems.append(f"rows {expected_seq}–{r['chain_seq'] - 1} of the chain are missing")
            if bytes(r["prev_hash"]) != prev:
                problems.append(f"row {r['chain_seq']} does not follow the row before it")
            digest = hashlib.sha256(bytes(r["prev_hash"]) + r["text"].encode()).digest()
            if digest != bytes(r["row_hash"]):
                problems.append(f"row {r['chain_seq']} was altered after it was written")
            prev = bytes(r["row_hash"])
            expected_seq = r["chain_seq"] + 1
    return ChainReport(n, prev.hex(), problems)
