"""School years, pure: academic years, year groups and the date-of-birth rule.

The expected national curriculum year in the academic year starting 1 September ``Y`` is
``Y - birth_year - 4 - (1 if born in September or later)`` (age on the previous 31 August
minus 4): 0 → R, -1 → N2, ≤ -2 → N1 (see docs/domain.md §1).
"""

from __future__ import annotations

from datetime import date

ORDER: tuple[str, ...] = ("N1", "N2", "R", *map(str, range(1, 15)))


def academic_year_start(d: date) -> int:
    """The calendar year in which the academic year containing ``d`` began."""
    return d.year if d.month >= 9 else d.year - 1


def academic_year_label(start: int) -> str:
    return f"{start}/{(start + 1) % 100:02d}"


def parse_academic_year(label: str) -> int:
    """``'2017/18'`` or ``'2017-18'`` → 2017."""
    head, _, tail = label.replace("-", "/").partition("/")
    start = int(head)
    if tail and int(tail) != (start + 1) % 100:
        raise ValueError(f"{label!r} is not an academic year like 2017/18")
    return start


def year_index(year_group: str) -> int:
    """N1 → -2, N2 → -1, R → 0, '1'..'14' → 1..14."""
    return ORDER.index(year_group) - 2


def year_from_index(i: int) -> str:
    if i <= -2:
        return "N1"
    if i > 14:
        raise ValueError(f"year {i} is beyond Year 14")
    return ORDER[i + 2]


def roll_forward(year_group: str, years: int) -> str:
    return year_from_index(year_index(year_group) + years)


def expected_year_group(dob: date, academic_start: int) -> str:
    """The year group a child born on ``dob`` is normally in during ``academic_start``/+1."""
    return year_from_index(academic_start - dob.year - 4 - (1 if dob.month >= 9 else 0))


def age_on(dob: date, on: date) -> int:
    return on.year - dob.year - ((on.month, on.day) < (dob.month, dob.day))
