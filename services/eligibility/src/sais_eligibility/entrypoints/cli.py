"""``sais eligibility``: the rules in force and the data-quality view."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from sais_shared.cli_options import parse_academic_year
from sais_shared.db import create_pool

from ..adapters.rules_files import load_all_rules
from ..config import EligibilitySettings

app = typer.Typer(help="Programme rules and cohorts.", no_args_is_help=True)


@app.command("rules")
def rules_cmd(
    academic_year: str | None = typer.Option(
        None, parser=parse_academic_year, metavar="YYYY/YY", help="e.g. 2017/18; all years when omitted"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
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
    from sais_shared.present import console, plural, show

    out = console()
    for y in years:
        programmes = rules[y].programmes
        show(
            out,
            f"Programme rules {y}",
            ("programme", "dose", "year groups", "sexes", "sources"),
            [(p.name, p.dose or "—", ", ".join(p.year_groups), ", ".join(p.sexes), p.sources) for p in programmes],
            summary=f"{y}: {plural(len(programmes), 'programme')} (year groups in that year; R is Reception)",
        )


async def statistics_rows(dsn: str | dict[str, str], academic_year: str):
    pool = await create_pool(dsn)
    try:
        counts = await pool.fetch(
            "SELECT programme, school_dfe, year_group, gender, count(*) n FROM eligibility.cohort "
            "WHERE academic_year=$1 AND status='active' GROUP BY 1,2,3,4",
            academic_year,
        )
        names = await pool.fetch(
            "SELECT DISTINCT ON (school_dfe) school_dfe, school_name FROM eligibility.records "
            "WHERE academic_year=$1 ORDER BY school_dfe, received_at DESC",
            academic_year,
        )
    finally:
        await pool.close()
    return (
        [(r["programme"], r["school_dfe"], r["year_group"], r["gender"], r["n"]) for r in counts],
        {r["school_dfe"]: r["school_name"] for r in names},
    )


@app.command("statistics")
def statistics_cmd(
    academic_year: str = typer.Argument(..., parser=parse_academic_year, metavar="YYYY/YY", help="e.g. 2017/18"),
    threshold: int = typer.Option(5, min=2, metavar="N", help="counts below this are suppressed"),
    out: Path | None = typer.Option(None, help="write the CSV here (stdout when omitted)"),
) -> None:
    """Anonymised counts per programme × school × year group × sex, small numbers suppressed (ISP §2.4)."""
    from sais_shared.files import write_private_file

    from ..domain.statistics import build_tables, render_csv, suppress

    counts, names = asyncio.run(statistics_rows(EligibilitySettings().database_login("eligibility"), academic_year))
    tables = {k: suppress(t, threshold) for k, t in build_tables(counts).items()}
    text = render_csv(tables, academic_year=academic_year, threshold=threshold, school_names=names)
    if out:  # a new, owner-only file, never through a symbolic link
        write_private_file(out, text)
        typer.echo(f"wrote {out}", err=True)
    else:
        typer.echo(text, nl=False)
