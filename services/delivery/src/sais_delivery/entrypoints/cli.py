"""``sais delivery``: send a window, suspend/resume sharing, resolve an interrupted send, status."""

from __future__ import annotations

import asyncio
import getpass
import json
from dataclasses import asdict
from uuid import UUID

import typer
from rich.console import Console
from rich.table import Table

from sais_shared.errors import SaisError

from ..app import DeliveryContext
from ..config import DeliverySettings
from ..domain.errors import DeliveryRefusedError, NothingToDeliverError, UncertainDeliveryError

app = typer.Typer(help="Deliver cohorts to the SAIS (S/MIME over SMTP+TLS).", no_args_is_help=True)
err = Console(stderr=True)

EXIT_REFUSED, EXIT_UNCERTAIN, EXIT_TRANSIENT, EXIT_NOTHING = 3, 4, 5, 6


def _run(coro_fn):
    async def go():
        async with DeliveryContext(DeliverySettings()) as svc:
            return await coro_fn(svc)
    try:
        return asyncio.run(go())
    except UncertainDeliveryError as exc:
        err.print(f"[yellow]uncertain:[/] {exc}")
        raise typer.Exit(EXIT_UNCERTAIN) from None
    except NothingToDeliverError as exc:
        err.print(f"nothing to deliver: {exc}")
        raise typer.Exit(EXIT_NOTHING) from None
    except DeliveryRefusedError as exc:
        err.print(f"[red]refused:[/] {exc}")
        raise typer.Exit(EXIT_REFUSED) from None
    except SaisError as exc:
        err.print(f"[red]failed:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(EXIT_TRANSIENT) from None


@app.command("send")
def send(window: str = typer.Option(..., help="delivery window from the protocol, e.g. july, december"),
         academic_year: str = typer.Option(..., help="e.g. 2017/18"),
         recipient: str | None = typer.Option(None, help="override the protocol's recipient (must be allow-listed)"),
         override_review: str | None = typer.Option(None, help="reason to deliver past the protocol review date"),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Deliver the window's current cohorts now (exactly once)."""
    actor = getpass.getuser()
    res = _run(lambda svc: svc.deliver(window, academic_year, actor=actor,
                                       recipient=recipient or DeliverySettings().delivery_recipient,
                                       override_review=override_review))
    if as_json:
        typer.echo(json.dumps(asdict(res), default=str, indent=2))
        return
    state = "already sent earlier (content unchanged): nothing sent" if res.already_sent else "sent"
    Console().print(f"batch {res.batch_id} → {res.recipient}: {state}; Message-ID {res.message_id}; "
                    f"delete by {res.delete_by}")
    t = Table("programme", "records", title="Batch contents", title_justify="left")
    for k, v in res.counts.items():
        t.add_row(k, str(v))
    Console().print(t)


@app.command("suspend")
def suspend(reason: str = typer.Option(..., help="why sharing is suspended (ISP §16.4)")) -> None:
    """Suspend all sharing at once; every attempt to deliver is refused and audited."""
    _run(lambda svc: svc.set_suspended(True, reason, getpass.getuser()))
    Console().print("sharing SUSPENDED")


@app.command("resume")
def resume(reason: str = typer.Option(..., help="the decision to resume")) -> None:
    """Resume sharing after a suspension."""
    _run(lambda svc: svc.set_suspended(False, reason, getpass.getuser()))
    Console().print("sharing resumed")


@app.command("resolve")
def resolve(batch_id: UUID, sent: bool = typer.Option(..., "--sent/--not-sent",
                                                     help="was the interrupted batch received?")) -> None:
    """Decide an interrupted send: mark it sent (publishes delivery-completed) or ready to send again."""
    _run(lambda svc: svc.resolve(batch_id, sent=sent, actor=getpass.getuser()))
    Console().print(f"batch {batch_id} resolved as {'sent' if sent else 'not sent'}")


@app.command("status")
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Sharing state and recent batches."""
    async def fetch(svc):
        suspended, reason = await svc.is_suspended()
        rows = await svc.pool.fetch(
            "SELECT batch_id, window_name, academic_year, status, attempts, last_error, prepared_at, sent_at, "
            "delete_by, counts FROM delivery.batches ORDER BY prepared_at DESC LIMIT 20")
        return suspended, reason, [dict(r) for r in rows]
    suspended, reason, rows = _run(fetch)
    if as_json:
        typer.echo(json.dumps({"suspended": suspended, "reason": reason, "batches": rows}, default=str, indent=2))
        return
    Console().print(f"sharing: {'SUSPENDED — ' + str(reason) if suspended else 'active'}")
    t = Table("batch", "window", "year", "status", "attempts", "sent", "delete by", "last error")
    for r in rows:
        t.add_row(str(r["batch_id"])[:8], r["window_name"], r["academic_year"], r["status"], str(r["attempts"]),
                  str(r["sent_at"] or ""), str(r["delete_by"]), r["last_error"] or "")
    Console().print(t)
