"""How the CLI's screens are drawn for a person: tables that fit the terminal without cutting a word or
an id in two (a column is never narrower than its longest word; other text wraps between words), a
one-line summary above each table, and "none" where there is nothing to list. ``--json`` is for scripts."""

from __future__ import annotations

import textwrap
from collections.abc import Iterable, Sequence
from datetime import date, datetime

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .cli_options import local_time

NONE = "none"


def cell(value: object) -> str:
    """A value as a person reads it: times in Europe/London to the minute, nothing as "—"."""
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        return local_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return "\n".join(cell(v) for v in value) if value else "—"
    return str(value)


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[object]], width: int | None = None) -> Table:
    """A table whose columns are each at least as wide as their longest word (an id is one word), so that
    rich wraps between words and never cuts one; within ``width`` the room left is shared out by what each
    column would need on one line. Values are shown as text, never as markup."""
    shown = [[cell(v) for v in row] for row in rows]
    least, most = [], []
    for i, header in enumerate(headers):
        lines = [line for row in shown for line in row[i].splitlines()] + [header]
        least.append(max(len(w) for line in lines for w in (line.split() or [""])))
        most.append(max(len(line) for line in lines))
    widths = _share(least, most, None if width is None else width - 3 * len(headers) - 1)
    t = Table(title=title, title_justify="left", highlight=False)
    for header, lo, w in zip(headers, least, widths, strict=True):
        t.add_column(header, min_width=lo, width=w, overflow="fold")
    for row in shown:
        t.add_row(*(escape(v) for v in row))
    return t


def _share(least: list[int], most: list[int], room: int | None) -> list[int | None]:
    """Column widths: as wide as needed when it all fits; else each column's least, and the rest of the
    room shared out in proportion to what each would still need."""
    if room is None or sum(most) <= room:
        return [None] * len(least)
    spare, wants = max(room - sum(least), 0), [m - lo for lo, m in zip(least, most, strict=True)]
    total = sum(wants) or 1
    return [lo + spare * w // total for lo, w in zip(least, wants, strict=True)]


def show(
    out: Console, title: str, headers: Sequence[str], rows: Iterable[Sequence[object]], summary: str | None = None
) -> None:
    """The summary line, then the table, or the title and "none" when there are no rows."""
    rows = list(rows)
    if summary:
        out.print(summary, markup=False, highlight=False)
    if not rows:
        out.print(f"{title}: {NONE}", markup=False, highlight=False)
        return
    t = table(title, headers, rows, out.width)
    if sum(c.min_width or 1 for c in t.columns) + 3 * len(t.columns) + 1 <= out.width:  # padding and rules
        out.print(t)
        return
    # Too narrow a terminal for the table without cutting a word: one block per row instead.
    out.print(title, markup=False, highlight=False, style="italic")
    width = max(len(h) for h in headers)
    for row in rows:
        for header, value in zip(headers, row, strict=True):
            room = out.width - width - 4
            lines = [
                part
                for line in (cell(value).splitlines() or ["—"])
                for part in (textwrap.wrap(line, room, break_long_words=False, break_on_hyphens=False) or [""])
            ]
            if any(len(w) > room for line in lines for w in line.split()):
                # a word (an id) too long to follow its name: under it, whole; the terminal wraps it if it must
                out.print(f"  {header}", markup=False, highlight=False)
                for line in lines:
                    out.print(f"    {line}", markup=False, highlight=False, soft_wrap=True)
                continue
            out.print(f"  {header:<{width}}  {lines[0]}", markup=False, highlight=False, soft_wrap=True)
            for more in lines[1:]:
                out.print(f"  {'':<{width}}  {more}", markup=False, highlight=False, soft_wrap=True)
        out.print()


def console(wide: bool = False) -> Console:
    """stdout for a person: the terminal's width (``--wide``: as wide as the longest line needs)."""
    return Console(width=100_000 if wide else None, highlight=False, soft_wrap=wide)


def plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
