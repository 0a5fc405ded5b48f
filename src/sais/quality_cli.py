"""``sais eligibility quality``: the data-quality view, composed from eligibility's and ingest's own reads."""

from __future__ import annotations

import asyncio
import json

import typer
from rich.console import Console
from rich.table import Table
from sais_eligibility import queries as eligibility
from sais_ingest import queries as ingest
from sais_shared.cli_options import parse_academic_year
from sais_shared.protocol_registry import in_force

from .owners import open_owners


async def quality_view(academic_year: str) -> dict:
    async with open_owners() as owners:
        protocol = await in_force(owners.eligibility)
        view = await eligibility.quality(owners.eligibility, academic_year, protocol.la_codes)
        outside_la = await ingest.rows_from_schools_outside_the_la(owners.ingest, academic_year)
        ended = [e for e in await ingest.ended_extracts(owners.ingest)]
    return {
        "academic_year": academic_year,
        "rows_from_schools_outside_the_la": outside_la,
        **view,
        "ended_extracts": ended,
    }


def quality_cmd(
    academic_year: str = typer.Argument(..., parser=parse_academic_year, metavar="YYYY/YY", help="e.g. 2017/18"),
    as_json: bool = typer.Option(False, "--json", help="print the view as JSON"),
) -> None:
    """Cohort counts per programme × school × year group, and data-quality findings."""
    view = asyncio.run(quality_view(academic_year))
    if as_json:
        typer.echo(json.dumps(view, indent=2, default=str))
        return
    c = Console()
    t = Table("programme", "school", "year", "children", title=f"Cohorts {academic_year}", title_justify="left")
    for r in view["cohort"]:
        t.add_row(r["programme"], r["school_dfe"] or "not yet known", r["year_group"], str(r["n"]))
    c.print(t)
    if view["schools"]:
        t = Table("school", "flag", "children", title="Schools register flags", title_justify="left")
        for r in view["schools"]:
            t.add_row(r["school_dfe"], r["flag"], str(r["children"]))
        c.print(t)
    t = Table("finding", "school", "children", title="Data-quality findings", title_justify="left")
    # school-not-yet-known is counted at the school the child left (rolled forward past its last year)
    for r in view["findings"]:
        t.add_row(r["code"], r["school_dfe"], str(r["n"]))
    c.print(t)
    if view["rows_from_schools_outside_the_la"]:
        c.print(f"rows rejected at ingest for a school outside the LA: {view['rows_from_schools_outside_the_la']}")
    for r in view["incomplete_extracts"]:
        c.print(
            f"[yellow]extract {r['extract_id']} held: {r['received']}/{r['accepted']} pupil events received; "
            "none of it is in a cohort until all are"
        )
    for r in view["ended_extracts"]:
        c.print(
            f"[yellow]extract {r['extract_id']} ({r['file_name']}, {r['source']} {r['reference_date']}) {r['status']}: "
            f"{r['failure']}"
        )


def _with_quality() -> typer.Typer:
    """Eligibility's own group with `quality` added: it is composed from eligibility's and ingest's reads,
    so it lives here, above both services."""
    from sais_eligibility.entrypoints.cli import app

    app.command("quality")(quality_cmd)
    return app


eligibility_app = _with_quality()  # what `sais eligibility` loads (sais.cli.COMMANDS)
