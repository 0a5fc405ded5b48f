"""``sais eligibility quality``: the data-quality view, composed from eligibility's and ingest's own reads."""

from __future__ import annotations

import asyncio
import json

import typer
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
        dfes = {r["school_dfe"] for part in ("cohort", "schools", "findings") for r in view[part] if r["school_dfe"]}
        names = await owners.eligibility.fetch("SELECT dfe, name FROM shared.schools WHERE dfe = ANY($1)", list(dfes))
    return {
        "academic_year": academic_year,
        "rows_from_schools_outside_the_la": outside_la,
        **view,
        "school_names": {r["dfe"]: r["name"] for r in names},  # from the schools register
        "ended_extracts": ended,
    }


def _school(dfe: str | None, names: dict[str, str]) -> str:
    """A DfE number with its name from the register (or "not in the register")."""
    if not dfe:
        return "not yet known"
    return f"{dfe} {names.get(dfe, '(not in the register)')}"


def quality_cmd(
    academic_year: str = typer.Argument(..., parser=parse_academic_year, metavar="YYYY/YY", help="e.g. 2017/18"),
    as_json: bool = typer.Option(False, "--json", help="print the view as JSON"),
    wide: bool = typer.Option(False, "--wide", help="draw every table on one line per row, however wide"),
) -> None:
    """Cohort counts per programme × school × year group, and data-quality findings (each explained in
    plain words, with what to do: docs/glossary.md)."""
    from sais_shared.glossary import explain, words
    from sais_shared.present import console, plural, show

    view = asyncio.run(quality_view(academic_year))
    if as_json:
        typer.echo(json.dumps(view, indent=2, default=str))
        return
    c, names = console(wide), view["school_names"]
    cohort = view["cohort"]
    show(
        c,
        f"Cohorts {academic_year}",
        ("programme", "school", "year", "children"),
        [(r["programme"], _school(r["school_dfe"], names), r["year_group"], r["n"]) for r in cohort],
        summary=f"{academic_year}: {plural(sum(r['n'] for r in cohort), 'place')} in cohorts, "
        f"{plural(len({r['school_dfe'] for r in cohort}), 'school')}",
    )
    show(
        c,
        "Schools register flags",
        ("school", "flag", "children"),
        [(_school(r["school_dfe"], names), r["flag"], r["children"]) for r in view["schools"]],
    )
    findings = view["findings"]
    # school-not-yet-known is counted at the school the child left (rolled forward past its last year)
    show(
        c,
        "Data-quality findings",
        ("finding", "school", "children"),
        [(words(r["code"]), _school(r["school_dfe"], names), r["n"]) for r in findings],
        summary=f"{plural(sum(r['n'] for r in findings), 'finding')} for a person to look at",
    )
    for code in sorted({r["code"] for r in findings}):
        term = explain(code)
        if term is not None:
            c.print(f"{term.words}: {term.sentence()}", markup=False)
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
