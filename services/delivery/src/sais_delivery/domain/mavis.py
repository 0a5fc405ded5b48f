"""Files for NHS England's "Manage vaccinations in schools" (Mavis): its cohort import, and a checker
that applies that import's rules. Pure.

Mavis refuses a whole cohort-import file when one row is bad, so a row that Mavis would reject is
never written: it is left out and reported (by school and reason, never by value). The columns and
rules are Mavis's own (its import format page and ``CohortImportRow``/``PatientImportRow``), restated
in docs/mavis.md:

- ``CHILD_FIRST_NAME``, ``CHILD_LAST_NAME``: required, at most 300 characters, letters (accents
  allowed), hyphens, apostrophes and spaces only.
- ``CHILD_DATE_OF_BIRTH``: required, ``DD/MM/YYYY`` or ``YYYY-MM-DD`` (we write the second).
- ``CHILD_YEAR_GROUP``: optional, a number; Reception is 0.
- ``CHILD_GENDER``: optional, one of ``Male``, ``Female``, ``Not known``, ``Not specified``.
- ``CHILD_POSTCODE``: required, a valid postcode.
- ``CHILD_SCHOOL_URN``: required, 6 digits; ``888888`` for school unknown, ``999999`` for
  home-educated; otherwise a school Mavis knows (a URN from Get Information about Schools).
- At most 20,000 rows in one file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from sais_shared.postcode import is_valid_postcode, normalise_postcode

from .render import safe_cell

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
REQUIRED = ("CHILD_FIRST_NAME", "CHILD_LAST_NAME", "CHILD_DATE_OF_BIRTH", "CHILD_POSTCODE", "CHILD_SCHOOL_URN")
MAX_ROWS = 20_000
MAX_FIELD_LENGTH = 300
URN_UNKNOWN = "888888"
URN_HOME_EDUCATED = "999999"
GENDERS = {"M": "Male", "F": "Female", "U": "Not known"}
MAVIS_GENDERS = {"male", "female", "not known", "not specified"}
_NAME = re.compile(r"[^\W\d_]+(?:[ '’-]+[^\W\d_]+)*['’]?", re.UNICODE)
_URN = re.compile(r"\d{6}")
_YEAR = re.compile(r"\d{1,2}")

# Ceremonial counties of England: a trailing address line that is one of these is the county, which
# Mavis has no column for (its columns are two address lines and a town).
COUNTIES = frozenset(
    c.casefold()
    for c in (
        "Bedfordshire", "Berkshire", "Bristol", "Buckinghamshire", "Cambridgeshire", "Cheshire",
        "City of London", "Cornwall", "Cumbria", "Derbyshire", "Devon", "Dorset", "Durham", "County Durham",
        "East Riding of Yorkshire", "East Sussex", "Essex", "Gloucestershire", "Greater London",
        "Greater Manchester", "Hampshire", "Herefordshire", "Hertfordshire", "Isle of Wight", "Kent",
        "Lancashire", "Leicestershire", "Lincolnshire", "Merseyside", "Norfolk", "North Yorkshire",
        "Northamptonshire", "Northumberland", "Nottinghamshire", "Oxfordshire", "Rutland", "Shropshire",
        "Somerset", "South Yorkshire", "Staffordshire", "Suffolk", "Surrey", "Tyne and Wear",
        "Warwickshire", "West Midlands", "West Sussex", "West Yorkshire", "Wiltshire", "Worcestershire",
    )
)  # fmt: skip


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
    """Mavis's year group is a number: Reception is 0."""
    return "0" if year_group == "R" else year_group


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


# --- Mavis's row rules ------------------------------------------------------------------------------


def _name_problem(value: str) -> str | None:
    if not value.strip():
        return "is required but missing"
    if len(value) > MAX_FIELD_LENGTH:
        return f"is greater than {MAX_FIELD_LENGTH} characters long"
    if not _NAME.fullmatch(value.strip()):
        return "must use letters, hyphens, apostrophes and spaces only"
    return None


def _date_problem(value: str) -> str | None:
    if not value.strip():
        return "is required but missing"
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            datetime.strptime(value.strip(), fmt)
            return None
        except ValueError:
            continue
    return "should be formatted as YYYY-MM-DD or DD/MM/YYYY"


def _optional(check, value: str) -> str | None:
    return None if not value.strip() else check(value)


def row_problems(row: dict[str, str], known_urns: set[str] | None = None) -> list[tuple[str, str]]:
    """(column, reason) for every rule of Mavis's cohort import that ``row`` breaks. ``known_urns``:
    the URNs Mavis knows (from the schools register); None checks the URN's form only."""
    out = []
    for col in ("CHILD_FIRST_NAME", "CHILD_LAST_NAME"):
        if why := _name_problem(row.get(col, "")):
            out.append((col, why))
    for col in ("CHILD_PREFERRED_FIRST_NAME", "CHILD_PREFERRED_LAST_NAME"):
        if why := _optional(_name_problem, row.get(col, "")):
            out.append((col, why))
    if why := _date_problem(row.get("CHILD_DATE_OF_BIRTH", "")):
        out.append(("CHILD_DATE_OF_BIRTH", why))
    year = row.get("CHILD_YEAR_GROUP", "").strip()
    if year and not (_YEAR.fullmatch(year) and 0 <= int(year) <= 13):
        out.append(("CHILD_YEAR_GROUP", "is not a valid year group (a number, 0 for Reception)"))
    gender = row.get("CHILD_GENDER", "").strip()
    if gender and gender.casefold() not in MAVIS_GENDERS:
        out.append(("CHILD_GENDER", "must be one of Male, Female, Not known, Not specified"))
    nhs = "".join(row.get("CHILD_NHS_NUMBER", "").split())
    if nhs and not (nhs.isdigit() and len(nhs) == 10):
        out.append(("CHILD_NHS_NUMBER", "should be a valid NHS number with 10 characters"))
    postcode = row.get("CHILD_POSTCODE", "")
    if not postcode.strip():
        out.append(("CHILD_POSTCODE", "is required but missing"))
    elif not is_valid_postcode(normalise_postcode(postcode)):
        out.append(("CHILD_POSTCODE", "should be a postcode, like SW1A 1AA"))
    urn = row.get("CHILD_SCHOOL_URN", "").strip()
    if not urn:
        out.append(("CHILD_SCHOOL_URN", "is required but missing"))
    elif not _URN.fullmatch(urn):
        out.append(("CHILD_SCHOOL_URN", "must be 6 digits"))
    elif known_urns is not None and urn not in (URN_UNKNOWN, URN_HOME_EDUCATED) and urn not in known_urns:
        out.append(("CHILD_SCHOOL_URN", "is not a school URN Mavis recognises"))
    for i in (1, 2):
        parent = [row.get(f"PARENT_{i}_{f}", "").strip() for f in ("NAME", "EMAIL", "PHONE")]
        if row.get(f"PARENT_{i}_RELATIONSHIP", "").strip() and not any(parent):
            out.append((f"PARENT_{i}_RELATIONSHIP", "must be blank when there is no parent"))
    return out


# --- the checker --------------------------------------------------------------------------------


@dataclass
class Check:
    rows: int = 0
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # (row number, column, reason)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_mavis(content: bytes, known_urns: set[str] | None = None) -> Check:
    """Apply Mavis's cohort-import rules to a whole file. Row numbers are the spreadsheet's (the header
    is row 1). A file Mavis would refuse has at least one problem; the values are never repeated."""
    result = Check()
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        result.problems.append((0, "", f"is not UTF-8 (byte {exc.start})"))
        return result
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if not header:
        result.problems.append((1, "", "the file is empty: no header row"))
        return result
    header = [h.strip().upper() for h in header]
    for col in REQUIRED:
        if col not in header:
            result.problems.append((1, col, "is missing from the header row"))
    for col in header:
        if col not in MAVIS_COLUMNS:
            result.problems.append((1, col, "is not a column of Mavis's cohort import"))
    if len(set(header)) != len(header):
        result.problems.append((1, "", "a column appears twice in the header row"))
    if result.problems:
        return result
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue
        result.rows += 1
        if len(values) != len(header):
            result.problems.append((number, "", f"has {len(values)} cells; the header has {len(header)}"))
            continue
        row = dict(zip(header, values, strict=True))
        result.problems += [(number, col, why) for col, why in row_problems(row, known_urns)]
    if result.rows > MAX_ROWS:
        result.problems.append((0, "", f"{result.rows} rows: Mavis takes at most {MAX_ROWS} in one file"))
    return result


# --- writing the files ---------------------------------------------------------------------------


def mavis_line(c: Child) -> str:
    """One row as CSV (minimal quoting, as Mavis's own templates are written), formula-safe: a cell
    that could start a spreadsheet formula (only an address line can: names and dates are checked)
    is kept text."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow([safe_cell(v) for v in cells(c)])
    return buf.getvalue()


def header_line() -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(MAVIS_COLUMNS)
    return buf.getvalue()


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
class Verdict:
    """A row's Mavis line (keyed by school, to sort and split on), or why it is left out."""

    line: bytes | None
    reason: str | None = None


def child_of(row, urn: str) -> Child:
    return Child(row.forename, row.surname, row.date_of_birth, row.year_group, row.gender, list(row.address_lines),
                 row.postcode, urn)  # fmt: skip


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


def verdict(row, register: dict[str, tuple[str, str]]) -> Verdict:
    """The Mavis line for a programme-file row, or the reason it cannot be one Mavis accepts."""
    urn, why = school_urn(row.school_dfe, register)
    if urn is None:
        return Verdict(None, why)
    c = child_of(row, urn)
    problems = row_problems(dict(zip(MAVIS_COLUMNS, cells(c), strict=True)))
    if problems:
        column, reason = problems[0]
        return Verdict(None, f"{column} {reason}")
    key = "\x00".join((row.school_dfe, row.surname.casefold(), row.forename.casefold(), row.date_of_birth.isoformat()))
    return Verdict(key.replace("\x01", "").encode() + b"\x01" + mavis_line(c).encode())


def line_bytes(row) -> int:
    """Bytes a row takes in a Mavis file (planning a part's size; the URN is always 6 digits)."""
    return len(mavis_line(child_of(row, URN_UNKNOWN)).encode())


def files_from_lines(stem: str, lines: list[bytes]) -> list[tuple[str, bytes, int]]:
    """(name, content, rows) of the Mavis files of ``lines`` (from ``verdict``, sorted here in place):
    whole schools per file, at most MAX_ROWS rows each; ``stem``-1of2.csv when split."""
    lines.sort()
    counts: list[tuple[str, int]] = []
    for kl in lines:
        school = kl.split(b"\x00", 1)[0].decode()
        if counts and counts[-1][0] == school:
            counts[-1] = (school, counts[-1][1] + 1)
        else:
            counts.append((school, 1))
    starts, at = {}, 0
    for school, n in counts:
        starts[school] = at
        at += n
    chunks = list(split_by_school(counts))
    out = []
    for k, segments in enumerate(chunks, 1):
        body = [header_line().encode()]
        rows = 0
        for school, lo, hi in segments:
            for kl in lines[starts[school] + lo : starts[school] + hi]:
                body.append(kl.split(b"\x01", 1)[1])
                rows += 1
        name = f"{stem}.csv" if len(chunks) == 1 else f"{stem}-{k}of{len(chunks)}.csv"
        out.append((name, b"".join(body), rows))
    return out
