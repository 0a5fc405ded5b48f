"""Does a reference date make sense for its source? A census is taken on its census day (summer: the
third Thursday in May; autumn: the first Thursday in October, as the DfE's school census guide sets
them); an admissions extract is made before the September it is for. A date outside its source's
window (give or take a tolerance), in the future, or long before the protocol came into force is
almost always a typing mistake that would reject or misplace every row, so it is refused by name."""

from __future__ import annotations

from datetime import date, timedelta

# The months each source's reference date falls in: (first month, last month), inclusive.
WINDOWS: dict[str, tuple[int, int, str]] = {
    "summer-census": (5, 5, "in May (the summer census day is the third Thursday in May)"),
    "autumn-census": (10, 10, "in October (the autumn census day is the first Thursday in October)"),
    "admissions-reception": (1, 8, "between January and August, before the September the places are for"),
    "admissions-year3-transfer": (1, 8, "between January and August, before the September the places are for"),
}


def _month_end(year: int, month: int) -> date:
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


def reference_date_problem(source: str, ref: date, *, today: date, earliest: date, tolerance_days: int) -> str | None:
    """Why ``ref`` cannot be this source's reference date, in words (None: it can)."""
    slack = timedelta(days=tolerance_days)
    if ref > today + slack:
        return f"the reference date {ref.isoformat()} is in the future (today is {today.isoformat()})"
    if ref < earliest:
        return (
            f"the reference date {ref.isoformat()} is before {earliest.isoformat()}, a year before the "
            "protocol came into force"
        )
    window = WINDOWS.get(source)
    if window is None:
        return None
    first, last, words = window
    lo, hi = date(ref.year, first, 1) - slack, _month_end(ref.year, last) + slack
    if not lo <= ref <= hi:
        return (
            f"a {source} reference date falls {words}, give or take {tolerance_days} days "
            f"({lo.isoformat()} to {hi.isoformat()} for {ref.year}); {ref.isoformat()} does not"
        )
    return None
