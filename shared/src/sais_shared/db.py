"""asyncpg helpers: pool creation, per-service SQL migrations and the grants that confine each service.

Least privilege is enforced by PostgreSQL itself: each service connects as its own role
(``sais_<service>``), which may read and write only the tables of its own schema. The key store's
table is reachable only through its functions (``shared.create_data_key`` …), granted per role;
the audit log accepts INSERT and nothing else. Migrations run once per release as an administrator
(``sais db migrate``); a service checks at start that its schema is migrated and never runs DDL.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Hashable, Iterable, Sequence
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Any, TypeVar

import asyncpg

from .errors import ConfigurationError
from .settings import SERVICES, service_principal

R = TypeVar("R")

WORK_MEM = "64MB"  # per sort or hash, per connection; pools are small (create_pool)


async def create_pool(login: str | dict[str, Any], *, min_size: int = 1, max_size: int = 5) -> asyncpg.Pool:
    """A pool for a DSN, or for ``CommonSettings.database_login(service)``'s arguments.

    Every statement is planned with its parameters (``plan_cache_mode=force_custom_plan``). asyncpg
    prepares each statement once per connection; PostgreSQL would otherwise switch it to a generic
    plan chosen while a table was still small, and keep a sequential scan on ``records`` or ``cohort``
    as they grow to a county: measured, that one plan cost 378 ms a batch at 30,000 pupils instead of
    8 ms. The hot writes are one statement per batch (:func:`insert_rows`), so planning stays cheap.

    A sort may use ``WORK_MEM`` before it spills to temporary files. PostgreSQL's default (4 MB) sent the
    sorts of a delivery to disk: a part's members read in order (about 35 MB at 50,000 members), its
    checksum, the plan's numbering of a window's members, each of them twice per window."""
    kwargs: dict[str, Any] = {"dsn": login} if isinstance(login, str) else dict(login)
    kwargs["server_settings"] = {
        "plan_cache_mode": "force_custom_plan",
        "work_mem": WORK_MEM,
        **kwargs.get("server_settings", {}),
    }
    return await asyncpg.create_pool(min_size=min_size, max_size=max_size, **kwargs)


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...], types: tuple[str, ...], tail: str) -> str:
    def as_text(t: str) -> bool:  # an array of arrays would flatten
        return t == "jsonb" or t.endswith("[]")

    arrays = ", ".join(f"${i}::{'text' if as_text(t) else t}[]" for i, t in enumerate(types, start=1))
    names = ", ".join(f"c{i}" for i in range(len(columns)))
    values = ", ".join(f"c{i}::{t}" if as_text(t) else f"c{i}" for i, t in enumerate(types))
    return (
        f"INSERT INTO {table}({', '.join(columns)}) SELECT {values} FROM unnest({arrays}) "
        f"WITH ORDINALITY AS u({names}, ord) ORDER BY ord {tail}"
    )


async def insert_rows(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    tail: str = "",
) -> None:
    """Many rows in one statement (one array per column, unnested in order), where ``executemany``
    would send, plan and run one statement per row. ``types``: each column's SQL type (``jsonb`` and
    array columns travel as text: JSON, or an array as a list or as the literal :func:`array_literal` writes); ``tail``: an ``ON CONFLICT`` clause. Rows that an ``ON CONFLICT DO UPDATE``
    could reach twice must come in separate calls (see :func:`rounds`)."""
    if rows:
        await conn.execute(*_insert_args(table, columns, types, rows, tail))


async def insert_new_rows(
    conn: asyncpg.Connection,
    table: str,
    columns: Sequence[str],
    types: Sequence[str],
    rows: Sequence[Sequence[Any]],
    tail: str,
) -> list[Any]:
    """:func:`insert_rows` for rows that are new as a rule (a record, an outbox event, a first membership):
    they go by :func:`copy_new_rows`, and only when one of them is there already (an event delivered again)
    by the INSERT of :func:`insert_rows` with ``tail``, its ``ON CONFLICT`` clause. Array columns come as lists.
    Gives back the first column of the rows stored now, where ``tail`` returns it (``ON CONFLICT DO NOTHING
    RETURNING id``): all of them when the COPY took them, else what ``tail`` returns."""
    if not rows:
        return []
    if await copy_new_rows(conn, table, columns, rows):
        return [r[0] for r in rows]
    return [r[0] for r in await conn.fetch(*_insert_args(table, columns, types, rows, tail))]


async def copy_new_rows(
    conn: asyncpg.Connection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> bool:
    """Rows by one binary COPY, in a savepoint of the caller's transaction. Measured against the INSERT of
    unnested arrays that :func:`insert_rows` sends, on eligibility's records (five indexes, 600 rows a
    statement): 21-24 µs of PostgreSQL's CPU a row against 24-30, and 6 µs of the client's against 10-12
    (issue 28). COPY has no ``ON CONFLICT``: if a row is there already (a unique violation), the savepoint
    is rolled back, nothing of them is written, and it returns False. The savepoint has one name, not
    asyncpg's numbered ones, each of which would be a statement of its own in ``pg_stat_statements``. Outside
    a transaction the COPY alone is all or nothing."""
    schema, _, name = table.rpartition(".")
    savepoint = conn.is_in_transaction()
    if savepoint:
        await conn.execute("SAVEPOINT sais_copy")
    try:
        await conn.copy_records_to_table(name, schema_name=schema or None, columns=list(columns), records=rows)
    except asyncpg.UniqueViolationError:
        if savepoint:
            await conn.execute("ROLLBACK TO SAVEPOINT sais_copy; RELEASE SAVEPOINT sais_copy")
        return False
    if savepoint:  # any other failure aborts the caller's transaction, as an INSERT's would
        await conn.execute("RELEASE SAVEPOINT sais_copy")
    return True


def _insert_args(
    table: str, columns: Sequence[str], types: Sequence[str], rows: Sequence[Sequence[Any]], tail: str
) -> list[Any]:
    """The statement and its arrays, one per column, for :func:`insert_rows` and :func:`insert_new_rows`.
    An array column's values may be lists (as COPY takes them): they travel as their literals."""
    arrays = [list(c) for c in zip(*rows, strict=True)]
    for i, t in enumerate(types):
        if t.endswith("[]"):
            arrays[i] = [array_literal(v) if isinstance(v, list | tuple) else v for v in arrays[i]]
    return [_insert_sql(table, tuple(columns), tuple(types), tail), *arrays]


def array_literal(values: Iterable[object]) -> str:
    """A PostgreSQL array literal of values that need no quoting (UUIDs, numbers): ``{a,b}``."""
    return "{" + ",".join(map(str, values)) + "}"


def rounds(rows: Iterable[R], key: Callable[[R], Hashable]) -> list[list[R]]:
    """``rows`` in order, cut into rounds in which each key appears once: the k-th row of every key goes
    in round k. One set-based statement per round gives what one statement per row, in order, gives."""
    out: list[list[R]] = []
    seen: dict[Hashable, int] = {}
    for r in rows:
        k = key(r)
        n = seen[k] = seen.get(k, -1) + 1
        if n == len(out):
            out.append([])
        out[n].append(r)
    return out


def _migration_files(package: str) -> list[Traversable]:
    folder = resources.files(package) / "migrations"
    return sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)


async def ensure_roles(conn: asyncpg.Connection) -> None:
    """The service roles, created without login when missing (whoever provisions them sets passwords)."""
    for service in SERVICES:
        await conn.execute(f"""DO $$ BEGIN
            CREATE ROLE {service_principal(service)} NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$""")


async def migrate(conn: asyncpg.Connection, schema: str, package: str, role: str | None = None) -> list[str]:
    """Apply ``<package>/migrations/*.sql`` in name order, once each; safe to run concurrently. With a
    role, grant it the use of this schema's tables and nothing else."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        await conn.execute(f'REVOKE ALL ON SCHEMA "{schema}" FROM PUBLIC')
        await conn.execute(
            f'CREATE TABLE IF NOT EXISTS "{schema}".schema_migrations '
            "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')}
        for f in _migration_files(package):
            if f.name in done:
                continue
            await conn.execute(f.read_text())
            await conn.execute(f'INSERT INTO "{schema}".schema_migrations(name) VALUES ($1)', f.name)
            applied.append(f.name)
        if role is not None:
            await conn.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
            await conn.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA "{schema}" TO {role}')
            await conn.execute(f'REVOKE INSERT, UPDATE, DELETE ON "{schema}".schema_migrations FROM {role}')
            await conn.execute(f'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA "{schema}" TO {role}')
    return applied


async def migrate_shared(conn: asyncpg.Connection) -> list[str]:
    """The key store, the audit trail and the protocol registry, used by every service through grants."""
    await ensure_roles(conn)
    applied = await migrate(conn, "shared", "sais_shared")
    for service in SERVICES:
        await conn.execute(f"GRANT USAGE ON SCHEMA shared TO {service_principal(service)}")
    return applied


async def check_migrated(conn: asyncpg.Connection, schema: str, package: str) -> None:
    """Refuse to start on a schema that lacks a migration this code needs (run ``sais db migrate``)."""
    try:
        done = {r["name"] for r in await conn.fetch(f'SELECT name FROM "{schema}".schema_migrations')}
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError, asyncpg.InsufficientPrivilegeError):
        done = set()
    missing = [f.name for f in _migration_files(package) if f.name not in done]
    if missing:
        raise ConfigurationError(
            f"the database schema {schema!r} is not migrated (missing {', '.join(missing)}): "
            "run `sais db migrate` as the database administrator first"
        )
