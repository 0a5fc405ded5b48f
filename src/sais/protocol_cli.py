"""``sais protocol``: the protocol in force, loading a new version, history, field definitions."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import typer
from rich.console import Console
from sais_eligibility.config import EligibilitySettings
from sais_shared import operator
from sais_shared.cli_options import parse_academic_year
from sais_shared.protocol import ProtocolError, read_protocol_file
from sais_shared.protocol_registry import history, load_version
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings

app = typer.Typer(
    help="The Information Sharing Protocol as data (versions, review, definitions).", no_args_is_help=True
)
out, err = Console(highlight=False), Console(stderr=True, highlight=False)


async def _runtime():
    return await open_runtime(CommonSettings())


@app.command("show")
def show(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """The version in force: parties, sources, transfer rules, retention; warns past the review date."""

    async def go():
        rt = await _runtime()
        try:
            return rt.protocol, rt.clock.today()
        finally:
            await rt.close()

    p, today = asyncio.run(go())
    overdue = p.review_overdue(today)
    if as_json:
        typer.echo(json.dumps(p.model_dump(mode="json") | {"review_overdue": overdue}, indent=2))
        return
    # past its review date: the runtime's notice has said so, once, on stderr
    out.print(f"[bold]{p.id}[/] v{p.version}, in force since {p.effective_from}, review by {p.review_date}")
    if p.review_date_basis:
        out.print(f"  review date: {p.review_date_basis}")
    out.print(f"originator: {p.originator_label}; marking: {p.protective_marking}")
    out.print(f"retention {p.retention_months} months (§11.1); staleness limit {p.staleness_months} months (§9.5)")
    out.print(
        f"transfer: {p.transfer.method} to {', '.join(p.transfer.recipients) or 'no recipient named (SAIS_DELIVERY_RECIPIENT)'} "
        f"(allowed domains {', '.join(p.transfer.allowed_recipient_domains)})"
    )
    if p.transfer.as_written:
        out.print(f"  the protocol says: {p.transfer.as_written}")
        out.print(f"  used instead because: {p.transfer.method_reason}")
    from sais_shared.present import show as show_table

    show_table(
        out,
        "Sources",
        ("source", "year groups requested (sexes)", "target year"),
        [
            (name, ", ".join(f"{y} ({''.join(x)})" for y, x in s.requested.items()), s.target)
            for name, s in p.sources.items()
        ],
        summary=f"{len(p.sources)} sources requested (year groups as the source records them; M, F, U the sexes)",
    )
    show_table(
        out,
        "Parties (§14, Appendix 1)",
        ("party", "role", "point of contact"),
        [(party.name, party.role, [f"{c.name} <{c.email}>" for c in party.contacts]) for party in p.parties],
        summary=f"{len(p.parties)} parties to the protocol",
    )


@app.command("check")
def check(
    path: Path | None = typer.Argument(
        None, exists=True, dir_okay=False, help="protocol file (default: the bundled one)"
    ),
    academic_year: str | None = typer.Option(
        None, "--academic-year", parser=parse_academic_year, metavar="YYYY/YY", help="one year only"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the gaps as JSON"),
) -> None:
    """Check a protocol file, and whether the data it requests cover each year's programme rules: every
    programme, year group and sex that no source of that programme is asked for (those children would
    be dropped as out of scope, and the cohort silently incomplete)."""
    from sais_eligibility.adapters.rules_files import load_all_rules
    from sais_eligibility.domain.coverage import coverage_gaps
    from sais_shared.protocol import bundled_protocol_path, load_protocol

    protocol = load_protocol(path or bundled_protocol_path())  # an invalid file: exit 2, naming the field
    rules = load_all_rules(EligibilitySettings().eligibility_rules_dir)
    if academic_year is not None and academic_year not in rules:
        err.print(f"no programme rules for {academic_year!r}; there are rules for {', '.join(sorted(rules))}")
        raise typer.Exit(2)
    years = [academic_year] if academic_year else sorted(rules)
    gaps = {y: coverage_gaps(rules[y], protocol) for y in years}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "protocol": protocol.id,
                    "version": protocol.version,
                    "gaps": {
                        y: [
                            {
                                "programme": g.programme,
                                "year_groups": list(g.year_groups),
                                "sexes": list(g.sexes),
                                "sources": list(g.sources),
                            }
                            for g in gs
                        ]
                        for y, gs in gaps.items()
                    },
                },
                indent=2,
            )
        )
        return
    from sais_shared.glossary import explain

    gapped = [y for y, gs in gaps.items() if gs]
    out.print(f"{protocol.id} v{protocol.version}: valid", markup=False)
    if not gapped:
        out.print(f"the requested data cover every programme of {', '.join(years)}", markup=False)
        return
    covered = [y for y in years if y not in gapped]
    out.print(
        f"{sum(len(gaps[y]) for y in gapped)} coverage gap(s) in {len(gapped)} academic year(s)"
        + (f"; {', '.join(covered)} covered" if covered else ""),
        markup=False,
    )
    for y in gapped:
        for g in gaps[y]:
            out.print(f"  {y} {g.describe()}", markup=False)
    term = explain("coverage-gap")
    if term is not None:
        out.print(f"What this means: {term.meaning}", markup=False)
        out.print(f"What to do: {term.action}", markup=False)


@app.command("load")
def load(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, metavar="FILE", help="protocol file (YAML)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Validate a protocol file and put it in force (audited)."""
    actor, text = operator.actor(), read_protocol_file(path)

    async def go():
        rt = await _runtime()
        try:
            return await load_version(rt.pool, text, path.name, actor)
        finally:
            await rt.close()

    try:
        p = asyncio.run(go())
    except ProtocolError as exc:
        err.print(f"[red]not loaded:[/] {exc}")
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(
            json.dumps(
                {"protocol": p.id, "version": p.version, "in_force": True, "review_date": p.review_date.isoformat()}
            )
        )
        return
    out.print(f"protocol {p.id} v{p.version} is now in force (review by {p.review_date})")


@app.command("history")
def history_cmd(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """Every version loaded into this installation, by whom and when."""

    async def go():
        rt = await _runtime()
        try:
            return await history(rt.pool)
        finally:
            await rt.close()

    rows = asyncio.run(go())
    if as_json:
        typer.echo(json.dumps([r.__dict__ for r in rows], default=str, indent=2))
        return
    from sais_shared.present import show as show_table

    show_table(
        out,
        "Protocol versions loaded",
        ("protocol", "version", "loaded at", "by", "sha256"),
        [(r.protocol_id, r.version, r.loaded_at, r.loaded_by, r.sha256) for r in rows],
        summary=f"{len(rows)} version(s) loaded; the newest is in force",
    )
