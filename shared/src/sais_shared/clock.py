"""Business clock: the wall clock, or a fixed date for demos and tests (``SAIS_AS_OF``)."""

from __future__ import annotations

from datetime import UTC, date, datetime


class Clock:
    def __init__(self, as_of: date | None = None) -> None:
        self._as_of = as_of

    def now(self) -> datetime:
        if self._as_of is None:
            return datetime.now(UTC)
        # A fixed business date still advances within the day so ordering stays meaningful.
        wall = datetime.now(UTC)
        return datetime.combine(self._as_of, wall.timetz())

    def today(self) -> date:
        return self.now().date()
