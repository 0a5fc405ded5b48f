"""Files for NHS England's "Manage vaccinations in schools" (Mavis): its cohort import. Pure.

Mavis refuses a whole cohort-import file when one row is bad, so a row that Mavis would refuse is never
written: it is left out and reported (by school and reason, never by value). The rules are Mavis's own,
read from its source (``mavis_rules``); docs/mavis.md lists them beside what we write.

The year group written is the one for the file's academic year, and Mavis reads it against the academic
year of the day of upload: from 1 August, the coming year. So a file for 2017/18 is uploaded from
1 August 2017 (the manifest says so); uploaded in July, every child would be stored a year older.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date

from sais_shared.protocol import Protocol
from sais_shared.schoolyear import academic_year_label

from . import mavis_rules as rules
from .mavis_rules import MAX_ROWS, URN_UNKNOWN, Team
from .render import line_writer, safe_cell

MAVIS_COLUMNS = [
    "CHILD_FIRST_NAME",
    "CHILD_LAST_NAME",
    "CHILD_PREFERRED_FIRST_NAME",
    "CHILD_PREFERRED_LAST_NAME",
    "CHILD_DATE_OF_BIRTH",
    "CHILD_YEAR_GROUP",
    "CHILD_REGISTRATION",
    "CHILD_NHS_NUMBER",
    "CHILD_GENDER",
    "CHILD_ADDRESS_LINE_1",
    "CHILD_ADDRESS_LINE_2",
    "CHILD_TOWN",
    "CHILD_POSTCODE",
    "CHILD_SCHOOL_URN",
    *(f"PARENT_{i}_{f}" for i in (1, 2) for f in ("NAME", "RELATIONSHIP", "EMAIL", "PHONE")),
]
DEFAULT_FILE_ROWS = 10_000  # Mavis's guide: files over 10,000 rows can fail; split them
GENDERS = {"M": "Male", "F": "Female", "U": "Not known"}

# Ceremonial counties of England: a trailing address line that is one of these is the county, which
# Mavis has no column for (its columns are two address lines and a town).
COUNTIES = frozenset(
    c.casefold()
    for c in (
        "Bedfordshire",
        "Berkshire",
        "Bristol",
        "Buckinghamshire",
        "Cambridgeshire",
        "Cheshire",
        "City of London",
        "Cornwall",
        "Cumbria",
        "Derbyshire",
        "Devon",
        "Dorset",
        "Durham",
        "County Durham",
        "East Riding of Yorkshire",
        "East Sussex",
        "Essex",
        "Gloucestershire",
        "Greater London",
        "Greater Manchester",
        "Hampshire",
        "Herefordshire",
        "Hertfordshire",
        "Isle of Wight",
        "Kent",
        "Lancashire",
        "Leicestershire",
        "Lincolnshire",
        "Merseyside",
        "Norfolk",
        "North Yorkshire",
        "Northamptonshire",
        "Northumberland",
        "Nottinghamshire",
        "Oxfordshire",
        "Rutland",
        "Shropshire",
        "Somerset",
        "South Yorkshire",
        "Staffordshire",
        "Suffolk",
        "Surrey",
        "Tyne and Wear",
        "Warwickshire",
        "West Midlands",
        "West Sussex",
        "West Yorkshire",
        "Wiltshire",
        "Worcestershire",
    )
)


@dataclass(frozen=True)
class Child:
    """What a Mavis cohort row is made from (the programme file's row, and the school's URN)."""

    forename: str
    surname: str
    date_of_birth: date
    year_group: str
    gender: str
    address_lines: list[str]
    postcode: str
    urn: str


def year_group_cell(year_group: str) -> str:
    """Mavis's year group is a number: Reception is 0, the nursery years -1 (N2) and -2 (N1)."""
    return {"R": "0", "N2": "-1", "N1": "-2"}.get(year_group, year_group)


def address_cells(lines: list[str]) -> tuple[str, str, str]:
    """(line 1, line 2, town) from the source's address lines: a trailing county is dropped, the last
    line left is the town, and the lines between are joined into line 2."""
    rest = [x.strip() for x in lines if x.strip()]
    while len(rest) > 1 and rest[-1].casefold() in COUNTIES:
        rest.pop()
    if len(rest) <= 1:
        return (rest[0] if rest else "", "", "")
    return rest[0], ", ".join(rest[1:-1]), rest[-1]


def cells(c: Child) -> list[str]:
    line1, line2, town = address_cells(c.address_lines)
    values = {
        "CHILD_FIRST_NAME": c.forename,
        "CHILD_LAST_NAME": c.surname,
        "CHILD_DATE_OF_BIRTH": c.date_of_birth.isoformat(),
        "CHILD_YEAR_GROUP": year_group_cell(c.year_group),
        "CHILD_GENDER": GENDERS.get(c.gender, "Not known"),
        "CHILD_ADDRESS_LINE_1": line1,
        "CHILD_ADDRESS_LINE_2": line2,
        "CHILD_TOWN": town,
        "CHILD_POSTCODE": c.postcode,
        "CHILD_SCHOOL_URN": c.urn,
    }
    return [values.get(col, "") for col in MAVIS_COLUMNS]


# --- writing the files ---------------------------------------------------------------------------


_csv_line = line_writer()  # minimal quoting, as Mavis's own templates are written


def mavis_line(c: Child) -> str:
    """One row as CSV (minimal quoting, as Mavis's own templates are written), formula-safe: a cell
    that could start a spreadsheet formula (only an address line can: names and dates are checked)
    is kept text."""
    return _csv_line([safe_cell(v) for v in cells(c)])


def header_line() -> str:
    return _csv_line(list(MAVIS_COLUMNS))


def split_by_school(counts: Iterable[tuple[str, int]], cap: int = MAX_ROWS) -> Iterator[list[tuple[str, int, int]]]:
    """Files of at most ``cap`` rows from (school, rows) in order: whole schools together; a school
    larger than ``cap`` alone, in slices. Yields each file's (school, first row, end row) segments."""
    current: list[tuple[str, int, int]] = []
    size = 0
    for school, n in counts:
        if n > cap:
            if current:
                yield current
                current, size = [], 0
            for lo in range(0, n, cap):
                yield [(school, lo, min(n, lo + cap))]
            continue
        if size + n > cap:
            yield current
            current, size = [], 0
        current.append((school, 0, n))
        size += n
    if current:
        yield current


@dataclass(frozen=True)
class Upload:
    """The Mavis import a file is written for: the academic year its year groups are for (2017 for
    2017/18), the SAIS team's schools and year groups, and the most rows a file may hold."""

    academic_year: int
    team: Team = field(default_factory=Team)
    max_rows: int = DEFAULT_FILE_ROWS

    @property
    def label(self) -> str:
        return academic_year_label(self.academic_year)

    def upload_window(self, sent: date) -> tuple[date, date]:
        """(first, last) day an upload is read against this academic year: from its 1 August (or the day
        the file was sent, if later) to the next 31 July."""
        return max(rules.first_upload_day(self.academic_year), sent), rules.last_upload_day(self.academic_year)


def upload_for(protocol: Protocol, academic_year: int, max_rows: int = DEFAULT_FILE_ROWS) -> Upload:
    """The Mavis import a batch's files are for: its academic year, the team the protocol names, and the rows a
    file may hold."""
    t = protocol.transfer.mavis_team
    schools = frozenset(t.schools) if t.schools is not None else None
    return Upload(academic_year, Team(schools, frozenset(t.year_groups)), max_rows)


@dataclass(frozen=True)
class Verdict:
    """A row's Mavis line (keyed by school and child, to sort, split and find the same child twice), or
    why it is left out."""

    line: bytes | None
    reason: str | None = None


SAME_CHILD = "the same child (names and date of birth) is already in the file: Mavis would fail the whole import"


def child_of(row, urn: str) -> Child:
    return Child(
        row.forename,
        row.surname,
        row.date_of_birth,
        row.year_group,
        row.gender,
        list(row.address_lines),
        row.postcode,
        urn,
    )


def school_urn(school_dfe: str, register: dict[str, tuple[str, str]]) -> tuple[str | None, str | None]:
    """(URN, None) for the row's school, or (None, why it has none). ``register``: DfE → (URN, status)."""
    if not school_dfe:
        return URN_UNKNOWN, None  # the school is not yet known (a child who left their May school)
    entry = register.get(school_dfe)
    if entry is None:
        return None, "school not in the schools register (no URN)"
    urn, status = entry
    if status.casefold().startswith("closed"):
        return None, "school closed in the schools register"
    return urn, None


def as_mavis_reads(values: list[str]) -> rules.Data:
    """The row as Mavis holds it after reading our CSV: empty cells absent, white space normalised."""
    return {
        col.lower(): rules.normalise_whitespace(v) for col, v in zip(MAVIS_COLUMNS, values, strict=True) if v.strip()
    }


def verdict(row, register: dict[str, tuple[str, str]], upload: Upload) -> Verdict:
    """The Mavis line for a programme-file row, or the first reason Mavis would refuse it."""
    urn, why = school_urn(row.school_dfe, register)
    if urn is None:
        return Verdict(None, why)
    c = child_of(row, urn)
    values = [safe_cell(v) for v in cells(c)]
    errors = rules.row_errors(as_mavis_reads(values), academic_year=upload.academic_year, team=upload.team)
    if errors:
        return Verdict(None, str(errors[0]))
    key = "\x00".join((row.school_dfe, row.surname.casefold(), row.forename.casefold(), row.date_of_birth.isoformat()))
    return Verdict(key.replace("\x01", "").encode() + b"\x01" + _csv_line(values).encode())


def line_bytes(row) -> int:
    """Bytes a row takes in a Mavis file (planning a part's size; a URN is 6 digits and at most a site letter)."""
    return len(mavis_line(child_of(row, URN_UNKNOWN + "A")).encode())


def files_from_lines(
    stem: str, lines: list[bytes], max_rows: int = DEFAULT_FILE_ROWS
) -> tuple[list[tuple[str, bytes, int]], list[str]]:
    """(name, content, rows) of the Mavis files of ``lines`` (from ``verdict``, sorted here in place):
    whole schools per file, at most ``max_rows`` rows each, ``stem``-1of2.csv when split; and the school
    of each line left out because the same child is already in the programme's files (the first in
    school order is kept)."""
    lines.sort()
    seen: set[bytes] = set()
    kept: list[bytes] = []
    repeated: list[str] = []
    for kl in lines:
        prefix = kl.split(b"\x01", 1)[0]
        school_of, child = prefix.split(b"\x00", 1)
        if child in seen:
            repeated.append(school_of.decode())
            continue
        seen.add(child)
        kept.append(kl)
    del seen
    counts: list[tuple[str, int]] = []
    for kl in kept:
        school = kl.split(b"\x00", 1)[0].decode()
        if counts and counts[-1][0] == school:
            counts[-1] = (school, counts[-1][1] + 1)
        else:
            counts.append((school, 1))
    starts: dict[str, int] = {}
    at = 0
    for school, n in counts:
        starts[school] = at
        at += n
    chunks = list(split_by_school(counts, min(max_rows, MAX_ROWS)))  # none when no row passed: Mavis refuses
    # a file of a header alone
    out = []
    for k, segments in enumerate(chunks, 1):
        body = [header_line().encode()]
        rows = 0
        for school, lo, hi in segments:
            for kl in kept[starts[school] + lo : starts[school] + hi]:
                body.append(kl.split(b"\x01", 1)[1])
                rows += 1
        name = f"{stem}.csv" if len(chunks) == 1 else f"{stem}-{k}of{len(chunks)}.csv"
        out.append((name, b"".join(body), rows))
    return out, repeated
