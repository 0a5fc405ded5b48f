from datetime import date

import pytest
from sais_retention.domain.schedule import due_date

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("transfer", "due"),
    [
        (date(2017, 5, 31), date(2017, 8, 31)),
        (date(2017, 11, 30), date(2018, 2, 28)),
        (date(2019, 11, 30), date(2020, 2, 29)),
        (date(2017, 7, 10), date(2017, 10, 10)),
        (date(2017, 12, 31), date(2018, 3, 31)),
    ],
)
def test_due_is_transfer_plus_three_calendar_months(transfer, due):
    assert due_date(transfer, 3) == due
