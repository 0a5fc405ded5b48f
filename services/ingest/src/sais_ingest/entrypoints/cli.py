"""``sais ingest``: the data officer's command."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import date
from enum import Enum
from pathlib import Path
from uuid import UUID

import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from sais_shared import operator
from sais_shared.cli_options import parse_date
from sais_shared.events import SOURCES
from sais_shared.files import OutputFileError, write_private_file
from sais_shared.present import console as stdout_console

from ..app import ingest_session
from ..service_layer.ingest_file import ExtractReport

Source = Enum("Source", {s.replace("-", "_"): s for s in SOURCES}, type=str)  # type: ignore[misc]  # the choices --help lists (from SOURCES, so they never drift)

app = typer.Typer(help="Ingest LA extracts (census, admissions).", no_args_is_help=True)
console = Console(stderr=True)


def print_report(rep: ExtractReport, out: Console, max_rows: int = 20) -> None:
    _print_summary(rep, out)
    _print_tables(rep, out, max_rows)


def _print_summary(rep: ExtractReport, out: Console) -> None:
    if rep.dry_run:
        status = (
            "DRY RUN: would be REFUSED (see the first warning); nothing was published or kept"
            if rep.status == "refused"
            else "DRY RUN: nothing was published or kept"
        )
    else:
        status = "DUPLICATE (already ingested; nothing published)" if rep.duplicate else "ingested"
    out.print(f"[bold]{rep.file_name}[/] → {status}")
    out.print(f"  extract {rep.extract_id}")
    out.print(f"  source {rep.source}, reference date {rep.reference_date}, target year {rep.target_academic_year}")
    if rep.supersedes:
        out.print(f"  replacement dataset: supersedes extract {rep.supersedes} (ISP §9.6)")
    if rep.effect:
        e = rep.effect
        out.print(
            f"  as a replacement: adds {e['adds']}, updates {e['updates']}, leaves {e['unchanged']} unchanged and "
            f"withdraws {e['withdrawals']} of the {e['before']} children of the extract it supersedes"
        )
    repeated = f" + repeated {rep.repeated} (one child, sent once)" if rep.repeated else ""
    out.print(
        f"  rows in {rep.rows_in} = accepted {rep.accepted}{repeated} + rejected {rep.rejected} + "
        f"out of scope {rep.out_of_scope}   warnings {rep.warnings}"
    )
    if rep.sheet:
        out.print(f"  read sheet {rep.sheet!r}: the sheet(s) before it have no header row")
    if rep.header_row and rep.header_row > 1:
        out.print(
            f"  header on row {rep.header_row}: the row(s) above it were skipped (a title or instructions); "
            "row numbers below are the spreadsheet's"
        )
    if rep.dropped_columns:
        out.print(f"  columns dropped (not allowed by ISP §6.1): {', '.join(rep.dropped_columns)}")


def _print_tables(rep: ExtractReport, out: Console, max_rows: int) -> None:
    from sais_shared.glossary import words
    from sais_shared.present import show

    if rep.rejections or rep.warning_rows or rep.out_of_scope_rows:
        out.print("  rows are numbered as in the spreadsheet (the header is row 1, or where it was found)")
    for title, rows, kind in (
        ("Rejected rows", rep.rejections, "reason"),
        ("Out of scope: valid, not requested from this source, not shared", rep.out_of_scope_rows, "why"),
        ("Warnings", rep.warning_rows, "warning"),
    ):
        if not rows:
            continue
        shown = [
            (r["row_number"] or "file", words(r["code"]) if r["field"] == "row" else r["field"], r["reason"])
            for r in rows[:max_rows]
        ]
        show(out, title, ("row", "field", kind), shown, summary=f"  {len(rows)} row(s): {title.split(':')[0].lower()}")
        if len(rows) > max_rows:
            out.print(f"  … {len(rows) - max_rows} more in the report (--json)")
    if rep.dip_sample:
        show(
            out,
            "Dip sample for spot-checking against the source (ISP §9.3)",
            ("row", "school", "year", "surname", "forename", "date of birth", "postcode"),
            [
                (
                    r["row_number"],
                    r["school_dfe"],
                    r["year_group"],
                    r["surname"],
                    r["forename"],
                    r["date_of_birth"],
                    r["postcode"],
                )
                for r in rep.dip_sample
            ],
        )


def _progress_bar(show: bool) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed:,} rows"),
        TimeElapsedColumn(),
        console=console,
        disable=not show,
    )


_SOURCE_MEANINGS = {
    "summer-census": "the May school census (rolled forward a year to September)",
    "autumn-census": "the October school census (the year as it is)",
    "admissions-reception": "Reception offers for September (primary admissions)",
    "admissions-year3-transfer": "Year 3 offers for September (infant to junior transfer)",
}


def _file_help() -> str:
    """What `sais ingest file --help` says: the formats, the columns and the sources, from the code itself."""
    from sais_shared.events import SOURCES

    from ..domain.headers import ALIASES, REQUIRED

    def column(field: str) -> str:
        return f"{field} ({', '.join(repr(a) for a in ALIASES[field][:3])}…)"

    optional = [f for f in ALIASES if f not in REQUIRED]
    sources = "\n\n".join(f"{s}: {_SOURCE_MEANINGS.get(s, '')}" for s in SOURCES)
    return (
        "Validate, minimise and publish one extract file: all of it, or none of it.\n\n"
        "Formats: CSV (UTF-8, UTF-8 with BOM, Windows-1252), Excel .xlsx, and the DfE Common Transfer File "
        "(XML). A title or instructions above the header row are skipped.\n\n"
        f"Required columns (headers as schools write them): {'; '.join(column(f) for f in REQUIRED)}.\n\n"
        f"Optional columns: {', '.join(optional)}. Any other column is dropped and never shared (ISP §6.1).\n\n"
        f"Sources:\n\n{sources}\n\n"
        "Rows are numbered as in the spreadsheet; the report names every rejected and out-of-scope row."
    )


@app.command("file", help=_file_help())
def ingest_file_cmd(
    path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    source: Source = typer.Option(
        ..., metavar="SOURCE", help="the extract's source, one of those listed above (the protocol must request it)"
    ),
    reference_date: date = typer.Option(..., parser=parse_date, metavar="YYYY-MM-DD", help="census day or offer date"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    report: Path | None = typer.Option(None, help="also write the full report (JSON) here: a new file"),
    replace: bool = typer.Option(
        False, "--replace", help="apply a replacement that withdraws many children, or a file with no rows (audited)"
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="read and check the file and show what it would do; publish and keep nothing"
    ),
    force_date: bool = typer.Option(
        False, "--force-date", help="take a reference date outside its source's window (audited)"
    ),
) -> None:
    """Validate, minimise and publish one extract file (the help: _file_help)."""
    ref, actor = reference_date, operator.actor()
    if report is not None and report.exists():  # before anything is done, not after
        raise OutputFileError(f"{report} already exists: the report is written to a new file only")

    size = path.stat().st_size
    show_progress = console.is_terminal and size > 5 * 1024 * 1024

    async def run() -> ExtractReport:
        async with ingest_session() as session:
            with _progress_bar(show_progress) as bar:
                task = bar.add_task(f"ingesting {path.name}", total=None)
                return await session.file(
                    path,
                    source=source.value,
                    reference_date=ref,
                    actor=actor,
                    progress=lambda n: bar.update(task, completed=n),
                    replace=replace,
                    dry_run=dry_run,
                    force_date=force_date,
                )

    rep = asyncio.run(run())  # a refusal or failure: one line and its exit code, from the CLI's one handler
    data = asdict(rep) | {"balanced": rep.balanced}
    if report:  # the full report includes the dip sample (personal data): a new, owner-only file
        write_private_file(report, json.dumps(data, default=str, indent=2))
    if as_json:  # for scripts: counts, rejections and warnings; the dip sample only by row number
        data["dip_sample"] = [r["row_number"] for r in rep.dip_sample]
        typer.echo(json.dumps(data, default=str, indent=2))
    else:
        print_report(rep, stdout_console())


@app.command("withdraw")
def withdraw_cmd(
    extract_id: UUID = typer.Argument(..., metavar="EXTRACT", help="the extract's id (sais status lists them)"),
    reason: str = typer.Option(..., help="why it is taken back, in words (audited)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
) -> None:
    """Take a completed extract back: its children leave the cohorts, and the next batch says so."""
    actor = operator.actor()

    async def run():
        async with ingest_session() as session:
            return await session.withdraw(extract_id, reason=reason, actor=actor)

    row = asyncio.run(run())
    if as_json:
        typer.echo(json.dumps({"extract_id": str(row.extract_id), "status": row.status, "reason": reason}))
    else:
        stdout_console().print(
            f"extract {row.extract_id} ({row.file_name}, {row.source} {row.reference_date}) withdrawn: its "
            f"{row.accepted} children leave the cohorts; the next batch withdraws those already sent"
        )
