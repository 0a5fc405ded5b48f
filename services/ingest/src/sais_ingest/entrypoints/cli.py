"""``sais ingest``: the data officer's command."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import date
from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sais_shared import operator
from sais_shared.cli_options import parse_date
from sais_shared.events import SOURCES
from sais_shared.exits import Exit
from sais_shared.files import OutputFileError, write_private_file
from sais_shared.protocol import ProtocolRefusalError

from ..app import ingest_session
from ..domain.model import ExtractFileError
from ..service_layer.ingest_file import ExtractReport

Source = Enum("Source", {s.replace("-", "_"): s for s in SOURCES}, type=str)  # the choices --help lists

app = typer.Typer(help="Ingest LA extracts (census, admissions).", no_args_is_help=True)
console = Console(stderr=True)


def print_report(rep: ExtractReport, out: Console, max_rows: int = 20) -> None:
    status = "DUPLICATE (already ingested; nothing published)" if rep.duplicate else "ingested"
    out.print(f"[bold]{rep.file_name}[/] → {status}")
    out.print(
        f"  extract {rep.extract_id}  source {rep.source}  reference date {rep.reference_date}  "
        f"target year {rep.target_academic_year}"
    )
    if rep.supersedes:
        out.print(f"  replacement dataset: supersedes extract {rep.supersedes} (ISP §9.6)")
    out.print(
        f"  rows in {rep.rows_in} = accepted {rep.accepted} + rejected {rep.rejected} + "
        f"out of scope {rep.out_of_scope}   warnings {rep.warnings}"
    )
    if rep.header_row and rep.header_row > 1:
        out.print(
            f"  header on row {rep.header_row}: the row(s) above it were skipped (a title or instructions); "
            "row numbers below are the spreadsheet's"
        )
    if rep.dropped_columns:
        out.print(f"  columns dropped (not allowed by ISP §6.1): {', '.join(rep.dropped_columns)}")
    if rep.rejections:
        t = Table("row", "field", "reason", title="Rejected rows", title_justify="left")
        for r in rep.rejections[:max_rows]:
            t.add_row(str(r["row_number"]), r["field"], r["reason"])
        out.print(t)
        if len(rep.rejections) > max_rows:
            out.print(f"  … {len(rep.rejections) - max_rows} more in the report (--json)")
    if rep.dip_sample:
        t = Table(
            "row",
            "school",
            "year",
            "surname",
            "forename",
            "date of birth",
            "postcode",
            title="Dip sample for spot-checking against the source (ISP §9.3)",
            title_justify="left",
        )
        for r in rep.dip_sample:
            t.add_row(
                str(r["row_number"]),
                r["school_dfe"],
                r["year_group"],
                r["surname"],
                r["forename"],
                r["date_of_birth"],
                r["postcode"],
            )
        out.print(t)
    if rep.warning_rows:
        t = Table("row", "field", "warning", title="Warnings", title_justify="left")
        for r in rep.warning_rows[:max_rows]:
            t.add_row(str(r["row_number"]), r["field"], r["reason"])
        out.print(t)


@app.command("file")
def ingest_file_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    source: Source = typer.Option(..., help="the extract's source (the protocol must request it)"),
    reference_date: date = typer.Option(..., parser=parse_date, metavar="YYYY-MM-DD", help="census day or offer date"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    report: Path | None = typer.Option(None, help="also write the full report (JSON) here"),
) -> None:
    """Validate, minimise and publish one extract file."""
    ref, actor = reference_date, operator.actor()

    size = path.stat().st_size
    show_progress = console.is_terminal and size > 5 * 1024 * 1024

    async def run() -> ExtractReport:
        async with ingest_session() as session:
            with Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("{task.completed:,} rows"),
                TimeElapsedColumn(),
                console=console,
                disable=not show_progress,
            ) as bar:
                task = bar.add_task(f"ingesting {path.name}", total=None)
                return await session.service.file(
                    path,
                    source=source.value,
                    reference_date=ref,
                    actor=actor,
                    progress=lambda n: bar.update(task, completed=n),
                )

    try:
        rep = asyncio.run(run())
    except (ExtractFileError, ProtocolRefusalError) as exc:  # 2: the file; 3: the protocol does not allow it
        code = Exit.REFUSED if isinstance(exc, ProtocolRefusalError) else Exit.BAD_INPUT
        if as_json:  # a script parsing the output gets JSON for a refusal too
            typer.echo(json.dumps({"refused": True, "reason": str(exc), "file": path.name, "exit_code": int(code)}))
        else:
            console.print(f"[red]extract refused:[/] {exc}")
        raise typer.Exit(code) from None
    data = asdict(rep) | {"balanced": rep.balanced}
    if report:  # the full report includes the dip sample (personal data): a new, owner-only file
        try:
            write_private_file(report, json.dumps(data, default=str, indent=2))
        except OutputFileError as exc:
            console.print(f"[red]report not written:[/] {exc}")
            raise typer.Exit(2) from None
    if as_json:  # for scripts: counts, rejections and warnings; the dip sample only by row number
        data["dip_sample"] = [r["row_number"] for r in rep.dip_sample]
        typer.echo(json.dumps(data, default=str, indent=2))
    else:
        print_report(rep, Console())
