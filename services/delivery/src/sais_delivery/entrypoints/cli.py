"""``sais delivery``: send a window, suspend/resume sharing, resolve an interrupted send, status."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from uuid import UUID

import typer
from rich.console import Console
from sais_shared import operator
from sais_shared.cli_options import local_time, parse_academic_year, parse_when, working
from sais_shared.exits import Exit
from sais_shared.present import console

from ..config import DeliverySettings

app = typer.Typer(help="Deliver cohorts to the SAIS (S/MIME over SMTP+TLS).", no_args_is_help=True)
err = Console(stderr=True, soft_wrap=True)  # a message is one line, whatever the width


def _run(coro_fn):
    """Run ``coro_fn(service)`` in a delivery session. A failure reaches the ``sais`` handler, which prints
    one line and exits with its documented code (3 refused, 4 uncertain, 5 transient, 6 nothing to
    deliver, 7 permanent)."""

    from ..app import delivery_session  # Kafka and the service: only for the commands that need them

    async def go():
        async with delivery_session(DeliverySettings()) as svc:
            return await coro_fn(svc)

    return asyncio.run(go())


@app.command("send")
def send(
    window: str = typer.Option(
        ..., metavar="WINDOW", help="a delivery window of the protocol in force, e.g. july (`sais protocol show`)"
    ),
    academic_year: str = typer.Option(..., parser=parse_academic_year, metavar="YYYY/YY", help="e.g. 2017/18"),
    recipient: str | None = typer.Option(
        None, metavar="ADDRESS", help="the SAIS mailbox, if not SAIS_DELIVERY_RECIPIENT (must be allow-listed)"
    ),
    override_review: str | None = typer.Option(
        None, metavar="REASON", help="reason to deliver past the protocol review date (audited)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Deliver the window's current cohorts now (exactly once)."""
    actor = operator.actor()
    with working(f"delivering the {window} window of {academic_year}: rendering, signing, encrypting, sending"):
        res = _run(
            lambda svc: svc.deliver(
                window, academic_year, actor=actor, recipient=recipient, override_review=override_review
            )
        )
    if as_json:
        typer.echo(json.dumps(asdict(res), default=str, indent=2))
        return
    state = "already sent earlier (content unchanged): nothing sent" if res.already_sent else "sent"
    console().print(
        f"batch {res.batch_id} → {res.recipient}: {state}; Message-ID {res.message_id}; delete by {res.delete_by}"
    )
    from sais_shared.present import show

    out = console()
    if len(res.parts) > 1:
        show(
            out,
            "Parts (each a complete message)",
            ("part", "Message-ID", "status", "bytes", "records"),
            [(p["part"], p["message_id"], p["status"], p["size_bytes"], sum(p["counts"].values())) for p in res.parts],
            summary=f"{len(res.parts)} parts, each under the mail size limit and complete on its own",
        )
    show(
        out,
        "Batch contents",
        ("programme", "records"),
        list(res.counts.items()),
        summary=f"{sum(res.counts.values())} records in {len(res.counts)} programme file(s), "
        f"{len(res.parts)} message(s)",
    )
    for w in res.warnings:
        Console(stderr=True).print(f"[yellow]warning:[/] {w}")


@app.command("suspend")
def suspend(
    reason: str = typer.Option(..., help="why sharing is suspended (ISP §16.4)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Suspend all sharing at once; every attempt to deliver is refused and audited."""
    _set_sharing(True, reason, as_json)


@app.command("resume")
def resume(
    reason: str = typer.Option(..., help="the decision to resume"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Resume sharing after a suspension."""
    _set_sharing(False, reason, as_json)


def _set_sharing(suspended: bool, reason: str, as_json: bool) -> None:
    actor = operator.actor()
    _run(lambda svc: svc.set_suspended(suspended, reason, actor))
    _said(
        as_json,
        "sharing SUSPENDED" if suspended else "sharing resumed",
        suspended=suspended,
        reason=reason,
        actor=actor,
    )


@app.command("resolve")
def resolve(
    batch_id: UUID,
    sent: bool = typer.Option(..., "--sent/--not-sent", help="was the interrupted part received?"),
    part: int | None = typer.Option(None, metavar="N", help="which part (needed only when several were interrupted)"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Decide an interrupted send: mark it sent (publishes delivery-completed) or ready to send again."""
    actor = operator.actor()
    done = _run(lambda svc: svc.resolve(batch_id, sent=sent, part=part, actor=actor))
    _said(
        as_json,
        f"batch {batch_id} resolved as {'sent' if sent else 'not sent'}"
        + (f"; every part is sent: delete by {done.delete_by}" if done else ""),
        batch_id=str(batch_id),
        part=part,
        sent=sent,
        batch_sent=done is not None,
        delete_by=str(done.delete_by) if done else None,
    )


@app.command("status")
def status(
    limit: int = typer.Option(20, min=1, metavar="N", help="how many of the newest batches"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Sharing state and the newest batches: whole batch ids, recipient, and each part's Message-ID and state
    (an interrupted part is the one to look for in the recipient's mailbox before `resolve`)."""

    async def fetch(svc):
        suspended, reason = await svc.is_suspended()
        return suspended, reason, await svc.recent_batches(limit)

    suspended, reason, rows = _run(fetch)
    if as_json:
        typer.echo(json.dumps({"suspended": suspended, "reason": reason, "batches": rows}, default=str, indent=2))
        return
    out = Console(soft_wrap=True, highlight=False)
    out.print(f"sharing: {'SUSPENDED — ' + str(reason) if suspended else 'active'}")
    for r in rows:
        state = f"sent {local_time(r['sent_at'])}" if r["sent_at"] else f"{r['status']}, {r['attempts']} attempt(s)"
        out.print(f"\n[bold]batch {r['batch_id']}[/]")
        out.print(
            f"  {r['window_name']} {r['academic_year']}: {state}; delete by {r['delete_by']}\n  to {r['recipient']}; "
            + ", ".join(f"{k} {v}" for k, v in r["counts"].items()),
            markup=False,
        )
        if r["last_error"]:
            out.print(f"  last error: {r['last_error']}", markup=False)
        for p in r["parts"]:  # the Message-ID on a line of its own, never wrapped: it is searched for as written
            when = (
                f"sent {local_time(p['sent_at'])}"
                if p["sent_at"]
                else f"attempted {local_time(p['attempted_at'], 'not yet')}"
            )
            flag = " ← interrupted: check the mailbox, then `sais delivery resolve`" if p["status"] == "sending" else ""
            out.print(f"  part {p['part']}/{len(r['parts'])}: {p['status']}, {when}{flag}", markup=False)
            out.print(f"    {p['message_id']}", markup=False, highlight=False)


def _said(as_json: bool, sentence: str, **facts) -> None:
    """What a command did: a sentence for a person, or its facts as one JSON object for a script."""
    if as_json:
        typer.echo(json.dumps(facts, default=str))
    else:
        console().print(sentence)


breach_app = typer.Typer(help="Security incidents (ISP §16): report, list, close.", no_args_is_help=True)


@breach_app.command("report")
def breach_report(
    what: str = typer.Option(..., help="what happened, WITHOUT personal data"),
    discovered_at: datetime = typer.Option(
        ...,
        parser=parse_when,
        metavar="YYYY-MM-DDTHH:MM",
        help="when it was discovered (Europe/London unless a zone is given)",
    ),
    by: str = typer.Option(..., "--by", metavar="NAME", help="who discovered it"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Record a breach, suspend sharing at once and notify both parties' points of contact."""
    from ..service_layer.breach import report_breach

    when, actor = discovered_at, operator.actor()
    rep = _run(lambda svc: report_breach(svc, what=what, discovered_at=when, discovered_by=by, actor=actor))
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "breach_id": str(rep.breach_id),
                    "sharing_suspended": True,
                    "notified": rep.notified,
                    "not_notified": rep.failed,
                    "ico_decision_due": rep.ico_decision_due.isoformat(),
                }
            )
        )
    else:
        console().print(f"breach {rep.breach_id} recorded; sharing SUSPENDED; notified {', '.join(rep.notified)}")
        console().print(f"decide on notifying the ICO by {local_time(rep.ico_decision_due)} (72 hours)")
    if rep.failed:  # recorded and suspended: running the command again would file the breach twice
        err.print(
            f"[red]notice NOT delivered to {', '.join(rep.failed)}:[/] contact them by other means. The breach "
            f"is recorded as {rep.breach_id}: do not report it again."
        )
        raise typer.Exit(Exit.REFUSED)


@breach_app.command("close")
def breach_close(
    breach_id: UUID,
    outcome: str = typer.Option(..., help="what was found and done"),
    ico_notified: bool = typer.Option(..., "--ico-notified/--ico-not-notified"),
    resume: bool = typer.Option(..., "--resume/--keep-suspended", help="the explicit decision about sharing"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Close a breach with its outcome; sharing resumes only with --resume."""
    from ..service_layer.breach import close_breach

    actor = operator.actor()

    _run(
        lambda svc: close_breach(svc, breach_id, outcome=outcome, ico_notified=ico_notified, resume=resume, actor=actor)
    )
    _said(
        as_json,
        f"breach {breach_id} closed; sharing {'resumed' if resume else 'stays SUSPENDED'}",
        breach_id=str(breach_id),
        ico_notified=ico_notified,
        sharing_resumed=resume,
    )


@breach_app.command("list")
def breach_list(as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)")) -> None:
    """Open breaches and the hours left to decide on notifying the ICO."""
    from ..service_layer.breach import open_breaches

    rows = _run(open_breaches)
    if as_json:
        typer.echo(json.dumps(rows, default=str, indent=2))
        return
    from sais_shared.present import plural, show

    show(
        console(),
        "Open breaches",
        ("breach", "discovered", "ICO decision due", "hours left"),
        [(r["breach_id"], r["discovered_at"], r["ico_decision_due"], r["hours_to_ico_decision"]) for r in rows],
        summary=f"{plural(len(rows), 'open breach', 'open breaches')}; decide on telling the ICO within 72 hours of discovery (UK GDPR Art. 33)",
    )


@app.command("check-mavis")
def check_mavis_cmd(
    files: list[Path] = typer.Argument(..., exists=True, dir_okay=False, help="Mavis cohort-import CSV files"),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        exists=True,
        dir_okay=False,
        help="the message's manifest.json: the academic year, first upload day and team the files were written for",
    ),
    academic_year: str | None = typer.Option(
        None, "--academic-year", help="the year the files' year groups are for, e.g. 2017/18 (default: the manifest's)"
    ),
    upload_date: str | None = typer.Option(
        None, "--upload-date", help="the day of upload, YYYY-MM-DD (default: the manifest's first upload day, or today)"
    ),
    team_schools: str | None = typer.Option(
        None,
        "--team-schools",
        help="the team's schools in Mavis: URNs (or URN + site letter), comma-separated, or a file with one per line",
    ),
    year_groups: str | None = typer.Option(
        None, "--year-groups", help="the team's year groups in Mavis, e.g. 0-11 or 0-13 (default 0-11: R to Year 11)"
    ),
    register: Path | None = typer.Option(
        None,
        "--register",
        exists=True,
        dir_okay=False,
        help="a GIAS export (CSV or zip): without --team-schools, URNs must be schools in it",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON (for scripts)"),
) -> None:
    """Read files as Mavis's cohort import ("Import records → Child records") does, on the day of upload:
    the bytes and encoding, strict CSV, headers, the helper row, every row rule (names, dates, year
    groups for the import's academic year and the team, postcodes, URNs, NHS numbers, parent details),
    the same NHS number or child twice, and the row cap. Exit 1 if Mavis would refuse a file, or read
    its year groups as another year's. Rows are numbered as Mavis numbers them; values are never shown."""
    from datetime import date

    from sais_shared.schoolyear import academic_year_label

    from ..domain import mavis_rules as rules

    meta = (json.loads(manifest.read_text()).get("mavis_cohort_import") or {}) if manifest else {}
    meant = parse_academic_year(academic_year) if academic_year else meta.get("academic_year")
    try:
        day = date.fromisoformat(upload_date or meta.get("upload_from") or date.today().isoformat())
    except ValueError:
        raise typer.BadParameter("write the day of upload as YYYY-MM-DD", param_hint="--upload-date") from None
    import_year = rules.import_academic_year(day)
    team = _mavis_team(meta.get("team") or {}, team_schools, year_groups, register)
    results = {str(f): rules.check_file(f.read_bytes(), academic_year=import_year, team=team) for f in files}
    why = _wrong_year(day, import_year, meant)
    if why is not None:
        for c in results.values():
            c.problems.insert(0, (0, "", why))
    if as_json:
        label = academic_year_label(import_year)
        typer.echo(json.dumps({f: _mavis_json(c, label) for f, c in results.items()}, indent=2))
    else:
        _print_mavis(results, day, import_year, team)
    if not all(c.ok for c in results.values()):
        raise typer.Exit(1)


def _mavis_team(team_meta: dict, team_schools: str | None, year_groups: str | None, register: Path | None):
    """The team as Mavis knows it: the options given, else what the manifest says."""
    from sais_shared.schools import RegisterError, parse_register

    from ..domain import mavis_rules as rules

    schools = team_meta.get("schools")
    if team_schools:
        listed = Path(team_schools).read_text().split() if Path(team_schools).is_file() else team_schools.split(",")
        schools = [x for x in listed if x.strip()]
    try:
        return rules.Team(
            schools=rules.team_schools(schools) if schools is not None else None,
            year_groups=rules.parse_year_groups(year_groups)
            if year_groups
            else frozenset(team_meta.get("year_groups", rules.DEFAULT_YEAR_GROUPS)),
            known_urns=frozenset(s.urn for s in parse_register(register.read_bytes())) if register else None,
        )
    except (ValueError, RegisterError) as exc:
        raise typer.BadParameter(str(exc)) from None


def _wrong_year(day, import_year: int, meant: str | None) -> str | None:
    """Why Mavis would read the files' year groups as another year's, if it would."""
    from sais_shared.schoolyear import academic_year_label
    from sais_shared.schoolyear import parse_academic_year as academic_year_start_of

    from ..domain import mavis_rules as rules

    meant_year = academic_year_start_of(meant) if meant else None
    if meant_year is None or meant_year == import_year:
        return None
    read_as = (
        f"uploaded on {day.isoformat()}, Mavis reads the year groups as {academic_year_label(import_year)}'s, "
        f"but these files are for {meant}: "
    )
    if meant_year > import_year:
        return read_as + f"upload on or after {rules.first_upload_day(meant_year).isoformat()}"
    last = rules.last_upload_day(meant_year).isoformat()
    return read_as + f"they were for a year that has ended (last upload day {last})"


def _mavis_json(c, label: str) -> dict:
    return {
        "rows": c.rows,
        "ok": c.ok,
        "import_academic_year": label,
        "problems": [{"row": r, "column": col, "reason": why} for r, col, why in c.problems],
    }


def _print_mavis(results: dict, day, import_year: int, team) -> None:
    from sais_shared.schoolyear import academic_year_label

    out = Console(soft_wrap=True, highlight=False)  # a line per problem, however narrow the terminal
    schools = (
        "the team's schools"
        if team.schools is not None
        else "the register's schools"
        if team.known_urns is not None
        else "any school URN"
    )
    out.print(
        f"as Mavis reads an upload on {day.isoformat()} (academic year {academic_year_label(import_year)}), "
        f"for year groups {_ranges(team.year_groups)} and {schools}",
        markup=False,
    )
    for f, c in results.items():
        if c.ok:
            out.print(f"{f}: {c.rows} rows, passes Mavis's cohort-import rules", markup=False)
            continue
        out.print(
            f"{f}: {c.rows} rows, {len(c.problems)} problem(s); Mavis would refuse the file or misread it",
            style="red",
            markup=False,
        )
        for r, col, why in c.problems[:50]:
            out.print(f"  {'row ' + str(r) if r else 'file'}: {col + ' ' if col else ''}{why}", markup=False)
        if len(c.problems) > 50:
            out.print(f"  … and {len(c.problems) - 50} more (--json lists them all)")


def _ranges(years) -> str:
    """0-11, or 0-9, 11 (Reception is 0)."""
    ys, out = sorted(years), list[list[int]]()
    for y in ys:
        if out and out[-1][1] == y - 1:
            out[-1][1] = y
        else:
            out.append([y, y])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in out)
