"""When data must go (ISP §11.1): the transfer date plus the retention period, in calendar months.

31 May + 3 months = 31 August; 30 November + 3 months = 28 (or 29) February: a day that does
not exist in the target month becomes that month's last day.
"""

from __future__ import annotations

from datetime import date

from dateutil.relativedelta import relativedelta


def due_date(transferred: date, months: int) -> date:
    return transferred + relativedelta(months=months)
