"""Option values as the ``sais`` commands read them: one spelling each, checked when the command line is
parsed (a bad value is exit 2 with a hint, before anything connects).

- a date is ``YYYY-MM-DD`` (a refusal never echoes the value: it may be a date of birth);
- a time is ISO 8601; one without a zone is Europe/London time (what an operator in England means);
- an academic year is ``YYYY/YY`` of two consecutive years (``2017/18``).

And times as a person reads them: Europe/London, to the minute, with the zone (:func:`local_time`);
``--json`` keeps ISO 8601 with its offset.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

import typer

LONDON = ZoneInfo("Europe/London")
_YEAR = re.compile(r"(\d{4})/(\d{2})")


def parse_date(value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter("not a date: write YYYY-MM-DD, e.g. 2017-10-11") from None


def parse_when(value: str) -> datetime:
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise typer.BadParameter(
            "not a date and time: write YYYY-MM-DDTHH:MM (Europe/London unless a zone is given), "
            "e.g. 2017-10-11T09:30 or 2017-10-11T08:30+00:00"
        ) from None
    return when if when.tzinfo else when.replace(tzinfo=LONDON)


def local_time(when: datetime | str | None, missing: str = "—") -> str:
    """``2017-07-10 20:34 BST``: a moment as an operator in England reads it (GMT or BST as the day was).
    Takes a datetime or its ISO 8601 text (as a JSON column gives it)."""
    if when is None:
        return missing
    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if when.tzinfo is None:  # a naive time from a database or a test is UTC
        when = when.replace(tzinfo=ZoneInfo("UTC"))
    return when.astimezone(LONDON).strftime("%Y-%m-%d %H:%M %Z")


def parse_academic_year(value: str) -> str:
    m = _YEAR.fullmatch(value.strip())
    if m and (int(m[1]) + 1) % 100 == int(m[2]):
        return m.group(0)
    hint = ""
    loose = re.fullmatch(r"(\d{4})\s*[-–_ ]\s*(\d{2}|\d{4})", value.strip())
    if loose:
        hint = f" (did you mean {loose[1]}/{(int(loose[1]) + 1) % 100:02d}?)"
    raise typer.BadParameter(f"{value!r} is not an academic year: write YYYY/YY, e.g. 2017/18{hint}")


__all__ = ["LONDON", "local_time", "parse_academic_year", "parse_date", "parse_when"]


def working(what: str):
    """A spinner with ``what`` on stderr while a long command works, when a person is watching (stderr is a
    terminal); nothing otherwise, so scripts and --json output stay clean."""
    import contextlib
    import sys

    from rich.console import Console

    if not sys.stderr.isatty():
        return contextlib.nullcontext()
    return Console(stderr=True).status(what)
