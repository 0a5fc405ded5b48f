"""``sais eligibility``: the rules in force and the data-quality view."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table
from sais_shared.db import create_pool

from ..adapters.rules_files import load_all_rules
from ..config import EligibilitySettings

app = typer.Typer(help="Programme rules and cohorts.", no_args_is_help=True)


@app.command("rules")
def rules_cmd(academic_year: str | None = typer.Option(None, help="e.g. 2017/18; all years when omitted"),
              as_json: bool = typer.Option(False, "--json")) -> None:
    """Print the programme rules in force."""
    rules = load_all_rules(EligibilitySettings().eligibility_rules_dir)
    years = [academic_year] if academic_year else sorted(rules)
    missing = [y for y in years if y not in rules]
    if missing:
        typer.echo(f"no rules for {missing}; rules exist for {sorted(rules)}", err=True)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps({y: rules[y].model_dump() for y in years}, indent=2))
        return
    for y in years:
        t = Table("programme", "dose", "year groups", "sexes", "sources", title=f"Programme rules {y}",
                  title_justify="left")
        for p in rules[y].programmes:
            t.add_row(p.name, str(p.dose or "-"), ", ".join(p.year_groups), ", ".join(p.sexes), ", ".join(p.sources))
        Console().print(t)


async def quality_view(dsn: str, academic_year: str) -> dict:
    pool = await create_pool(dsn)
    try:
        counts = await pool.fetch(
            "SELECT programme, school_dfe, year_group, count(*) n FROM eligibility.cohort "
            "WHERE academic_year=$1 AND status='active' GROUP BY 1,2,3 ORDER BY 1,2,3", academic_year)
        findings = await pool.fetch(
            "SELECT split_part(code, ':', 1) AS code, school_dfe, count(*) n FROM eligibility.findings "
            "WHERE academic_year=$1 GROUP BY 1,2 ORDER BY 1,2", academic_year)
        incomplete = await pool.fetch(
            "SELECT e.extract_id, e.accepted, (SELECT count(*) FROM eligibility.records r "
            "WHERE r.extract_id=e.extract_id) received FROM eligibility.extracts e "
            "WHERE e.academic_year=$1 AND e.reconciled_at IS NULL", academic_year)
        outside_la = 0
        if await pool.fetchval("SELECT to_regclass('ingest.row_problems')"):
            outside_la = await pool.fetchval(
                "SELECT count(*) FROM ingest.row_problems p JOIN ingest.extracts e USING (extract_id) "
                "WHERE e.target_academic_year=$1 AND p.code='school_dfe.la'", academic_year)
    finally:
        await pool.close()
    return {
        "academic_year": academic_year,
        "rows_from_schools_outside_the_la": outside_la,
        "cohort": [dict(r) for r in counts],
        "findings": [dict(r) for r in findings],
        "incomplete_extracts": [{**dict(r), "extract_id": str(r["extract_id"])} for r in incomplete],
    }


@app.command("quality")
def quality_cmd(academic_year: str = typer.Argument(..., help="e.g. 2017/18"),
                as_json: bool = typer.Option(False, "--json")) -> None:
    """Cohort counts per programme × school × year group, and data-quality findings."""
    view = asyncio.run(quality_view(EligibilitySettings().database_url, academic_year))
    if as_json:
        typer.echo(json.dumps(view, indent=2, default=str))
        return
    c = Console()
    t = Table("programme", "school", "year", "children", title=f"Cohorts {academic_year}", title_justify="left")
    for r in view["cohort"]:
        t.add_row(r["programme"], r["school_dfe"], r["year_group"], str(r["n"]))
    c.print(t)
    t = Table("finding", "school", "children", title="Data-quality findings", title_justify="left")
    for r in view["findings"]:
        t.add_row(r["code"], r["school_dfe"], str(r["n"]))
    c.print(t)
    if view["rows_from_schools_outside_the_la"]:
        c.print(f"rows rejected at ingest for a school outside the LA: {view['rows_from_schools_outside_the_la']}")
    for r in view["incomplete_extracts"]:
        c.print(f"[yellow]extract {r['extract_id']} incomplete: {r['received']}/{r['accepted']} pupil events received")


async def statistics_rows(dsn: str, academic_year: str):
    pool = await create_pool(dsn)
    try:
        counts = await pool.fetch(
            "SELECT programme, school_dfe, year_group, gender, count(*) n FROM eligibility.cohort "
            "WHERE academic_year=$1 AND status='active' GROUP BY 1,2,3,4", academic_year)
        names = await pool.fetch("SELECT DISTINCT ON (school_dfe) school_dfe, school_name FROM eligibility.records "
                                 "WHERE academic_year=$1 ORDER BY school_dfe, received_at DESC", academic_year)
    finally:
        await pool.close()
    return ([(r["programme"], r["school_dfe"], r["year_group"], r["gender"], r["n"]) for r in counts],
            {r["school_dfe"]: r["school_name"] for r in names})


@app.command("statistics")
def statistics_cmd(academic_year: str = typer.Argument(..., help="e.g. 2017/18"),
                   threshold: int = typer.Option(5, min=2, help="counts below this are suppressed"),
                   out: Path | None = typer.Option(None, help="write the CSV here (stdout when omitted)")) -> None:
    """Anonymised counts per programme × school × year group × sex, small numbers suppressed (ISP §2.4)."""
    from ..domain.statistics import build_tables, render_csv, suppress

    counts, names = asyncio.run(statistics_rows(EligibilitySettings().database_url, academic_year))
    tables = {k: suppress(t, threshold) for k, t in build_tables(counts).items()}
    text = render_csv(tables, academic_year=academic_year, threshold=threshold, school_names=names)
    if out:
        out.write_text(text)
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text, nl=False)
