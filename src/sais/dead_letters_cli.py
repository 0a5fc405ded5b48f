"""``sais dead-letters``: what no consumer could process, by position and reason (never the message)."""

from __future__ import annotations

import asyncio
import json
from datetime import date
from uuid import UUID

import typer
from rich.console import Console
from sais_shared.cli_options import local_time, parse_date
from sais_shared.kafka import read_dead_letters
from sais_shared.settings import CommonSettings

app = typer.Typer(
    help="Messages set aside by a consumer (the dead-letter topic): position and reason, never content.",
    no_args_is_help=True,
)


def _letters(since: date | None = None) -> list:
    letters = asyncio.run(read_dead_letters(CommonSettings()))
    return [d for d in letters if since is None or d.occurred_at.date() >= since]


@app.command("list")
def list_cmd(
    since: date | None = typer.Option(None, parser=parse_date, metavar="YYYY-MM-DD", help="only those set aside since"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Every dead letter on the topic, oldest first (run as the Kafka administrator)."""
    letters = _letters(since)
    if as_json:
        typer.echo(json.dumps([d.model_dump(mode="json") for d in letters], indent=2))
        return
    out = Console(soft_wrap=True, highlight=False)
    if not letters:
        out.print("no dead letters")
    for d in letters:
        out.print(
            f"{d.event_id}  {local_time(d.occurred_at)}  {d.consumer_group}  "
            f"{d.original_topic}[{d.partition}]@{d.offset}  {d.reason}",
            markup=False,
        )


@app.command("show")
def show(
    event_id: UUID = typer.Argument(..., metavar="ID", help="the dead letter's id (from `list`)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """One dead letter: where the original message is, why it was set aside, and what to do next."""
    found = [d for d in _letters() if d.event_id == event_id]
    if not found:
        raise typer.BadParameter(f"no dead letter {event_id} on the topic (it may have expired)", param_hint="ID")
    d = found[0]
    if as_json:
        typer.echo(json.dumps(d.model_dump(mode="json"), indent=2))
        return
    Console(soft_wrap=True, highlight=False).print(
        f"dead letter {d.event_id}, set aside {local_time(d.occurred_at)}\n"
        f"  consumer group   {d.consumer_group}\n"
        f"  original message {d.original_topic}, partition {d.partition}, offset {d.offset}\n"
        f"  sha256 of value  {d.value_sha256}\n"
        f"  reason           {d.reason}\n"
        "What next (docs/runbook.md, Dead letters): the original is still on its topic at that position until the "
        "topic's retention removes it. Fix the cause (a producer's bug, or ours for 'its handler failed'), then "
        "have the upstream system re-send the extract, or re-ingest the file; the consumer has moved past it.",
        markup=False,
    )
