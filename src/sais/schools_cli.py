"""``sais schools``: the schools register (DfE numbers → URNs, status, age ranges), loaded from the
DfE's "Get Information about Schools" establishment export. Reference data: the administrator loads
it, as with protocol versions; eligibility and delivery read it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from sais_shared import operator
from sais_shared.cli_options import local_time
from sais_shared.protocol_registry import in_force
from sais_shared.runtime import open_runtime
from sais_shared.schools import RegisterError, dfe_number, load_register
from sais_shared.settings import CommonSettings

app = typer.Typer(help="The schools register (DfE number → URN, status, age range) from GIAS.", no_args_is_help=True)
out, err = Console(highlight=False), Console(stderr=True, highlight=False)


@app.command("load")
def load(
    path: Path = typer.Argument(
        ..., exists=True, dir_okay=False, help="GIAS establishment export: the zip as downloaded, or its CSV"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Replace the register with a GIAS export (audited). Download "establishment fields" as CSV from
    https://get-information-schools.service.gov.uk/Downloads; the whole country or your area."""
    actor = operator.actor()

    async def go():
        rt = await open_runtime(CommonSettings())
        try:
            protocol = await in_force(rt.pool)
            async with rt.pool.acquire() as conn:
                return await load_register(
                    conn, path.read_bytes(), path.name, actor, protocol.la_codes, protocol.version
                )
        finally:
            await rt.close()

    try:
        report = asyncio.run(go())
    except RegisterError as exc:
        err.print(f"[red]not loaded:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(report.__dict__, indent=2))
        return
    out.print(
        f"schools register loaded: {report.schools} schools ({report.open} open, {report.closed} closed, "
        f"{report.outside} outside the authority)",
        markup=False,
    )
    out.print(f"  sha256 {report.sha256}", markup=False)
    if report.unreadable_bytes:
        err.print(f"{report.unreadable_bytes} byte(s) are not Windows-1252 characters: read as \ufffd", markup=False)
    for s in report.skipped[:50]:
        err.print(f"row {s['row']} skipped (not in the register): {s['reason']}", markup=False)
    if len(report.skipped) > 50:
        err.print(f"… and {len(report.skipped) - 50} more rows skipped (--json lists them all)", markup=False)


@app.command("show")
def show(
    dfe: list[str] = typer.Argument(None, help="DfE numbers (9372001, 937/2001 or 937-2001); none: the whole register"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """What the register holds: URN, status, phase and the year groups taught, and the last load."""

    async def go():
        rt = await open_runtime(CommonSettings())
        try:
            wanted = [dfe_number(d) for d in dfe or []]
            rows = await rt.pool.fetch(
                "SELECT dfe, urn, name, la_code, status, phase, first_year, last_year, close_date FROM shared.schools "
                "WHERE cardinality($1::text[]) = 0 OR dfe = ANY($1) ORDER BY dfe",
                wanted,
            )
            last = await rt.pool.fetchrow(
                "SELECT origin, schools, loaded_at, loaded_by FROM shared.school_register_loads ORDER BY seq DESC LIMIT 1"
            )
            return [dict(r) for r in rows], dict(last) if last else None
        finally:
            await rt.close()

    rows, last = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps({"schools": rows, "last_load": last}, indent=2, default=str))
        return
    if last is None:
        out.print("no schools register loaded: `sais schools load FILE` (a GIAS establishment export)")
        raise typer.Exit(1)
    out.print(
        f"loaded {local_time(last['loaded_at'])} by {last['loaded_by']} from {last['origin']}: "
        f"{last['schools']} schools"
    )
    from sais_shared.present import show as show_table

    show_table(
        out,
        "Schools",
        ("DfE", "URN", "school", "status", "years"),
        [
            (r["dfe"], r["urn"], r["name"], r["status"], f"{r['first_year'] or '?'}–{r['last_year'] or '?'}")
            for r in rows
        ],
        summary=f"{len(rows)} school(s) shown; years are the age range the register gives (R is Reception)",
    )
