"""``sais retention``: the schedule, running due deletions, certificates."""

from __future__ import annotations

import asyncio
import json
from datetime import date

import typer
from sais_shared import operator
from sais_shared.cli_options import parse_date, working
from sais_shared.glossary import words
from sais_shared.present import console, plural, show

from ..config import RetentionSettings
from ..domain.plan import RULE_TRANSFER, RULE_UNDELIVERED

app = typer.Typer(help="Retention schedule and secure deletion (ISP §11).", no_args_is_help=True)


async def _with_service(fn):
    """Run ``fn(service, pool)``: retention's use cases, and its own pool for the command's reports."""
    from sais_shared.bootstrap import session  # Kafka and the service: only for the commands that need them

    from ..app import WIRING

    async with session(WIRING, RetentionSettings()) as running:
        return await fn(running.service, running.runtime.pool)


async def _await_certificates(pool, request_ids, wait_s: float) -> list[dict]:
    """Poll until the running retention service has certified these requests (or the wait is over)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        rows = await pool.fetch(
            "SELECT subject, completed_at, certificate_id FROM retention.requests WHERE request_id = ANY($1)",
            list(request_ids),
        )
        if all(r["completed_at"] for r in rows) or asyncio.get_running_loop().time() >= deadline:
            return [dict(r) for r in rows]
        await asyncio.sleep(0.5)


def _report(requests, certified: list[dict], as_json: bool) -> None:
    done = {r["subject"]: r for r in certified}
    if as_json:
        typer.echo(
            json.dumps(
                [
                    r.model_dump(mode="json")
                    | {"certificate_id": str(done.get(r.subject, {}).get("certificate_id") or "") or None}
                    for r in requests
                ],
                indent=2,
            )
        )
        return
    out = console()
    if not requests:
        out.print("no deletions due")
    for r in requests:
        answer = done.get(r.subject, {})
        if answer.get("certificate_id"):
            outcome = f"certificate {answer['certificate_id']}"
        elif answer.get("completed_at"):
            outcome = "there was nothing to delete, so no certificate"
        else:
            outcome = "certificate once every owner has confirmed (`sais retention requests`)"
        out.print(f"{r.subject}", markup=False)
        out.print(f"  rule: {words(r.rule)} ({r.rule})", markup=False)
        out.print(f"  {plural(len(r.key_ids), 'data key')} destroyed", markup=False)
        deleted = "deleted" if answer.get("completed_at") else "to be deleted"
        out.print(f"  rows {deleted} by {', '.join(r.owners)}", markup=False)
        out.print(f"  {outcome}", markup=False)


@app.command("run")
def run(
    now: date | None = typer.Option(
        None, parser=parse_date, metavar="YYYY-MM-DD", help="run as if today were this date"
    ),
    wait: float = typer.Option(
        0, metavar="SECONDS", min=0, help="seconds to wait for the owners' confirmations and the certificates"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the requests as JSON"),
) -> None:
    """Run every deletion due on or before today (or --now): destroy the data keys at once, and ask the
    services that hold rows to delete them; the certificate follows their confirmations."""
    today, actor = now, operator.actor()

    async def go(svc, pool):
        requests = await svc.run_due(today, actor=actor)
        return requests, await _await_certificates(pool, [r.request_id for r in requests], wait) if wait else []

    with working("running due deletions" + (" and waiting for the owners' confirmations" if wait else "")):
        requests, certified = asyncio.run(_with_service(go))
    _report(requests, certified, as_json)


@app.command("requests")
def requests_cmd(as_json: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
    """Deletion requests and which owners have confirmed them."""

    async def fetch(svc, pool):
        return [
            dict(r)
            for r in await pool.fetch(
                "SELECT r.subject, r.rule, r.requested_at, r.completed_at, r.owners, "
                "coalesce(array_agg(c.service) FILTER (WHERE c.service IS NOT NULL), '{}') AS confirmed "
                "FROM retention.requests r LEFT JOIN retention.confirmations c USING (request_id) "
                "GROUP BY r.request_id ORDER BY r.requested_at"
            )
        ]

    rows = asyncio.run(_with_service(fetch))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    waiting = [[o for o in r["owners"] if o not in r["confirmed"]] for r in rows]
    show(
        console(),
        "Deletion requests",
        ("subject", "rule", "requested", "confirmed by", "waiting for", "done"),
        [
            (r["subject"], words(r["rule"]), r["requested_at"], r["confirmed"], w, r["completed_at"])
            for r, w in zip(rows, waiting, strict=True)
        ],
        summary=f"{plural(len(rows), 'deletion request')}, {sum(bool(w) for w in waiting)} waiting for an owner",
    )


@app.command("schedule")
def schedule(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """What is scheduled for deletion, and when."""

    async def fetch(svc, pool):
        return [
            dict(r)
            for r in await pool.fetch(
                "SELECT subject, rule, due_on, executed_at, cardinality(key_ids) AS keys, extract_ids "
                "FROM retention.schedule ORDER BY due_on, subject"
            )
        ]

    rows = asyncio.run(_with_service(fetch))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    for r in rows:  # an extract a batch carried: its own entry deletes nothing the batch still needs
        r["extract_ids"] = [str(x) for x in r["extract_ids"]]
    carried = {x: r["subject"] for r in rows if r["rule"] == RULE_TRANSFER for x in r["extract_ids"]}
    pending = [r for r in rows if r["executed_at"] is None]
    nxt = min((r["due_on"] for r in pending), default=None)
    show(
        console(),
        "Retention schedule",
        ("subject", "rule", "delete on", "done at (real time)", "data keys"),
        [(r["subject"], _rule_shown(r, carried), r["due_on"], r["executed_at"] or "pending", r["keys"]) for r in rows],
        summary=f"{plural(len(pending), 'deletion')} pending"
        + (f", the next on {nxt.isoformat()}" if nxt else "")
        + "; `sais retention run` deletes what is due (docs/glossary.md explains each rule)",
    )


def _rule_shown(row: dict, carried: dict[str, str]) -> str:
    batches = sorted({carried[x] for x in row["extract_ids"] if x in carried})
    if row["rule"] == RULE_UNDELIVERED and batches:
        return f"{words(row['rule'])}; sent in {', '.join(batches)}, which keeps it until its own date"
    return words(row["rule"])


@app.command("reapply")
def reapply(
    wait: float = typer.Option(
        0, metavar="SECONDS", min=0, help="seconds to wait for the owners' confirmations and the certificates"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the requests as JSON"),
) -> None:
    """After restoring a database backup, before the services start: apply again every deletion certified
    on the deletion-completed topic whose data keys the restore brought back (keys destroyed at once; rows
    deleted by their owners, under a new request). Reads the topic as the Kafka administrator; keep its
    retention longer than your oldest backup. Running it again does nothing."""
    from sais_shared.events import DeletionCompleted
    from sais_shared.kafka import read_topic_events
    from sais_shared.topics import Topics

    actor, settings = operator.actor(), RetentionSettings()

    async def go(svc, pool):
        topic = Topics(settings.topic_prefix).deletion_completed
        certificates = await read_topic_events(settings, topic, DeletionCompleted.model_validate_json)
        requests = await svc.reapply(certificates, actor)
        done = await _await_certificates(pool, [r.request_id for r in requests], wait) if wait and requests else []
        return len(certificates), requests, done

    with working("reading the deletion certificates and applying again what a restore undid"):
        seen, requests, certified = asyncio.run(_with_service(go))
    if not as_json:
        console().print(
            f"{seen} deletion certificate(s) read; "
            + (f"{len(requests)} deletion(s) the restore had undone applied again" if requests else "none undone")
        )
    if requests or as_json:
        _report(requests, certified, as_json)


@app.command("purge")
def purge(
    party: str = typer.Option(..., metavar="PARTY", help="protocol party id leaving (e.g. cwpt), or 'all'"),
    confirm: str = typer.Option(None, metavar="PARTY", help="type the party id again to confirm (asked when omitted)"),
    wait: float = typer.Option(
        0, metavar="SECONDS", min=0, help="seconds to wait for the owners' confirmations and the certificate"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the request as JSON"),
) -> None:
    """Delete everything received from or destined for a party leaving the protocol (ISP §4.3, §11.3)."""
    actor = operator.actor()
    if confirm is None:
        confirm = typer.prompt(f"This destroys ALL personal data held for '{party}'. Type the party id to confirm")
    if confirm != party:
        typer.echo("not confirmed: nothing was deleted", err=True)
        raise typer.Exit(2)

    async def go(svc, pool):
        req = await svc.purge(party, actor)
        return req, await _await_certificates(pool, [req.request_id], wait) if wait else []

    try:
        with working(f"purging everything held for {party}"):
            req, certified = asyncio.run(_with_service(go))
    except ValueError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None
    if not as_json:
        console().print(f"purge for {party}: {len(req.key_ids)} data key(s) destroyed")
    _report([req], certified, as_json)


@app.command("certificates")
def certificates(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """Deletion certificates: what was deleted, when, under which rule (no personal data)."""

    async def fetch(svc, pool):
        return [
            dict(r)
            for r in await pool.fetch(
                "SELECT certificate_id, rule, subject, due_on, executed_at, cardinality(key_ids_destroyed) AS keys, "
                "rows_deleted, protocol_version FROM retention.certificates ORDER BY executed_at"
            )
        ]

    rows = asyncio.run(_with_service(fetch))
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    show(
        console(),
        "Deletion certificates",
        ("certificate", "rule", "subject", "due", "executed", "data keys destroyed"),
        [(r["certificate_id"], words(r["rule"]), r["subject"], r["due_on"], r["executed_at"], r["keys"]) for r in rows],
        summary=f"{plural(len(rows), 'deletion certificate')} (no personal data); due is the business date, "
        "executed the service's clock",
    )
