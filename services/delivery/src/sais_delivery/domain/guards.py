"""Whether a batch may go, decided from facts alone (no database, no clock): the protocol in force,
the recipient, the suspension switch, the review date and how old the data is. The service layer
gathers the facts, audits a refusal and raises it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from dateutil.relativedelta import relativedelta
from sais_shared.errors import ConfigurationError
from sais_shared.protocol import Protocol, recipient_allowed
from sais_shared.schoolyear import academic_year_label

from .errors import (
    DeliveryRefusedError,
    RecipientNotAllowedError,
    ReviewOverdueError,
    SharingSuspendedError,
    StaleDataError,
    TransferMethodNotAllowedError,
)

SUPPORTED_METHODS = ("smime-email",)


@dataclass(frozen=True)
class Sharing:
    suspended: bool
    reason: str | None = None


@dataclass(frozen=True)
class Verdict:
    refusal: DeliveryRefusedError | None = None
    details: dict | None = None  # audited with a refusal
    review_overridden: bool = False  # the send goes ahead on an operator's stated reason


def may_send(protocol: Protocol, recipient: str, sharing: Sharing, today: date, override_review: str | None) -> Verdict:
    """The first reason a batch must not be sent, checked in the order an operator fixes them."""
    method = protocol.transfer.method
    if method not in SUPPORTED_METHODS:
        return Verdict(TransferMethodNotAllowedError(f"transfer method {method!r} is not supported"))
    domains = protocol.transfer.allowed_recipient_domains
    if not recipient_allowed(recipient, domains):
        return Verdict(
            RecipientNotAllowedError(
                f"{recipient!r} is not one e-mail address in an allow-listed domain {domains} "
                "(ISP §7.2, §8.2, §8.3); nothing was sent"
            ),
            {"recipient": recipient},
        )
    if sharing.suspended:
        return Verdict(
            SharingSuspendedError(
                f"sharing is suspended (ISP §16.4): {sharing.reason}; an operator must resume it first"
            )
        )
    if protocol.review_overdue(today):
        if not override_review:
            return Verdict(
                ReviewOverdueError(
                    f"protocol v{protocol.version} was due for review on {protocol.review_date} (ISP §15); "
                    "load a reviewed version, or pass an override with a reason"
                )
            )
        return Verdict(review_overridden=True)
    return Verdict()


def stale_before(now: datetime, staleness_months: int) -> datetime:
    """Data received before this instant is too old to share (ISP §9.5)."""
    return now - relativedelta(months=staleness_months)


def stale_refusal(stale_extracts: list[str], staleness_months: int) -> Verdict:
    if not stale_extracts:
        return Verdict()
    return Verdict(
        StaleDataError(
            f"data held for longer than {staleness_months} months (ISP §9.5) from extract(s) "
            f"{', '.join(stale_extracts)}: ingest a refreshed extract before delivering"
        ),
        {"extracts": stale_extracts},
    )


def recipient_for(protocol: Protocol, sender: str | None, recipient: str | None) -> str:
    """Who a batch goes to: the one named (``--recipient``, then SAIS_DELIVERY_RECIPIENT), else the
    protocol's first recipient; with a sender to send as."""
    recipient = recipient or next(iter(protocol.transfer.recipients), None)
    if not sender:
        raise ConfigurationError("no sender address: set SAIS_DELIVERY_SENDER_ADDRESS (the authority's mailbox)")
    if recipient is None:
        raise ConfigurationError(
            f"no recipient: protocol {protocol.id} v{protocol.version} names none; set SAIS_DELIVERY_RECIPIENT (or "
            f"--recipient) to the SAIS team's mailbox, within {', '.join(protocol.transfer.allowed_recipient_domains)}"
        )
    return recipient


def due_windows(protocol: Protocol, today: date) -> list[tuple[str, str]]:
    """(window, academic year) of every window whose month it is: July sends the coming year, December the
    current one."""
    return [
        (w.name, academic_year_label(today.year if w.month >= 7 else today.year - 1))
        for w in protocol.transfer.windows
        if w.month == today.month
    ]
