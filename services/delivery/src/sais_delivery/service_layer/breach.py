"""Breach workflow (ISP §16): record the incident, suspend sharing at once (§16.4), notify the
points of contact of both parties (§16.2, §16.3) by email without personal data, and track the
72 hours for deciding on notifying the Information Commissioner's Office. Closing records the
outcome and resumes sharing only by explicit decision. Every step is audited.

Notices go only to the contacts named in the protocol in force, over the same STARTTLS-only SMTP
submission as deliveries; they carry no personal data, so the recipient allow-list for pupil data
(which is about where personal data may go) does not apply to them.
"""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import structlog
from sais_shared.errors import SaisError

from ..domain.errors import SmtpRejectedError, SmtpTransientError
from .deliver import DeliveryService

log = structlog.get_logger("sais.breach")
ICO_DECISION_WINDOW = timedelta(hours=72)


class BreachError(SaisError):
    """The breach does not exist or is already closed."""


@dataclass(frozen=True)
class BreachReport:
    breach_id: uuid.UUID
    ico_decision_due: datetime
    notified: list[str]
    failed: list[str]


def _notice(
    svc: DeliveryService,
    to: str,
    breach_id: uuid.UUID,
    what: str,
    discovered_at: datetime,
    discovered_by: str,
    due: datetime,
) -> bytes:
    p = svc.protocol
    msg = EmailMessage()
    msg["From"] = svc.sender
    msg["To"] = to
    msg["Subject"] = f"[ISP §16 security incident] {p.id} v{p.version}: sharing suspended"
    msg["Date"] = format_datetime(svc.clock.now())
    msg["Message-ID"] = make_msgid(idstring=str(breach_id), domain="sais-datashare.invalid")
    msg.set_content(
        "\n".join(
            [
                f"A potential security breach has been recorded under the Information Sharing Protocol '{p.id}' "
                f"v{p.version} (ISP §16).",
                "",
                f"Incident: {breach_id}",
                f"What: {what}",
                f"Discovered: {discovered_at.isoformat()} by {discovered_by}",
                "",
                "All information sharing under this protocol has been suspended (ISP §16.4) until the parties decide to "
                "resume it.",
                f"A decision on notifying the Information Commissioner's Office is due by {due.isoformat()} (72 hours).",
                "",
                "This notice contains no personal data. Contact the protocol's points of contact (Appendix 1) for details.",
            ]
        )
    )
    return msg.as_bytes()


async def report_breach(
    svc: DeliveryService, *, what: str, discovered_at: datetime, discovered_by: str, actor: str
) -> BreachReport:
    breach_id = uuid.uuid4()
    now = svc.clock.now()
    due = discovered_at + ICO_DECISION_WINDOW
    breach = {
        "breach_id": breach_id,
        "what": what,
        "discovered_at": discovered_at,
        "discovered_by": discovered_by,
        "reported_at": now,
        "ico_decision_due": due,
    }
    async with svc.uow() as tx:
        await tx.breaches.add(breach, actor)
        await tx.audit(
            actor,
            "breach.reported",
            f"breach:{breach_id}",
            {"discovered_at": discovered_at.isoformat(), "ico_decision_due": due.isoformat()},
            svc.protocol.version,
        )
    await svc.set_suspended(True, f"breach {breach_id}", actor)  # at once, before any notice is attempted
    notified, failed = [], []
    for party in svc.protocol.parties:
        for contact in party.contacts:
            try:
                await svc.mailer.send(
                    _notice(svc, contact.email, breach_id, what, discovered_at, discovered_by, due),
                    sender=svc.sender,
                    recipient=contact.email,
                )
                notified.append(contact.email)
            except (SmtpTransientError, SmtpRejectedError) as exc:
                failed.append(contact.email)
                log.warning("breach.notice_failed", breach_id=str(breach_id), error=type(exc).__name__)
    async with svc.uow() as tx:
        await tx.breaches.notified(breach_id, notified)
        await tx.audit(
            actor,
            "breach.parties_notified",
            f"breach:{breach_id}",
            {"notified": notified, "failed": failed},
            svc.protocol.version,
        )
    return BreachReport(breach_id, due, notified, failed)


async def close_breach(
    svc: DeliveryService, breach_id: uuid.UUID, *, outcome: str, ico_notified: bool, resume: bool, actor: str
) -> None:
    async with svc.uow() as tx:
        still_open = await tx.breaches.close(
            breach_id, outcome=outcome, ico_notified=ico_notified, resume=resume, actor=actor
        )
        if still_open is None:
            raise BreachError(f"no open breach {breach_id}")
        await tx.audit(
            actor,
            "breach.closed",
            f"breach:{breach_id}",
            {"ico_notified": ico_notified, "resume": resume},
            svc.protocol.version,
        )
    if resume:
        if still_open:
            raise BreachError(f"{still_open} other breach(es) still open: sharing stays suspended")
        await svc.set_suspended(False, f"breach {breach_id} closed: decision to resume", actor)


async def open_breaches(svc: DeliveryService) -> list[dict]:
    now = svc.clock.now()
    async with svc.uow() as tx:
        rows = await tx.breaches.open()
    return [
        {**asdict(r), "hours_to_ico_decision": round((r.ico_decision_due - now).total_seconds() / 3600, 1)}
        for r in rows
    ]
