"""Administration of the database: migrations for every service, and the audit chain's check.

``sais db migrate`` is the only code that runs DDL. It runs as the database administrator (the
user in SAIS_DATABASE_URL), once per release: a Kubernetes Job, compose's ``migrate`` service, or
the local runner. It creates the schemas, applies each service's migrations, confines each
service role to its own schema, and puts a protocol in force when none is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import stringprep
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
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
    """LOGIN PASSWORD for every service role that has a password file; the roles whose password changed.
    The server is sent a SCRAM-SHA-256 verifier computed here, never the password (an ``ALTER ROLE …
    PASSWORD 'text'`` reaches the server's log and pg_stat_statements), and only when the role's stored
    verifier does not already match (read where the administrator may read pg_authid)."""
    done = []
    for _, _, service in SERVICE_SCHEMAS:
        role = service_principal(service)
        path = credentials_dir / f"postgres-{role}"
        if path.exists() and await set_password(conn, role, read_secret(path, "SAIS_CREDENTIALS_DIR")):
            done.append(role)
    return done


async def set_password(conn: asyncpg.Connection, role: str, password: str) -> bool:
    """LOGIN with this password, sent as a verifier; False when the role already had it."""
    try:
        stored = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname=$1 AND rolcanlogin", role)
    except asyncpg.InsufficientPrivilegeError:  # not a superuser (a managed server): set it every time
        stored = None
    if stored is not None and scram_matches(stored, password):
        return False
    await conn.execute(f'ALTER ROLE "{role}" LOGIN PASSWORD {_literal(scram_verifier(password))}')
    return True


def scram_verifier(password: str, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier (RFC 5802, RFC 7677) for a password, as ``CREATE ROLE …
    PASSWORD`` stores it: the server never sees the password itself. 4096 iterations, as the server's."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    stored_key, server_key = _scram_keys(password, salt, iterations)
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def scram_matches(verifier: str, password: str) -> bool:
    """Whether a stored SCRAM-SHA-256 verifier is for this password (False for anything else: md5, none)."""
    try:
        method, rest = verifier.split("$", 1)
        params, keys = rest.split("$", 1)
        iterations, salt = params.split(":", 1)
        stored_key, server_key = keys.split(":", 1)
        if method != "SCRAM-SHA-256":
            return False
        ours = _scram_keys(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    theirs = (base64.b64decode(stored_key), base64.b64decode(server_key))
    return all(hmac.compare_digest(a, b) for a, b in zip(ours, theirs, strict=True))


def _scram_keys(password: str, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
    salted = hashlib.pbkdf2_hmac("sha256", _saslprep(password).encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return hashlib.sha256(client_key).digest(), hmac.digest(salted, b"Server Key", "sha256")


def _saslprep(password: str) -> str:
    """SASLprep (RFC 4013) as PostgreSQL applies it to a password (src/common/saslprep.c): ASCII as it
    is; otherwise mapped and NFKC-normalised, and the original when the result is not a valid string."""
    if password.isascii():
        return password
    mapped = "".join(" " if stringprep.in_table_c12(c) else c for c in password if not stringprep.in_table_b1(c))
    text = unicodedata.normalize("NFKC", mapped)
    prohibited = (
        stringprep.in_table_a1,
        stringprep.in_table_c12,
        stringprep.in_table_c21_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
    )
    if not text or any(check(c) for c in text for check in prohibited):
        return password
    if any(stringprep.in_table_d1(c) for c in text):  # right-to-left: the whole string, no left-to-right
        if not (stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])):
            return password
        if any(stringprep.in_table_d2(c) for c in text):
            return password
    return text


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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
AUDIT_TRIGGERS = ("audit_log_append_only", "audit_log_chain", "audit_log_no_truncate")
AUDIT_FUNCTIONS = ("audit", "audit_log_append_only", "audit_log_chain")


def audit_row_text(r) -> str:
    """What a row's hash covers, built here from its raw columns (as the chain trigger builds it), so that
    a function redefined in the database cannot change what is checked. The login role is part of it for
    rows written since the server has set it (before that it is NULL, which concat_ws leaves out)."""
    micros = (r["at"] - _EPOCH) // timedelta(microseconds=1)
    parts = [str(r["chain_seq"]), str(micros), r["actor"], r["action"], r["subject"], r["details"]]
    parts.append(r["protocol_version"] or "")
    if r["db_role"] is not None:
        parts.append(r["db_role"])
    return "\x1f".join(parts)


def _shipped_function_bodies() -> dict[str, str]:
    """The body of each audit function as the shared migrations last define it."""
    from importlib import resources

    bodies: dict[str, str] = {}
    folder = resources.files("sais_shared") / "migrations"
    pattern = re.compile(r"CREATE (?:OR REPLACE )?FUNCTION shared\.(\w+)\(.*?\$\$(.*?)\$\$", re.S)
    for f in sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name):
        for name, body in pattern.findall(f.read_text(encoding="utf-8")):
            bodies[name] = body
    return {n: bodies[n] for n in AUDIT_FUNCTIONS}


async def _audit_machinery_problems(conn: asyncpg.Connection) -> list[str]:
    """The triggers that make the log append-only and chained, each enabled, and the functions behind
    them exactly as the migrations installed them."""
    problems = []
    triggers = {
        r["tgname"]: r["tgenabled"]
        for r in await conn.fetch(
            "SELECT tgname, tgenabled::text AS tgenabled FROM pg_trigger WHERE tgrelid = 'shared.audit_log'::regclass AND NOT tgisinternal"
        )
    }
    for name in AUDIT_TRIGGERS:
        if name not in triggers:
            problems.append(f"the trigger {name} on shared.audit_log is missing")
        elif triggers[name] != "O":
            problems.append(f"the trigger {name} on shared.audit_log is not enabled")
    problems += [
        f"shared.audit_log has a trigger the migrations did not make: {n}"
        for n in sorted(set(triggers) - set(AUDIT_TRIGGERS))
    ]
    installed = {
        r["proname"]: r["prosrc"]
        for r in await conn.fetch(
            "SELECT p.proname, p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'shared' AND p.proname = ANY($1::text[])",
            list(AUDIT_FUNCTIONS),
        )
    }
    for name, body in _shipped_function_bodies().items():
        if installed.get(name) != body:
            problems.append(f"the function shared.{name} is not the one the migrations installed (redefined?)")
    return problems


async def verify_audit_chain(conn: asyncpg.Connection) -> ChainReport:
    """Recompute the audit log's hash chain in Python from the raw columns: a removed, altered or inserted
    row breaks it; a disabled trigger or a redefined audit function is named too."""
    problems: list[str] = []
    prev = b""
    expected_seq = 1
    n = 0
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        problems += await _audit_machinery_problems(conn)
        async for r in conn.cursor(
            "SELECT id, chain_seq, prev_hash, row_hash, at, actor, action, subject, details::text AS details, "
            "protocol_version, db_role FROM shared.audit_log ORDER BY chain_seq NULLS FIRST"
        ):
            n += 1
            if r["chain_seq"] is None:
                problems.append(f"row id {r['id']} is outside the chain")
                continue
            if r["chain_seq"] != expected_seq:
                problems.append(f"rows {expected_seq}–{r['chain_seq'] - 1} of the chain are missing")
            if bytes(r["prev_hash"]) != prev:
                problems.append(f"row {r['chain_seq']} does not follow the row before it")
            digest = hashlib.sha256(bytes(r["prev_hash"]) + audit_row_text(r).encode()).digest()
            if digest != bytes(r["row_hash"]):
                problems.append(f"row {r['chain_seq']} was altered after it was written")
            prev = bytes(r["row_hash"])
            expected_seq = r["chain_seq"] + 1
    return ChainReport(n, prev.hex(), problems)
