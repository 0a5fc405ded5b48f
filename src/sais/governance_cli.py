"""``sais sar`` and ``sais audit``: answering a subject access request; reading the audit trail."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from pathlib import Path

import typer
from sais_shared import operator
from sais_shared.cli_options import local_time, parse_date
from sais_shared.files import OutputFileError, write_private_file
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings

from .owners import open_owners
from .sar import render, subject_access

sar_app = typer.Typer(help="Subject access requests (ISP §13).", no_args_is_help=True)
audit_app = typer.Typer(help="The audit trail: who did what, when (no personal data).", no_args_is_help=True)


@sar_app.command("find")
def sar_find(
    forename: str = typer.Option(..., metavar="NAME", help="the child's forename"),
    surname: str = typer.Option(..., metavar="NAME", help="the child's surname"),
    date_of_birth: date = typer.Option(..., parser=parse_date, metavar="YYYY-MM-DD", help="the child's date of birth"),
    out: Path = typer.Option(..., help="write the export here (it holds personal data: protect it)"),
    as_json: bool = typer.Option(False, "--json", help="export as JSON instead of text"),
) -> None:
    """Find everything held about one child across all services and write a readable export."""
    actor = operator.actor()  # the search itself is audited: who looked

    async def go():
        async with open_owners() as owners:
            return await subject_access(
                owners,
                forename=forename,
                surname=surname,
                date_of_birth=date_of_birth,
                actor=actor,
            )

    if out.exists() or out.is_symlink():  # refuse before searching: the search itself is audited
        raise typer.BadParameter(f"{out} already exists: choose a new file name", param_hint="--out")
    answer = asyncio.run(go())
    try:
        write_private_file(out, json.dumps(answer, indent=2, default=str) if as_json else render(answer))
    except OutputFileError as exc:
        raise typer.BadParameter(str(exc), param_hint="--out") from None
    typer.echo(
        f"request {answer['request_id']}: {len(answer['records'])} record(s), {len(answer['batches'])} "
        f"batch(es); export written to {out}"
    )


@audit_app.command("list")
def audit_list(
    action: str | None = typer.Option(None, metavar="ACTION", help="only this action, e.g. batch.sent, data.deleted"),
    since: date | None = typer.Option(
        None, parser=parse_date, metavar="YYYY-MM-DD", help="entries on or after this date"
    ),
    limit: int = typer.Option(100, metavar="N", min=1, help="at most this many entries"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Audit entries, newest first."""

    async def go():
        rt = await open_runtime(CommonSettings())
        try:
            return [
                dict(r)
                for r in await rt.pool.fetch(
                    "SELECT at, actor, db_role, action, subject, details, protocol_version FROM shared.audit_log "
                    "WHERE ($1::text IS NULL OR action = $1) AND ($2::date IS NULL OR at >= $2) "
                    "ORDER BY id DESC LIMIT $3",
                    action,
                    since,
                    limit,
                )
            ]
        finally:
            await rt.close()

    rows = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    if not rows:
        typer.echo("no audit entries" + (f" for {action}" if action else "") + (f" since {since}" if since else ""))
        return
    from sais_shared.present import console, plural, show

    # values from the database are text, never markup (present.table escapes them): a subject "[/]" is shown
    # as it is. The login is the database role that wrote the entry (set by the server; empty for older ones).
    show(
        console(),
        "Audit trail",
        ("at (real time)", "actor", "login", "action", "subject", "protocol"),
        [
            (local_time(r["at"]), r["actor"], r["db_role"], r["action"], r["subject"], r["protocol_version"])
            for r in rows
        ],
        summary=f"{plural(len(rows), 'entry', 'entries')}, newest first; times are the database's own clock "
        "(Europe/London), not SAIS_AS_OF's business date",
    )


@audit_app.command("verify")
def audit_verify(as_json: bool = typer.Option(False, "--json", help="print the report as JSON")) -> None:
    """Recompute the audit trail's hash chain: exit 1 if any row was removed, altered or inserted.
    Record the head hash it prints somewhere else (a ticket, the SIRO's log) to detect a rewritten chain."""
    import asyncpg

    from .dbadmin import verify_audit_chain

    async def go():
        conn = await asyncpg.connect(CommonSettings().database_url)
        try:
            return await verify_audit_chain(conn)
        finally:
            await conn.close()

    report = asyncio.run(go())
    if as_json:
        typer.echo(
            json.dumps({"rows": report.rows, "head": report.head, "intact": report.intact, "problems": report.problems})
        )
    elif report.intact:
        typer.echo(f"audit trail intact: {report.rows} entries, head {report.head}")
    else:
        for p in report.problems:
            typer.echo(f"audit trail broken: {p}", err=True)
    if not report.intact:
        raise typer.Exit(1)
