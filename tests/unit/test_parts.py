"""Planning a batch's parts under the maximum message size (pure)."""

import pytest
from sais_delivery.domain.parts import (
    NHSMAIL_LIMIT_BYTES,
    SchoolLoad,
    Segment,
    csv_budget,
    part_suffix,
    plan_parts,
)

pytestmark = pytest.mark.unit


def school(dfe: str, rows: int, row_bytes: int = 100) -> SchoolLoad:
    return SchoolLoad(dfe, rows, rows * row_bytes, row_bytes)


def test_everything_that_fits_goes_as_one_part():
    assert plan_parts([school("a", 10), school("b", 10)], budget=10_000) == [[Segment("a"), Segment("b")]]


def test_schools_are_packed_whole_in_the_order_given():
    plan = plan_parts([school("a", 60), school("b", 60), school("c", 30)], budget=10_000)
    assert plan == [[Segment("a")], [Segment("b"), Segment("c")]]


def test_a_school_over_the_limit_alone_is_sliced_and_nothing_else_shares_its_slices():
    plan = plan_parts([school("a", 10), school("big", 250), school("c", 10)], budget=10_000)
    assert plan == [
        [Segment("a")],
        [Segment("big", 0, 100)],
        [Segment("big", 100, 100)],
        [Segment("big", 200, 100)],
        [Segment("c")],
    ]


def test_every_row_is_planned_exactly_once():
    loads = [school(f"s{i}", 1 + (i * 37) % 400, 90 + i % 50) for i in range(300)]
    plan = plan_parts(loads, budget=20_000)
    covered: dict[str, int] = {}
    for part in plan:
        assert (
            sum(
                min(s.rows - g.offset, g.limit or s.rows) * s.max_row_bytes
                for g in part
                for s in loads
                if s.school_dfe == g.school_dfe
            )
            <= 20_000
        )
        for g in part:
            s = next(x for x in loads if x.school_dfe == g.school_dfe)
            covered[g.school_dfe] = covered.get(g.school_dfe, 0) + min(s.rows - g.offset, g.limit or s.rows)
    assert covered == {s.school_dfe: s.rows for s in loads}


def test_the_default_budget_leaves_room_under_nhsmail():
    budget = csv_budget(30_000_000)
    assert 15_000_000 < budget < NHSMAIL_LIMIT_BYTES / 1.9
    with pytest.raises(ValueError):
        csv_budget(100_000)


def test_names_carry_the_part_only_when_there_are_several():
    assert part_suffix(1, 1) == "" and part_suffix(2, 3) == "-part-2-of-3"
