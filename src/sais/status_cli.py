"""``sais status``: the whole pipeline at a glance; exit code 3 when something needs an operator."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from sais_delivery import queries as delivery
from sais_eligibility import queries as eligibility
from sais_ingest import queries as ingest
from sais_retention import queries as retention
from sais_shared.clock import Clock

from .owners import open_owners

EXIT_ATTENTION = 3


async def gather() -> dict:
    """Each service reports on its own data, through its own role."""
    async with open_owners() as owners:
        today = Clock(owners.settings.as_of).today()
        extracts = await ingest.recent_extracts(owners.ingest)
        cohorts = await eligibility.active_cohort_sizes(owners.eligibility)
        batches = await delivery.recent_batches(owners.delivery)
        control = await delivery.sharing_control(owners.delivery)
        pending = await retention.pending_deletions(owners.retention, today)
        p = owners.protocol
    view = {
        "protocol": {
            "id": p.id,
            "version": p.version,
            "review_date": p.review_date.isoformat(),
            "review_overdue": p.review_overdue(today),
        },
        "sharing_suspended": control["suspended"],
        "suspension_reason": control["reason"],
        "open_breaches": control["open_breaches"],
        "extracts": extracts,
        "cohorts": cohorts,
        "batches": batches,
        "deletions": pending,
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
    attention += [
        f"extract {e['file_name']} ({e['source']} {e['reference_date']}) {e['status']}: none of it is delivered"
        for e in view["extracts"]
        if e["status"] in ("refused", "failed", "abandoned") and not e["purged"]
    ]
    attention += [
        f"batch {b['batch_id']} interrupted while sending: `sais delivery resolve`"
        for b in view["batches"]
        if b["status"] == "sending"
    ]
    view["attention"] = attention
    return view


def status(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """Protocol, sharing, extracts, cohorts, batches and deletions at a glance (exit 3: needs attention)."""
    view = asyncio.run(gather())
    if as_json:
        typer.echo(json.dumps(view, default=str, indent=2))
    else:
        from sais_shared.present import console, show

        c = console()
        pr = view["protocol"]
        c.print(
            f"protocol {pr['id']} v{pr['version']} (review by {pr['review_date']}); sharing "
            f"{'[red]SUSPENDED[/]' if view['sharing_suspended'] else 'active'}; deletions scheduled "
            f"{view['deletions']['scheduled']}, overdue {view['deletions']['overdue']}"
        )
        show(
            c,
            "Recent extracts",
            ("source", "reference date", "status", "rows in", "accepted", "rejected", "out of scope"),
            [
                (
                    e["source"],
                    e["reference_date"],
                    e["status"] + (" (purged)" if e["purged"] else ""),
                    *(e[k] for k in ("rows_in", "accepted", "rejected", "out_of_scope")),
                )
                for e in view["extracts"]
            ],
            summary=f"{len(view['extracts'])} recent extract(s); rows in = accepted + rejected + out of scope "
            "(+ rows repeated exactly)",
        )
        for e in view["extracts"]:
            if e["status"] in ("refused", "failed", "abandoned", "withdrawn"):
                c.print(
                    f"  {e['status']}: {e['file_name']} ({e['source']} {e['reference_date']}), extract "
                    f"{e['extract_id']}: {e['failure']}"
                )
        show(
            c,
            "Cohorts",
            ("academic year", "programme", "children"),
            [(r["academic_year"], r["programme"], r["n"]) for r in view["cohorts"]],
            summary=f"{sum(r['n'] for r in view['cohorts'])} children in cohorts, by academic year and programme",
        )
        show(
            c,
            "Recent batches",
            ("batch", "window", "year", "status", "sent", "delete by"),
            [
                (b["batch_id"], b["window_name"], b["academic_year"], b["status"], b["sent_at"], b["delete_by"])
                for b in view["batches"]
            ],
            summary=f"{len(view['batches'])} recent batch(es) to the SAIS team",
        )
        for a in view["attention"]:
            Console(stderr=True).print(f"[yellow]attention:[/] {a}")
    if view["attention"]:
        raise typer.Exit(EXIT_ATTENTION)
