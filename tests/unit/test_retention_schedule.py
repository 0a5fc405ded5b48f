from datetime import UTC, date, datetime

import pytest
from sais_shared.protocol import load_protocol, months_after

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
    assert months_after(transfer, 3) == due
    protocol = load_protocol()  # the one rule retention schedules by and delivery writes into every file
    assert protocol.retention_months == 3
    assert protocol.delete_by(transfer) == due
    assert protocol.delete_by(datetime.combine(transfer, datetime.min.time(), UTC).replace(hour=9)) == due
