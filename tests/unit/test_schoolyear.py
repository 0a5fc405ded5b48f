from datetime import date

import pytest
from sais_shared.schoolyear import (
    academic_year_label,
    academic_year_start,
    age_on,
    expected_year_group,
    parse_academic_year,
    roll_forward,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("dob", "start", "expected"),
    [
        (date(2020, 8, 31), 2025, "1"),  # youngest in Year 1
        (date(2020, 9, 1), 2025, "R"),  # oldest in Reception
        (date(2010, 9, 1), 2023, "8"),  # Buckinghamshire: Y8 2023/24 = 1 Sep 2010 – 31 Aug 2011
        (date(2011, 8, 31), 2023, "8"),
        (date(2012, 2, 29), 2017, "1"),
        (date(2015, 1, 1), 2017, "N1"),
        (date(2013, 9, 1), 2017, "N2"),
    ],
)
def test_expected_year_group_uses_age_on_previous_31_august(dob, start, expected):
    assert expected_year_group(dob, start) == expected


def test_academic_year_starts_in_september():
    assert academic_year_start(date(2017, 8, 31)) == 2016
    assert academic_year_start(date(2017, 9, 1)) == 2017
    assert academic_year_label(2017) == "2017/18"
    assert academic_year_label(2099) == "2099/00"
    assert parse_academic_year("2017/18") == 2017
    assert parse_academic_year("2017-18") == 2017
    with pytest.raises(ValueError):
        parse_academic_year("2017/19")


def test_roll_forward_moves_year_groups_up():
    assert roll_forward("R", 1) == "1"
    assert roll_forward("2", 1) == "3"
    assert roll_forward("N2", 1) == "R"
    assert roll_forward("9", 0) == "9"
    with pytest.raises(ValueError):
        roll_forward("14", 1)


def test_age_on_birthday_boundary():
    assert age_on(date(2012, 5, 18), date(2017, 5, 18)) == 5
    assert age_on(date(2012, 5, 19), date(2017, 5, 18)) == 4
