"""Anonymised statistics for "further statistical purposes" (ISP §2.4): counts per programme ×
school × year group × sex, with small numbers suppressed.

Primary suppression hides every count from 1 to ``threshold - 1``. Secondary suppression then
makes sure no published total gives a hidden count away: in every line of the table (a row with
its row total, a column with its column total) a lone hidden cell forces a second one to be
hidden — the smallest other non-zero count in that line, else the line's total. Repeated until
no line has exactly one hidden cell.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field

from sais_shared.files import safe_cell

SEXES = ("F", "M", "U")
TOTAL = "total"


@dataclass
class Table:
    """One programme: rows are (school, year group), columns F, M, U and total; plus a totals row."""

    programme: str
    cells: dict[tuple, dict[str, int]] = field(default_factory=dict)  # row key → column → count
    hidden: set[tuple[tuple, str]] = field(default_factory=set)

    TOTALS_ROW: tuple = ("", "all")


def build_tables(counts: list[tuple[str, str, str, str, int]]) -> dict[str, Table]:
    """``counts``: (programme, school, year group, sex, n) → one table per programme, with margins."""
    tables: dict[str, Table] = {}
    for programme, school, year_group, sex, n in counts:
        t = tables.setdefault(programme, Table(programme))
        row = t.cells.setdefault((school, year_group), {c: 0 for c in (*SEXES, TOTAL)})
        row[sex] += n
    for t in tables.values():
        tot = {c: 0 for c in (*SEXES, TOTAL)}
        for row in t.cells.values():
            row[TOTAL] = sum(row[s] for s in SEXES)
            for c in (*SEXES, TOTAL):
                tot[c] += row[c]
        t.cells[Table.TOTALS_ROW] = tot
    return tables


def _lines(t: Table) -> list[list[tuple[tuple, str]]]:
    rows = [[(r, c) for c in (*SEXES, TOTAL)] for r in t.cells]
    cols = [[(r, c) for r in t.cells] for c in (*SEXES, TOTAL)]
    return rows + cols


def suppress(t: Table, threshold: int = 5) -> Table:
    for r, row in t.cells.items():
        for c, n in row.items():
            if 0 < n < threshold:
                t.hidden.add((r, c))
    changed = True
    while changed:
        changed = False
        for line in _lines(t):
            hidden = [cell for cell in line if cell in t.hidden]
            if len(hidden) != 1:
                continue
            candidates = sorted(
                (t.cells[r][c], c == TOTAL or r == Table.TOTALS_ROW, (r, c))
                for r, c in line
                if (r, c) not in t.hidden and t.cells[r][c] > 0
            )
            inner = [x for x in candidates if not x[1]]
            pick = (inner or candidates or [(0, True, next(x for x in line if x not in t.hidden))])[0][2]
            t.hidden.add(pick)
            changed = True
    return t


def render_csv(tables: dict[str, Table], *, academic_year: str, threshold: int, school_names: dict[str, str]) -> str:
    buf = io.StringIO()
    buf.write(
        f"# Anonymised statistics, {academic_year}: counts of children per programme, school, year group and sex.\n"
    )
    buf.write(
        "# Contains NO personal data (ISP §2.4). Counts from 1 to "
        f"{threshold - 1} are suppressed and shown as 'c'; further cells are suppressed so that no total can "
        "reveal them.\n"
    )
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["programme", "school_dfe", "school_name", "year_group", *SEXES, TOTAL])
    for name in sorted(tables):
        t = tables[name]
        for r in sorted(t.cells, key=lambda k: (k == Table.TOTALS_ROW, k)):
            school, yg = r
            w.writerow(
                [
                    name,
                    school,
                    safe_cell(school_names.get(school, "all schools" if not school else "")),
                    yg,
                    *("c" if (r, c) in t.hidden else str(t.cells[r][c]) for c in (*SEXES, TOTAL)),
                ]
            )
    return buf.getvalue()
