"""The cohort diff as a pure function: what a child's memberships now are against what was published."""

import pytest
from sais_eligibility.domain.cohort import Change, Held, diff_cohort

pytestmark = pytest.mark.unit


def test_a_new_membership_is_added_at_revision_one():
    assert diff_cohort({"flu": "fp1"}, {}) == [Change("flu", "added", 1)]


def test_an_unchanged_membership_gives_no_change():
    assert diff_cohort({"flu": "fp1"}, {"flu": Held("active", "fp1", 3)}) == []


def test_changed_details_are_an_update_at_the_next_revision():
    assert diff_cohort({"flu": "fp2"}, {"flu": Held("active", "fp1", 3)}) == [Change("flu", "updated", 4)]


def test_a_membership_no_longer_wanted_is_withdrawn_once():
    assert diff_cohort({}, {"flu": Held("active", "fp1", 2)}) == [Change("flu", "withdrawn", 3)]
    assert diff_cohort({}, {"flu": Held("withdrawn", "fp1", 3)}) == []


def test_a_withdrawn_child_who_qualifies_again_is_added_not_updated():
    assert diff_cohort({"flu": "fp1"}, {"flu": Held("withdrawn", "fp1", 3)}) == [Change("flu", "added", 4)]


def test_adds_and_updates_come_before_withdrawals_in_programme_order():
    held = {"hpv-dose-1": Held("active", "a", 1), "td-ipv": Held("active", "b", 1), "menacwy": Held("active", "c", 1)}
    wanted = {"menacwy": "c2", "flu": "d"}
    assert diff_cohort(wanted, held) == [
        Change("flu", "added", 1),
        Change("menacwy", "updated", 2),
        Change("hpv-dose-1", "withdrawn", 2),
        Change("td-ipv", "withdrawn", 2),
    ]
