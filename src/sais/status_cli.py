"""``sais status``: the whole pipeline at a glance; exit code 3 when something needs an operator."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.table import Table
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings

EXIT_ATTENTION = 3


async def _q(conn, table: str, sql: str, *args, default=None):
    if await conn.fetchval("SELECT to_regclass($1)", table) is None:
        return default
    return await conn.fetch(sql, *args)


async def gather() -> dict:
    rt = await open_runtime(CommonSettings())
    try:
        today = rt.clock.today()
        async with rt.pool.acquire() as conn:
            extracts = await _q(conn, "ingest.extracts",
                                "SELECT source, reference_date, status, rows_in, accepted, rejected, out_of_scope, "
                                "completed_at, purged_at IS NOT NULL AS purged FROM ingest.extracts "
                                "ORDER BY started_at DESC LIMIT 10", default=[])
            cohorts = await _q(conn, "eligibility.cohort",
                               "SELECT academic_year, programme, count(*) n FROM eligibility.cohort "
                               "WHERE status='active' GROUP BY 1, 2 ORDER BY 1, 2", default=[])
            batches = await _q(conn, "delivery.batches",
                               "SELECT batch_id, window_name, academic_year, status, sent_at, delete_by "
                               "FROM delivery.batches ORDER BY prepared_at DESC LIMIT 10", default=[])
            control = await _q(conn, "delivery.control", "SELECT suspended, reason FROM delivery.control", default=[])
            breaches = await _q(conn, "delivery.breaches",
                                "SELECT count(*) n FROM delivery.breaches WHERE closed_at IS NULL", default=[])
            pending = await _q(conn, "retention.schedule",
                               "SELECT count(*) FILTER (WHERE due_on >= $1) scheduled, "
                               "count(*) FILTER (WHERE due_on < $1) overdue FROM retention.schedule "
                               "WHERE executed_at IS NULL", today, default=[])
    finally:
        await rt.close()
    p = rt.protocol
    view = {
        "protocol": {"id": p.id, "version": p.version, "review_date": p.review_date.isoformat(),
                     "review_overdue": p.review_overdue(today)},
        "sharing_suspended": bool(control and control[0]["suspended"]),
        "suspension_reason": control[0]["reason"] if control else None,
        "open_breaches": breaches[0]["n"] if breaches else 0,
        "extracts": [dict(r) for r in extracts],
        "cohorts": [dict(r) for r in cohorts],
        "batches": [dict(r) for r in batches],
        "deletions": dict(pending[0]) if pending else {"scheduled": 0, "overdue": 0},
    }
    attention = []
    if view["protocol"]["review_overdue"]:
        attention.append(f"protocol v{p.version} is past its review date {p.review_date} (ISP §15)")
    if view["sharing_suspended"]:
        attention.append(f"sharing is suspended: {view['suspension_reason']}")
    if view["open_breaches"]:
        attention.append(f"{view['open_breaches']} open breach(es): `sais breach list`")
    if view["deletions"]["overdue"]:
        attention.append(f"{view['deletions']['overdue']} deletion(s) overdue: `sais retention run`")
    attention += [f"batch {b['batch_id']} interrupted while sending: `sais delivery resolve`"
                  for b in view["batches"] if b["status"] == "sending"]
    view["attention"] = attention
    return view


def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Protocol, sharing, extracts, cohorts, batches and deletions at a glance (exit 3: needs attention)."""
    view = asyncio.run(gather())
    if as_json:
        typer.echo(json.dumps(view, default=str, indent=2))
    else:
        c = Console()
        pr = view["protocol"]
        c.print(f"protocol {pr['id']} v{pr['version']} (review by {pr['review_date']}); sharing "
                f"{'[red]SUSPENDED[/]' if view['sharing_suspended'] else 'active'}; deletions scheduled "
                f"{view['deletions']['scheduled']}, overdue {view['deletions']['overdue']}")
        t = Table("source", "reference date", "status", "rows in", "accepted", "rejected", "out of scope",
                  title="Recent extracts", title_justify="left")
        for e in view["extracts"]:
            t.add_row(e["source"], str(e["reference_date"]), "purged" if e["purged"] else e["status"],
                      *(str(e[k]) for k in ("rows_in", "accepted", "rejected", "out_of_scope")))
        c.print(t)
        t = Table("academic year", "programme", "children", title="Cohorts", title_justify="left")
        for r in view["cohorts"]:
            t.add_row(r["academic_year"], r["programme"], str(r["n"]))
        c.print(t)
        t = Table("batch", "window", "year", "status", "sent", "delete by", title="Recent batches", title_justify="left")
        for b in view["batches"]:
            t.add_row(str(b["batch_id"])[:8], b["window_name"], b["academic_year"], b["status"], str(b["sent_at"] or ""),
                      str(b["delete_by"]))
        c.print(t)
        for a in view["attention"]:
            Console(stderr=True).print(f"[yellow]attention:[/] {a}")
    if view["attention"]:
        raise typer.Exit(EXIT_ATTENTION)
