"""Delivery's guards as a pure function: which condition refuses a batch, and in which order."""

from datetime import UTC, date, datetime

import pytest
from sais_delivery.domain.errors import (
    RecipientNotAllowedError,
    ReviewOverdueError,
    SharingSuspendedError,
    StaleDataError,
    TransferMethodNotAllowedError,
)
from sais_delivery.domain.guards import Sharing, may_send, stale_before, stale_refusal
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit

PROTOCOL = load_protocol()
IN_TIME = PROTOCOL.review_date  # the last day before the review is overdue
LATE = date(PROTOCOL.review_date.year + 1, 1, 1)
OK = "ann.curzons@nhs.net"
OPEN = Sharing(False)


def test_an_allow_listed_recipient_on_time_with_sharing_open_may_be_sent_to():
    verdict = may_send(PROTOCOL, OK, OPEN, IN_TIME, None)
    assert verdict.refusal is None and not verdict.review_overridden


@pytest.mark.parametrize("recipient", ["someone@gmail.com", "a@nhs.net.evil.com", "a@nhs.net, b@gmail.com"])
def test_a_recipient_outside_the_allow_list_is_refused_and_named(recipient):
    verdict = may_send(PROTOCOL, recipient, OPEN, IN_TIME, None)
    assert isinstance(verdict.refusal, RecipientNotAllowedError) and verdict.details == {"recipient": recipient}


def test_suspended_sharing_is_refused_with_its_reason():
    verdict = may_send(PROTOCOL, OK, Sharing(True, "breach B-1"), IN_TIME, None)
    assert isinstance(verdict.refusal, SharingSuspendedError) and "breach B-1" in str(verdict.refusal)


def test_an_overdue_review_refuses_unless_overridden_with_a_reason():
    assert isinstance(may_send(PROTOCOL, OK, OPEN, LATE, None).refusal, ReviewOverdueError)
    assert isinstance(may_send(PROTOCOL, OK, OPEN, LATE, "").refusal, ReviewOverdueError)
    overridden = may_send(PROTOCOL, OK, OPEN, LATE, "review meeting held 1 May, minutes filed")
    assert overridden.refusal is None and overridden.review_overridden


def test_an_unsupported_transfer_method_is_refused_first():
    other = PROTOCOL.model_copy(update={"transfer": PROTOCOL.transfer.model_copy(update={"method": "egress"})})
    verdict = may_send(other, "someone@gmail.com", Sharing(True, "x"), LATE, None)
    assert isinstance(verdict.refusal, TransferMethodNotAllowedError)


def test_the_checks_come_in_the_order_an_operator_fixes_them():
    # a bad recipient is reported before a suspension, a suspension before an overdue review
    assert isinstance(
        may_send(PROTOCOL, "x@gmail.com", Sharing(True, "r"), LATE, None).refusal, RecipientNotAllowedError
    )
    assert isinstance(may_send(PROTOCOL, OK, Sharing(True, "r"), LATE, None).refusal, SharingSuspendedError)


def test_stale_data_is_named_by_extract():
    assert stale_refusal([], 6).refusal is None
    verdict = stale_refusal(["e1", "e2"], 6)
    assert isinstance(verdict.refusal, StaleDataError) and verdict.details == {"extracts": ["e1", "e2"]}
    assert "e1, e2" in str(verdict.refusal)
    assert stale_before(datetime(2018, 3, 31, tzinfo=UTC), 6) == datetime(2017, 9, 30, tzinfo=UTC)
