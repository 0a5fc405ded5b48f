"""Retention's deletion plan and certification rule: pure decisions, no database."""

import uuid

import pytest
from sais_retention.domain.plan import (
    RULE_TRANSFER,
    RULE_UNDELIVERED,
    ScheduledDeletion,
    awaiting,
    merge_counts,
    plan_deletion,
)

pytestmark = pytest.mark.unit

X1, X2, K1, K2 = (uuid.uuid4() for _ in range(4))
B1, B2 = uuid.uuid4(), uuid.uuid4()


def transfer(batch, extracts, keys):
    return ScheduledDeletion(f"batch:{batch}", RULE_TRANSFER, extracts, keys)


def test_a_due_transfer_deletes_its_extracts_keys_and_batch():
    plan = plan_deletion(transfer(B1, [X1, X2], [K1, K2]), [])
    assert (plan.extract_ids, plan.key_ids, plan.batch_ids, plan.covered) == ([X1, X2], [K1, K2], [B1], False)


def test_data_a_later_live_transfer_also_carried_is_kept_until_that_transfer_is_due():
    plan = plan_deletion(transfer(B1, [X1, X2], [K1, K2]), [transfer(B2, [X2], [K2])])
    assert plan.extract_ids == [X1] and plan.key_ids == [K1]
    assert plan.keys_retained == {str(K2): f"batch:{B2}"}


def test_an_undelivered_extract_that_was_delivered_after_all_is_left_to_the_transfer():
    due = ScheduledDeletion(f"extract:{X1}", RULE_UNDELIVERED, [X1], [K1])
    assert plan_deletion(due, [transfer(B1, [X1], [K1])]).covered
    assert not plan_deletion(due, []).covered


def test_a_transfer_does_not_keep_data_for_itself():
    due = transfer(B1, [X1], [K1])
    assert plan_deletion(due, [due]).key_ids == [K1]


def test_the_certificate_waits_for_every_owner_and_adds_up_their_counts():
    owners = ["ingest", "eligibility", "delivery"]
    assert awaiting(owners, ["ingest"]) == ["eligibility", "delivery"]
    assert awaiting(owners, ["delivery", "ingest", "eligibility"]) == []
    counts = merge_counts(
        {"ingest": {"ingest.row_keys": 3}, "delivery": {"delivery.members": 2, "delivery.batches": 1}}
    )
    assert counts == {"delivery.batches": 1, "delivery.members": 2, "ingest.row_keys": 3}
