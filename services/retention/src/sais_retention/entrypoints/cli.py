"""``sais retention``: the schedule, running due deletions, certificates."""

from __future__ import annotations

import asyncio
import getpass
import json
from datetime import date

import typer
from rich.console import Console
from rich.table import Table
from sais_shared.kafka import ensure_topics, make_broker
from sais_shared.runtime import open_runtime
from sais_shared.topics import Topics

from ..app import MIGRATIONS, build_service, certificate_publisher
from ..config import RetentionSettings

app = typer.Typer(help="Retention schedule and secure deletion (ISP §11).", no_args_is_help=True)


async def _with_service(fn):
    settings = RetentionSettings()
    topics = Topics(settings.topic_prefix)
    broker = make_broker(settings, "sais-retention-cli")
    publisher = certificate_publisher(broker, topics)
    rt = await open_runtime(settings, *MIGRATIONS)
    try:
        await ensure_topics(settings, topics)
        await broker.start()
        try:
            return await fn(build_service(rt, publisher))
        finally:
            await broker.stop()
    finally:
        await rt.close()


@app.command("run")
def run(now: str | None = typer.Option(None, help="run as if today were this date (YYYY-MM-DD)"),
        as_json: bool = typer.Option(False, "--json")) -> None:
    """Run every deletion due on or before today (or --now)."""
    today = date.fromisoformat(now) if now else None
    certs = asyncio.run(_with_service(lambda svc: svc.run_due(today, actor=getpass.getuser())))
    if as_json:
        typer.echo(json.dumps([c.model_dump(mode="json") for c in certs], indent=2))
        return
    if not certs:
        Console().print("no deletions due")
    for c in certs:
        Console().print(f"deleted {c.subject} (due {c.due_at}) under {c.rule}: {len(c.key_ids_destroyed)} data key(s) "
                        f"destroyed; rows {c.rows_deleted}; certificate {c.certificate_id}")


@app.command("schedule")
def schedule(as_json: bool = typer.Option(False, "--json")) -> None:
    """What is scheduled for deletion, and when."""
    async def fetch(svc):
        return [dict(r) for r in await svc.pool.fetch(
            "SELECT subject, rule, due_on, executed_at, cardinality(key_ids) AS keys FROM retention.schedule "
            "ORDER BY due_on, subject")]
    rows = asyncio.run(_with_service(fetch))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    t = Table("subject", "rule", "delete on", "done", "keys", title="Retention schedule", title_justify="left")
    for r in rows:
        t.add_row(r["subject"], r["rule"], str(r["due_on"]), str(r["executed_at"] or "pending"), str(r["keys"]))
    Console().print(t)


@app.command("purge")
def purge(party: str = typer.Option(..., help="protocol party id leaving (e.g. cwpt), or 'all'"),
          confirm: str = typer.Option(None, help="type the party id again to confirm (asked when omitted)")) -> None:
    """Delete everything received from or destined for a party leaving the protocol (ISP §4.3, §11.3)."""
    if confirm is None:
        confirm = typer.prompt(f"This destroys ALL personal data held for '{party}'. Type the party id to confirm")
    if confirm != party:
        typer.echo("not confirmed: nothing was deleted", err=True)
        raise typer.Exit(2)
    try:
        cert = asyncio.run(_with_service(lambda svc: svc.purge(party, getpass.getuser())))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    Console().print(f"purged for {party}: {len(cert.key_ids_destroyed)} data key(s) destroyed; rows {cert.rows_deleted}; "
                    f"certificate {cert.certificate_id}")


@app.command("certificates")
def certificates(as_json: bool = typer.Option(False, "--json")) -> None:
    """Deletion certificates: what was deleted, when, under which rule (no personal data)."""
    async def fetch(svc):
        return [dict(r) for r in await svc.pool.fetch(
            "SELECT certificate_id, rule, subject, due_on, executed_at, cardinality(key_ids_destroyed) AS keys, "
            "rows_deleted, protocol_version FROM retention.certificates ORDER BY executed_at")]
    rows = asyncio.run(_with_service(fetch))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    t = Table("certificate", "rule", "subject", "due", "executed", "keys destroyed", title="Deletion certificates",
              title_justify="left")
    for r in rows:
        t.add_row(str(r["certificate_id"])[:8], r["rule"], r["subject"][:40], str(r["due_on"]), str(r["executed_at"]),
                  str(r["keys"]))
    Console().print(t)
