"""Mavis's cohort import ("Import records → Child records"), as Mavis's own source reads a file. Pure.

Each rule here follows a file of NHSDigital/manage-vaccinations-in-schools (commit 5c39c85, 27 April
2026), named beside it; docs/mavis.md lists them with what we write. The same rules serve the writer
(a row that would fail is never written) and ``sais delivery check-mavis`` (a file as Mavis reads it:
bytes, encoding, strict CSV, headers, helper row, rows, then these rules).

Mavis refuses the whole file when one row fails, so every rule matters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date

from sais_shared.schoolyear import academic_year_start

MAX_ROWS = 20_000  # app/models/concerns/csv_importable.rb MAX_CSV_ROWS
MAX_FIELD_LENGTH = 300  # app/models/patient_import_row.rb
URN_UNKNOWN = "888888"  # app/models/location.rb; every team has these generic schools
URN_HOME_EDUCATED = "999999"  # (app/lib/generic_location_factory.rb)
DEFAULT_YEAR_GROUPS = frozenset(range(0, 12))  # Reception to Year 11: the guide's "on joining"
PSEUDO_POSTCODES = ("ZZ99 3VZ", "ZZ99 3WZ", "ZZ99 3CZ")  # app/validators/postcode_validator.rb
GENDER_CODES = ("not_known", "male", "female", "not_specified")  # app/models/patient.rb enum :gender_code


# --- the import's academic year (app/lib/academic_year.rb, lib/core_ext/date/academic_year.rb) ----------


def import_academic_year(upload: date) -> int:
    """The academic year a cohort import made on ``upload`` is read against: ``AcademicYear.pending``,
    the coming year from 31 days before 1 September (settings.yml academic_year_number_of_preparation_days),
    that is from 1 August; before that the current year. (With the ``import_choose_academic_year``
    feature on, Mavis asks in August, offering both years: draft_import.rb.)"""
    current = academic_year_start(upload)  # Mavis's Date#academic_year: September starts the year
    return current + 1 if upload >= date(current + 1, 8, 1) else current


def first_upload_day(academic_year: int) -> date:
    """The first day an import is read against ``academic_year`` (its 1 August)."""
    return date(academic_year, 8, 1)


def last_upload_day(academic_year: int) -> date:
    """The last day (the next year's imports begin the day after)."""
    return date(academic_year + 1, 7, 31)


# --- values as Mavis reads a cell (app/lib/csv_parser.rb, lib/core_ext/string/normalise_whitespace.rb) ----

_RUBY_SPACE = re.compile(r"[ \t\r\n\f\v]+")  # Ruby's \s: ASCII white space only


def normalise_whitespace(value: str | None) -> str | None:
    """``String#normalise_whitespace``: drop zero-width joiners, NBSP to space, strip, runs of white space
    to one space; empty is nil."""
    if value is None:
        return None
    v = value.replace("\u200d", "").replace("\u00a0", " ")
    v = _RUBY_SPACE.sub(" ", v.strip(" \t\r\n\f\v\0"))
    return v or None


_RUBY_INTEGER = re.compile(
    r"[+-]?(?:0[xX][0-9a-fA-F]+(?:_[0-9a-fA-F]+)*|0[bB][01]+(?:_[01]+)*|0[oO]?[0-7]+(?:_[0-7]+)*"
    r"|0[dD][0-9]+(?:_[0-9]+)*|[1-9][0-9]*(?:_[0-9]+)*|0)"
)


def ruby_integer(value: str | None) -> int | None:
    """``Field#to_i``, which is Ruby's strict ``Integer(value)``: ``08`` is a malformed octal (nil), ``010``
    is 8, ``1_1`` is 11; anything else that is not a whole number is nil."""
    if value is None:
        return None
    v = value.strip()
    if not _RUBY_INTEGER.fullmatch(v):
        return None
    sign = -1 if v.startswith("-") else 1
    v = v.lstrip("+-").replace("_", "")
    if len(v) > 1 and v[0] == "0":
        base = {"x": 16, "b": 2, "o": 8, "d": 10}.get(v[1].lower())
        return sign * (int(v[2:], base) if base else int(v[1:], 8))
    return sign * int(v)


_DATE_FORMS = (  # Field#to_date: %Y%m%d, %Y-%m-%d, %d/%m/%Y, in that order, year 1000 or later
    (re.compile(r"([+-]?\d{4})(\d{1,2})(\d{1,2})"), (0, 1, 2)),
    (re.compile(r"([+-]?\d+)-(\d{1,2})-(\d{1,2})"), (0, 1, 2)),
    (re.compile(r"(\d{1,2})/(\d{1,2})/([+-]?\d+)"), (2, 1, 0)),
)


def ruby_date(value: str | None) -> date | None:
    """``Field#to_date``: the first of Mavis's formats that reads the whole value as a real date."""
    if not value:
        return None
    for pattern, (yi, mi, di) in _DATE_FORMS:
        m = pattern.fullmatch(value)
        if not m:
            continue
        parts = m.groups()
        try:
            d = date(int(parts[yi]), int(parts[mi]), int(parts[di]))
        except ValueError:
            continue
        if d.year >= 1000:
            return d
    return None


# lib/uk_postcode/geographic_postcode.rb (uk_postcode 2.1.8, as Mavis's Gemfile.lock pins): the pattern is
# case-insensitive; in the area 1 and 0 read as I and O, in the district and sector I and O as 1 and 0.
_GEOGRAPHIC = re.compile(
    r"([A-PR-UWYZ01][A-HJ-Z0]?)(?:([0-9IO][0-9A-HJKMNPR-YIO]?)(?:[ \t\r\n\f\v]*([0-9IO])([ABD-HJLNPQ-Z]{2})?)?)?",
    re.IGNORECASE,
)
_GIRO = re.compile(r"G[I1]R[ \t\r\n\f\v]*[0O]AA", re.IGNORECASE)  # lib/uk_postcode/giro_postcode.rb


def mavis_postcode(value: str | None) -> str | None:
    """``Field#to_postcode``: the postcode as Mavis stores it (``UKPostcode.parse(...).to_s``) when it is a
    full valid one or one of the three pseudo-postcodes written exactly; otherwise nil."""
    if not value:
        return None
    v = value.strip(" \t\r\n\f\v\0")
    if _GIRO.fullmatch(v):
        return "GIR 0AA"
    m = _GEOGRAPHIC.fullmatch(v)
    if m and all(m.groups()):
        area, district, sector, unit = m.groups()
        area, unit = area.upper().translate(_TO_LETTERS), unit.upper().translate(_TO_LETTERS)
        district, sector = district.upper().translate(_TO_DIGITS), sector.upper().translate(_TO_DIGITS)
        return f"{area}{district} {sector}{unit}"
    return v if v in PSEUDO_POSTCODES else None  # an InvalidPostcode's to_s is the input as given


_TO_LETTERS = str.maketrans("10", "IO")
_TO_DIGITS = str.maketrans("IO", "10")

# app/validators/name_validator.rb PERSON_NAME_CHARS. Ruby's \w is ASCII: [A-Za-z0-9_].
_NAME = re.compile("[A-Za-z0-9_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u017f '`\u2019\u02bc.\\-]+")


def name_ok(value: str) -> bool:
    return _NAME.fullmatch(value) is not None


def nhs_number_ok(value: str) -> bool:
    """app/validators/nhs_number_validator.rb: 10 digits, modulus 11 check digit (10 is never valid)."""
    if len(value) != 10 or not all(c in "0123456789" for c in value):
        return False
    total = sum((10 - i) * int(c) for i, c in enumerate(value[:9])) % 11
    check = 0 if total == 0 else 11 - total
    return check <= 9 and int(value[9]) == check


# app/validators/notify_safe_email_validator.rb (GOV.UK Notify's rules)
_EMAIL = re.compile(r"[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@([^.@][^@\s]+)")
_HOST_PART = re.compile(r"(xn|[a-z0-9]+)(-?-[a-z0-9]+)*", re.IGNORECASE)
_TLD = re.compile(r"([a-z]{2,63}|xn--([a-z0-9]+-)*[a-z0-9]+)", re.IGNORECASE)


def email_ok(value: str) -> bool:
    m = _EMAIL.fullmatch(value)
    if not m or len(value) > 320 or ".." in value:
        return False
    host = m.group(1)
    parts = host.split(".")
    while parts and parts[-1] == "":  # Ruby's split drops trailing empty strings
        parts.pop()
    if len(host) > 253 or len(parts) < 2 or host.endswith("."):
        return False
    return all(_HOST_PART.fullmatch(p) for p in parts) and _TLD.fullmatch(parts[-1]) is not None


def phone_ok(value: str) -> bool:
    """The phonelib gem's PhoneValidator with GB as the default country (config/initializers/phonelib.rb):
    libphonenumber's idea of a valid number, here through its Python port."""
    import phonenumbers

    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(value, "GB"))
    except phonenumbers.NumberParseException:
        return False


# --- the team: which schools and year groups a row may have (cohort_import_row.rb, team.rb) ----------------


@dataclass(frozen=True)
class Team:
    """What Mavis checks each row against. ``schools``: the URNs (with a site letter for a school Mavis has
    split into sites) attached to the team for the import's academic year; None when not known, and then
    only the register (``known_urns``) or the URN's form is checked. ``year_groups``: the year groups of
    the team's programmes (``Team#year_groups``); Reception is 0."""

    schools: frozenset[str] | None = None
    year_groups: frozenset[int] = DEFAULT_YEAR_GROUPS
    known_urns: frozenset[str] | None = None  # the schools register's URNs, when the team's list is not given

    @property
    def split_urns(self) -> frozenset[str]:
        """URNs given with a site letter: the plain URN is refused for them."""
        return frozenset(s[:6] for s in self.schools or () if len(s) > 6)

    def urn_problem(self, urn: str) -> str | None:
        if urn in (URN_UNKNOWN, URN_HOME_EDUCATED):
            return None
        if self.schools is not None:
            if urn in self.split_urns:
                sites = sorted(s for s in self.schools if s[:6] == urn and len(s) > 6)
                return f"The URN has been split into sites. Use {' or '.join(sites)} instead."
            if urn not in self.schools:
                return "The school URN is not recognised (not one of the team's schools)."
            return None
        if not re.fullmatch(r"\d{6}[A-Z]?", urn):
            return "The school URN is not recognised (not a URN)."
        if self.known_urns is not None and urn[:6] not in self.known_urns:
            return "The school URN is not recognised (not in the schools register)."
        return None


# --- one row (app/models/patient_import_row.rb, app/models/cohort_import_row.rb) ------------------------

Data = dict[str, "str | None"]  # normalised header (child_first_name) → the cell as Mavis holds it


@dataclass(frozen=True)
class RowError:
    column: str  # the column's normalised name, or "" for a row-level error (Mavis's :base)
    message: str

    def __str__(self) -> str:
        return f"{self.column.upper()} {self.message}" if self.column else self.message


def _required_name(data: Data, col: str, label: str, out: list[RowError]) -> None:
    if col not in data:
        out.append(RowError("", f"{col.upper()} is required"))
        return
    v = data[col]
    if v is None:
        out.append(RowError(col, f"Enter a {label}."))
    elif len(v) > MAX_FIELD_LENGTH:
        out.append(RowError(col, f"is greater than {MAX_FIELD_LENGTH} characters long"))
    elif not name_ok(v):
        out.append(RowError(col, "includes invalid character(s)"))


def _optional_name(data: Data, col: str, out: list[RowError]) -> None:
    v = data.get(col)
    if v is None:
        return
    if len(v) > MAX_FIELD_LENGTH:
        out.append(RowError(col, f"is greater than {MAX_FIELD_LENGTH} characters long"))
    elif not name_ok(v):
        out.append(RowError(col, "includes invalid character(s)"))


def row_errors(data: Data, *, academic_year: int, team: Team) -> list[RowError]:
    """Every rule of ``CohortImportRow`` that the row breaks, as Mavis words it (values never repeated).

    ``data``: the row keyed by normalised header; a key is absent when the file has no such column or the
    cell is empty (Mavis's nil), and maps to None when the cell held only white space Mavis removes (a
    Field whose value is nil)."""
    out: list[RowError] = []
    # validate_date_of_birth
    dob = None
    if "child_date_of_birth" not in data:
        out.append(RowError("", "CHILD_DATE_OF_BIRTH is required"))
    elif data["child_date_of_birth"] is None:
        out.append(RowError("child_date_of_birth", "Enter a date of birth."))
    elif (dob := ruby_date(data["child_date_of_birth"])) is None:
        out.append(RowError("child_date_of_birth", "should be formatted as YYYY-MM-DD"))
    elif dob < date(2000, 1, 1):
        out.append(RowError("child_date_of_birth", "is too old to still be in school"))
    _required_name(data, "child_first_name", "first name", out)
    _optional_name(data, "child_preferred_first_name", out)
    gender = data.get("child_gender")
    if gender is not None and gender.lower().replace(" ", "_") not in GENDER_CODES:
        out.append(RowError("child_gender", "is not a valid gender code"))
    _required_name(data, "child_last_name", "last name", out)
    _optional_name(data, "child_preferred_last_name", out)
    nhs = data.get("child_nhs_number")
    if nhs is not None and not nhs_number_ok(re.sub(r"\s", "", nhs)):
        out.append(RowError("child_nhs_number", "should be a valid NHS number with 10 characters"))
    for i in (1, 2):
        p = f"parent_{i}_"
        email, name, phone = data.get(p + "email"), data.get(p + "name"), data.get(p + "phone")
        if email is not None and not email_ok(email.lower()):
            out.append(RowError(p + "email", "should be a valid email address, like j.doe@example.com"))
        _optional_name(data, p + "name", out)
        if phone is not None and not phone_ok(re.sub(r"\s", "", phone)):
            out.append(
                RowError(
                    p + "phone", "should be a valid phone number, like 01632 960 001, 07700 900 982 or +44 808 157 0192"
                )
            )
        if data.get(p + "relationship") is not None and not any(v is not None for v in (name, email, phone)):
            out.append(RowError(p + "relationship", "must be blank"))
    # validate_year_group: an explicit year group, else the one the date of birth gives for this year
    explicit = data.get("child_year_group")
    if explicit is not None:
        n = ruby_integer(explicit)
        year_group = n  # to_birth_academic_year then to_year_group: the same number back
        if n is None:
            out.append(RowError("child_year_group", "is not a valid year group"))
    else:
        year_group = academic_year - academic_year_start(dob) - 5 if dob is not None else None
    if year_group is not None and year_group not in team.year_groups:
        out.append(
            RowError(
                "child_year_group" if explicit is not None else "child_date_of_birth", "is not part of this programme"
            )
        )
    # cohort_import_row.rb: validate_address_postcode, validate_school_urn
    if "child_postcode" not in data:
        out.append(RowError("", "CHILD_POSTCODE is required"))
    elif data["child_postcode"] is None:
        out.append(RowError("child_postcode", "Enter a valid postcode, like SW1A 1AA."))
    elif mavis_postcode(data["child_postcode"]) is None:
        out.append(RowError("child_postcode", "should be a postcode, like SW1A 1AA"))
    if "child_school_urn" not in data:
        out.append(RowError("", "CHILD_SCHOOL_URN is required"))
    elif data["child_school_urn"] is None:
        out.append(RowError("child_school_urn", "Enter a school URN."))
    elif why := team.urn_problem(data["child_school_urn"].strip()):
        out.append(RowError("child_school_urn", why))
    return out


def same_child_key(data: Data) -> tuple | None:
    """Rows that PDS tracing would resolve to one child (same names and date of birth; no NHS number is
    shared with the SAIS team, so tracing matches on these): two such rows fail the import
    (patient_import.rb validate_changeset_uniqueness!)."""
    dob = ruby_date(data.get("child_date_of_birth"))
    first, last = data.get("child_first_name"), data.get("child_last_name")
    if dob is None or not first or not last:
        return None
    return (first.casefold(), last.casefold(), dob)


# --- the file (app/models/import/csv_data.rb, csv_importable.rb, the Ruby csv gem's parser) ---------------


class MalformedCSVError(ValueError):
    """Ruby's CSV::MalformedCSVError: Mavis refuses the file as "not a valid CSV"."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"{reason} in line {line}")
        self.line = line


def decode(content: bytes) -> str:
    """The text as Mavis reads it: a BOM says the encoding (``set_encoding_by_bom``); otherwise ICU's
    detector (CharlockHolmes), which finds UTF-8 when the bytes are UTF-8 and Windows-1252 for the
    Western European files spreadsheets write. Raises UnicodeDecodeError for bytes neither can read."""
    for bom, enc in ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be")):
        if content.startswith(bom):
            return content[len(bom) :].decode(enc)
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        return content.decode("cp1252")  # the five bytes it leaves undefined raise


def _row_sep(text: str) -> str:
    """The csv gem's automatic row separator: the first line ending in the data."""
    m = re.search(r"\r\n|\n|\r", text)
    return m.group(0) if m else "\n"


def parse_csv(text: str) -> list[tuple[int, list[str | None]]]:
    """Rows as the csv gem parses them with Mavis's options (``strip: true``, ``skip_blanks: true``,
    ``empty_value: nil``), each with its line number; raises MalformedCSVError where Ruby would: a quote
    in an unquoted field, text after a closing quote, an unclosed quote, or a line ending other than the
    file's own outside quotes (mixed line endings)."""
    sep = _row_sep(text)
    rows: list[tuple[int, list[str | None]]] = []
    i, n, line = 0, len(text), 1
    while i < n:
        start_line = line
        if text.startswith(sep, i):  # a blank line: skipped
            i += len(sep)
            line += 1
            continue
        fields: list[str | None] = []
        while True:
            j = i
            while j < n and text[j] in " \t":
                j += 1
            if j < n and text[j] == '"':  # a quoted field
                j += 1
                buf = []
                while True:
                    if j >= n:
                        raise MalformedCSVError(start_line, "Unclosed quoted field")
                    c = text[j]
                    if c == '"':
                        if j + 1 < n and text[j + 1] == '"':
                            buf.append('"')
                            j += 2
                            continue
                        j += 1
                        break
                    if c == "\n" or (c == "\r" and not text.startswith("\r\n", j)):
                        line += 1
                    buf.append(c)
                    j += 1
                while j < n and text[j] in " \t":
                    j += 1
                if not (j >= n or text[j] == "," or text.startswith(sep, j)):
                    raise MalformedCSVError(line, "Any value after quoted field isn't allowed")
                value = "".join(buf)
                fields.append(value if value else None)
            else:
                k = j
                while k < n and text[k] != "," and not text.startswith(sep, k):
                    if text[k] == '"':
                        raise MalformedCSVError(line, "Illegal quoting")
                    if text[k] in "\r\n":
                        raise MalformedCSVError(line, f"Unquoted fields do not allow new line <{text[k]!r}>")
                    k += 1
                value = text[i:k].strip(" \t\f\v\0")
                fields.append(value if value else None)
                j = k
            if j >= n:
                i = n
                break
            if text[j] == ",":
                i = j + 1
                continue
            i = j + len(sep)  # the row separator
            line += 1
            break
        rows.append((start_line, fields))
    return rows


def header_key(value: str | None) -> str | None:
    """csv_parser.rb header_converters: lower case, white space normalised, hyphens and spaces to ``_``."""
    v = normalise_whitespace(value.lower()) if value is not None else None
    return v.replace("-", "_").replace(" ", "_") if v else None


_INSTRUCTION = re.compile(r"(Required|Optional)([,.:]|$)")


@dataclass
class FileCheck:
    rows: int = 0
    problems: list[tuple[int, str, str]] = field(default_factory=list)  # (Mavis's row number, column, reason)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_file(content: bytes, *, academic_year: int, team: Team) -> FileCheck:
    """What Mavis's cohort import makes of ``content`` when read against ``academic_year`` for ``team``.
    Row numbers are Mavis's: the header is row 1, a helper row counts, and the csv gem's skipped blank
    lines do not. Problems name the row and column (as headed in the file), never the value."""
    result = FileCheck()
    if not content.strip():
        result.problems.append((0, "", "the file is empty"))
        return result
    try:
        text = decode(content)
    except UnicodeDecodeError as exc:
        result.problems.append((0, "", f"cannot be read as UTF-8 or Windows-1252 (byte {exc.start})"))
        return result
    try:
        parsed = parse_csv(text)
    except MalformedCSVError as exc:  # csv_data.rb: malformed → "is not a valid CSV"
        result.problems.append((exc.line, "", f"is not a valid CSV file: {exc}"))
        return result
    if not parsed:
        result.problems.append((0, "", "the file is empty"))
        return result
    (_, raw_header), table = parsed[0], [fields for _, fields in parsed[1:]]
    keys = [header_key(h) for h in raw_header]
    shown: dict[str, str] = {}  # normalised header → as written (Mavis names the column as written)
    first: dict[str, int] = {}  # a duplicated column: CSV::Row#[] gives the first
    for i, (k, h) in enumerate(zip(keys, raw_header, strict=True)):
        if k and k not in first:
            first[k], shown[k] = i, (h or "").strip()
    instruction = bool(table) and table[0] and table[0][0] is not None and _INSTRUCTION.match(table[0][0])
    if len(table) > MAX_ROWS:  # csv_is_not_too_large: every row the parser returned
        result.problems.append((0, "", f"has {len(table)} rows: Mavis takes at most {MAX_ROWS}"))
        return result
    if not table or (len(table) == 1 and instruction):  # csv_has_records
        result.problems.append((0, "", "has no records (a header and no rows)"))
        return result
    while table and all(v is None for v in table[-1]):  # remove_trailing_blank_rows
        table.pop()
    offset = 2
    if instruction:
        table, offset = table[1:], 3
    seen_nhs: dict[str, list[int]] = {}
    seen_child: dict[tuple, list[int]] = {}
    for index, cells in enumerate(table):
        number = index + offset
        data: Data = {  # extra cells are ignored; missing and empty ones are nil (absent here)
            k: normalise_whitespace(cells[i]) for k, i in first.items() if i < len(cells) and cells[i] is not None
        }
        result.rows += 1
        for e in row_errors(data, academic_year=academic_year, team=team):
            result.problems.append((number, shown.get(e.column, e.column.upper()), e.message))
        if nhs_number := data.get("child_nhs_number"):
            seen_nhs.setdefault(re.sub(r"\s", "", nhs_number), []).append(number)
        if (key := same_child_key(data)) is not None:
            seen_child.setdefault(key, []).append(number)
    for numbers in seen_nhs.values():  # patient_import.rb check_rows_are_unique
        if len(numbers) > 1:
            result.problems += [(r, "", "The same NHS number appears multiple times in this file.") for r in numbers]
    for numbers in seen_child.values() if not result.problems else ():  # validate_changeset_uniqueness!:
        if len(numbers) > 1:  # after the rows pass, at PDS tracing
            result.problems += [
                (
                    r,
                    "",
                    f"appears to be a duplicate of row {', '.join(str(o) for o in numbers if o != r)} "
                    "(same names and date of birth: tracing finds one child, and the import fails)",
                )
                for r in numbers
            ]
    result.problems.sort(key=lambda p: p[0])
    return result


def parse_year_groups(spec: str) -> frozenset[int]:
    """``0-11`` or ``0,1,2,8-9``: the team's year groups (Reception is 0; R is accepted)."""
    out: set[int] = set()
    for part in spec.replace(" ", "").split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-") if not part.startswith("-") else (part, "", "")
        a = 0 if lo.upper() == "R" else int(lo)
        b = (0 if hi.upper() == "R" else int(hi)) if hi else a
        out.update(range(a, b + 1))
    return frozenset(out)


def team_schools(values: Iterable[str]) -> frozenset[str]:
    """URNs, or URN + site letter (``123456B``), as Mavis joins them (``CONCAT(urn, site)``)."""
    out = set()
    for v in values:
        v = v.strip().upper()
        if not re.fullmatch(r"\d{6}[A-Z]?", v):
            raise ValueError(f"{v!r} is not a URN (6 digits) or a URN and site letter (123456B)")
        out.add(v)
    return frozenset(out)
