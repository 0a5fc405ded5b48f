"""Row validation: each rule a named check with a clear message that never quotes the value."""

from __future__ import annotations

import re
import unicodedata
from datetime import date

from sais_shared.postcode import PSEUDO_POSTCODES, is_valid_postcode, normalise_postcode
from sais_shared.protocol import Protocol, SourceRule
from sais_shared.schools import dfe_number
from sais_shared.schoolyear import age_on, expected_year_group, roll_forward

from .model import CleanRow, Outcome, OutOfScope, Problem, Rejected

# A name starts with a letter, or an apostrophe before one ('t Hooft, ’Abdullah).
_NAME = re.compile(r"['’]?[^\W\d_](?:[^\W\d_]|[ '’\-.])*", re.UNICODE)
_BFPO = re.compile(r"BFPO ?(\d{1,4})")
_YEAR = re.compile(r"(?:y(?:ea)?r?\s*)?(\d{1,2})", re.IGNORECASE)
_DMY = re.compile(r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{1,4})")
_YMD = re.compile(r"(\d{1,4})-(\d{1,2})-(\d{1,2})(?:[T ]00:00(?::00)?)?")
GENDERS = {
    "m": "M",
    "male": "M",
    "boy": "M",
    "f": "F",
    "female": "F",
    "girl": "F",
    "u": "U",
    "unknown": "U",
    "not known": "U",
    "not specified": "U",
    "x": "U",
    "": "U",
}
MAX_NAME = 100
# Every field that leaves ingest has a maximum length, so no row can make a message the broker refuses:
# a longer value is that row's rejection (the file's own cap on a cell is a refusal of the file).
MAX_SCHOOL_NAME = 200
MAX_ADDRESS_LINE = 200


def parse_year_group(raw: str) -> str | None:
    s = " ".join(raw.strip().split()).lower()
    if s in {"r", "rec", "reception", "yr", "year r", "year reception", "0"}:
        return "R"
    if s in {"n1", "n2"}:
        return s.upper()
    m = _YEAR.fullmatch(s)
    if m and 1 <= int(m.group(1)) <= 14:
        return str(int(m.group(1)))
    return None


def parse_date(raw: str) -> tuple[date | None, str | None]:
    """A date from DD/MM/YYYY, D/M/YYYY or YYYY-MM-DD; a short year is never guessed."""
    s = raw.strip()
    if not s:
        return None, "date is missing"
    m = _YMD.fullmatch(s)
    if m:
        y, mo, d = (int(g) for g in m.groups())
        year_digits = len(m.group(1))
    else:
        m = _DMY.fullmatch(s)
        if not m:
            return None, "not a date: use DD/MM/YYYY or YYYY-MM-DD"
        d, mo, y = (int(g) for g in m.groups())
        year_digits = len(m.group(3))
    if year_digits < 4 or y < 1000:
        return None, "the year is not written in full (Excel two-digit year?): use a four-digit year"
    try:
        return date(y, mo, d), None
    except ValueError:
        return None, "not a real calendar date"


def _name(value: str, fld: str, problems: list[Problem]) -> str:
    # NFC first: macOS and some exports write accents as a letter plus a combining mark (e + ́), which is
    # the same name as the precomposed letter (é)
    v = unicodedata.normalize("NFC", " ".join(value.split()))
    if not v:
        problems.append(Problem(fld, f"{fld}.missing", f"{fld} is missing"))
    elif len(v) > MAX_NAME:
        problems.append(Problem(fld, f"{fld}.too_long", f"{fld} is longer than {MAX_NAME} characters"))
    elif not _NAME.fullmatch(v):
        problems.append(
            Problem(
                fld,
                f"{fld}.characters",
                f"{fld} has characters other than letters, spaces, apostrophes, hyphens and full stops",
            )
        )
    return v


def address_lines(row: dict[str, str]) -> list[str]:
    if any(row.get(f"address_{i}", "").strip() for i in range(1, 6)):
        keys = [f"address_{i}" for i in range(1, 6)]
    else:  # BS7666: SAON, PAON + Street on one line, then locality, town, county
        paon_street = " ".join(p for p in (row.get("paon", "").strip(), row.get("street", "").strip()) if p)
        row = {**row, "paon_street": paon_street}
        keys = ["saon", "paon_street", "locality", "town", "county"]
    return [" ".join(row.get(k, "").split()) for k in keys if row.get(k, "").strip()]


def target_year_group(source: SourceRule, recorded: str) -> str:
    return roll_forward(recorded, source.roll_forward_years)


def validate_row(
    row: dict[str, str], row_number: int, *, source: SourceRule, protocol: Protocol, reference_date: date
) -> Outcome:
    problems: list[Problem] = []
    warnings: list[Problem] = []
    dfe, school_name = _school(row, protocol, problems)
    year_group = parse_year_group(row.get("year_group", ""))
    if year_group is None:
        problems.append(
            Problem("year_group", "year_group.format", "year group not recognised: use R, Reception, Y3, Year 3 or 3")
        )
    surname = _name(row.get("surname", ""), "surname", problems)
    forename = _name(row.get("forename", ""), "forename", problems)
    dob = _date_of_birth(row, reference_date, problems)
    gender = _gender(row, problems, warnings)
    postcode, pseudo = _postcode(row, problems, warnings)
    lines = _address(row, pseudo, problems)
    if problems:
        return Rejected(row_number, problems)
    assert year_group is not None and dob is not None and gender is not None

    if not source.is_requested(year_group, gender):
        return OutOfScope(row_number, year_group, gender)

    # The recorded year group decides eligibility; a DOB that disagrees is reported, not changed.
    target = target_year_group(source, year_group)
    expected = expected_year_group(dob, source.target_academic_year(reference_date))
    if expected != target:
        warnings.append(
            Problem(
                "year_group",
                "year_group.out_of_year_group",
                f"date of birth implies year {expected}, recorded year implies {target}",
            )
        )

    return CleanRow(row_number, dfe, school_name, year_group, surname, forename, dob, gender, lines, postcode, warnings)


def _school(row: dict[str, str], protocol: Protocol, problems: list[Problem]) -> tuple[str, str]:
    dfe = dfe_number(row.get("school_dfe", ""))
    if not re.fullmatch(r"\d{7}", dfe):
        problems.append(
            Problem(
                "school_dfe",
                "school_dfe.format",
                "DfE number must be 7 digits (LA 3 + establishment 4), e.g. 9372001, 937/2001 or 937-2001",
            )
        )
    elif dfe[:3] not in protocol.la_codes:
        problems.append(
            Problem("school_dfe", "school_dfe.la", f"DfE number's LA part is not one of {protocol.la_codes}")
        )
    school_name = " ".join(row.get("school_name", "").split())
    if not school_name:
        problems.append(Problem("school_name", "school_name.missing", "school name is missing"))
    elif len(school_name) > MAX_SCHOOL_NAME:
        problems.append(
            Problem("school_name", "school_name.too_long", f"school name is longer than {MAX_SCHOOL_NAME} characters")
        )
    return dfe, school_name


def _date_of_birth(row: dict[str, str], reference_date: date, problems: list[Problem]) -> date | None:
    dob, why = parse_date(row.get("date_of_birth", ""))
    if why:
        problems.append(Problem("date_of_birth", "date_of_birth.format", why))
    elif dob is not None:
        age = age_on(dob, reference_date)
        if not 2 <= age <= 19:
            problems.append(
                Problem(
                    "date_of_birth",
                    "date_of_birth.school_age",
                    f"not of school age on the reference date {reference_date.isoformat()} (age {age})",
                )
            )
    return dob


def _gender(row: dict[str, str], problems: list[Problem], warnings: list[Problem]) -> str | None:
    gender = GENDERS.get(" ".join(row.get("gender", "").split()).lower())
    if gender is None:
        problems.append(Problem("gender", "gender.format", "gender not recognised: use M, F or U"))
    elif gender == "U":
        warnings.append(Problem("gender", "gender.unknown", "gender not known"))
    return gender


def _postcode(row: dict[str, str], problems: list[Problem], warnings: list[Problem]) -> tuple[str, str | None]:
    """The postcode as it goes, and what a pseudo-postcode says (no fixed abode, not known…)."""
    postcode = normalise_postcode(row.get("postcode", ""))
    pseudo = PSEUDO_POSTCODES.get(postcode)
    bfpo = _BFPO.fullmatch(" ".join(row.get("postcode", "").split()).upper())
    if bfpo:
        postcode = f"BFPO {int(bfpo.group(1))}"
        warnings.append(
            Problem(
                "postcode",
                "postcode.bfpo",
                "a British Forces (BFPO) address: Mavis takes no BFPO "
                "number, so this child is listed for the SAIS team to add by hand",
            )
        )
    elif pseudo:
        warnings.append(Problem("postcode", "postcode.pseudo", f"pseudo-postcode: {pseudo}"))
    elif not postcode:
        problems.append(Problem("postcode", "postcode.missing", "postcode is missing"))
    elif not is_valid_postcode(postcode):
        problems.append(Problem("postcode", "postcode.format", "not a valid UK postcode format"))
    return postcode, pseudo


def _address(row: dict[str, str], pseudo: str | None, problems: list[Problem]) -> list[str]:
    lines = address_lines(row)
    if not lines and pseudo:
        pass  # no fixed abode, or an address not known: the pseudo-postcode says so
    elif not lines:
        problems.append(Problem("address_1", "address.missing", "address line 1 is missing"))
    elif any(len(line) > MAX_ADDRESS_LINE for line in lines):
        problems.append(
            Problem("address_1", "address.too_long", f"an address line is longer than {MAX_ADDRESS_LINE} characters")
        )
    return lines
