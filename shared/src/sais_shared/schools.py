"""The schools register: the DfE's "Get Information about Schools" (GIAS) establishment export,
read into one entry per DfE number (LA code + establishment number, the number the ISP's data
carries), with the school's URN, status and age range as year groups.

GIAS exports are CSV in Windows-1252 (the download page's "all establishment data" file, inside a
zip as downloaded; both are read). A row that cannot be read is skipped and reported, never the whole
load; the five byte values Windows-1252 leaves undefined are read as U+FFFD and counted. The
column names carry their coded form (``LA (code)``) or their named form (``EstablishmentStatus
(name)``), and both spellings are accepted. A DfE number listed twice (a school that closed and
reopened under the same number, as some academy conversions do) keeps the open establishment.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime

from .errors import SaisError
from .schoolyear import year_from_index

# our field → the GIAS column names it may have
COLUMNS = {
    "urn": ("URN",),
    "la_code": ("LA (code)", "LA code", "LA"),
    "establishment": ("EstablishmentNumber",),
    "name": ("EstablishmentName",),
    "status": ("EstablishmentStatus (name)", "EstablishmentStatus"),
    "phase": ("PhaseOfEducation (name)", "PhaseOfEducation"),
    "low_age": ("StatutoryLowAge",),
    "high_age": ("StatutoryHighAge",),
    "close_date": ("CloseDate",),
}
REQUIRED = ("urn", "la_code", "establishment", "name", "status")


class RegisterError(SaisError):
    """A schools register file that cannot be loaded; names the row and column."""


@dataclass(frozen=True)
class School:
    dfe: str
    urn: str
    name: str
    la_code: str
    status: str
    phase: str
    first_year: str | None  # the lowest year group taught (statutory low age - 4)
    last_year: str | None  # the highest (statutory high age - 5)
    close_date: date | None

    @property
    def is_open(self) -> bool:
        return not self.status.casefold().startswith("closed")

    def as_row(self) -> tuple:
        return (
            self.dfe,
            self.urn,
            self.name,
            self.la_code,
            self.status,
            self.phase,
            self.first_year,
            self.last_year,
            self.close_date,
        )


def year_of_low_age(age: int) -> str:
    """A child of statutory age ``age`` at the start of the year is in year ``age - 4`` (4 → R)."""
    return year_from_index(age - 4)


def year_of_high_age(age: int) -> str:
    """A school whose pupils reach ``age`` teaches to year ``age - 5`` (11 → Year 6, 16 → Year 11)."""
    return year_from_index(max(age - 5, -2))


def _undefined_as_replacement(exc: UnicodeError) -> tuple[str, int]:
    return "\ufffd", exc.end  # type: ignore[attr-defined]


codecs.register_error("sais-replace", _undefined_as_replacement)


def _decode(content: bytes) -> tuple[str, int]:
    """The text, and how many bytes could not be read (GIAS writes Windows-1252, which leaves five byte
    values undefined: each becomes U+FFFD, never an error)."""
    try:
        return content.decode("utf-8-sig"), 0
    except UnicodeDecodeError:
        text = content.decode("cp1252", errors="sais-replace")
        return text, text.count("\ufffd")


def _csv_of(content: bytes) -> bytes:
    """The establishment CSV itself: GIAS's download is a zip (``edubasealldataYYYYMMDD.csv`` inside)."""
    if not content.startswith(b"PK\x03\x04"):
        return content
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as z:
            names = [n for n in z.namelist() if n.lower().endswith(".csv")]
            if not names:
                raise RegisterError("the zip holds no CSV file")
            preferred = [n for n in names if "edubase" in n.lower()] or names
            name = max(preferred, key=lambda n: z.getinfo(n).file_size)
            return z.read(name)
    except zipfile.BadZipFile as exc:
        raise RegisterError(f"not a readable zip: {exc}") from None


def _dfe_part(value: str, digits: int) -> str:
    v = value.strip()
    return v if v.isdigit() and len(v) == digits else ""


def dfe_number(raw: str) -> str:
    """A DfE number as the census and people write it (9372001, 937/2001, 937-2001, 937 2001) as 7 digits;
    what cannot be one is returned compact, for the caller's check to refuse."""
    return "".join(raw.split()).replace("/", "").replace("-", "")


def _age(value: str, column: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise ValueError(f"{column}: an age in whole years is expected")
    return int(value)


def _close_date(value: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    for fmt in ("%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise ValueError("CloseDate: a date like 31-08-2016 is expected")


@dataclass(frozen=True)
class RegisterRead:
    schools: list[School]
    skipped: list[tuple[int, str]]  # (row, why): rows that could not be read, left out of the register
    unreadable_bytes: int  # bytes not defined in Windows-1252, read as U+FFFD


def read_register(content: bytes) -> RegisterRead:
    """Every establishment of a GIAS export (the zip as downloaded, or its CSV), one per DfE number. A row
    that cannot be read is skipped and listed (row and reason, never values); RegisterError only when
    the file is not a GIAS export at all or holds no school."""
    text, unreadable = _decode(_csv_of(content))
    reader = csv.reader(io.StringIO(text, newline=""))
    header, index = _header(reader)
    by_dfe: dict[str, School] = {}
    skipped: list[tuple[int, str]] = []
    number = 1
    while True:
        number += 1
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            skipped.append((number, f"not readable as CSV ({exc})"))
            continue
        if not any(v.strip() for v in values):
            continue
        if len(values) < len(header):
            skipped.append((number, f"{len(values)} cells; the header has {len(header)}"))
            continue
        school, why = _school_of({name: values[i].strip() for name, i in index.items() if i < len(values)})
        if why:
            skipped.append((number, why))
        if school is None:
            continue
        held = by_dfe.get(school.dfe)
        if held is None or (school.is_open and not held.is_open):
            by_dfe[school.dfe] = school
    if not by_dfe:
        raise RegisterError("the file holds no establishment with a DfE number")
    return RegisterRead(sorted(by_dfe.values(), key=lambda x: x.dfe), skipped, unreadable)


def _header(reader: Iterator[list[str]]) -> tuple[list[str], dict[str, int]]:
    """The header row, and the column of each field it has (under any of GIAS's spellings)."""
    try:
        header = [h.strip() for h in next(reader, None) or []]
    except csv.Error as exc:
        raise RegisterError(f"row 1: not a CSV file ({exc})") from None
    index: dict[str, int] = {}
    for name, spellings in COLUMNS.items():
        for sp in spellings:
            if sp in header:
                index[name] = header.index(sp)
                break
    missing = [COLUMNS[n][0] for n in REQUIRED if n not in index]
    if missing:
        raise RegisterError(f"row 1: not a GIAS establishment export: no column {', '.join(missing)}")
    return header, index


def _school_of(row: dict[str, str]) -> tuple[School | None, str | None]:
    """One register row as a school, or why it is skipped (neither: an establishment with no DfE number)."""
    urn, la, est = row.get("urn", ""), _dfe_part(row.get("la_code", ""), 3), row.get("establishment", "")
    if not (urn.isdigit() and len(urn) == 6):
        return None, "URN: 6 digits expected"
    if not la:
        return None, "LA (code): 3 digits expected"
    if not est:  # some establishment types (e.g. children's centres) have no DfE number
        return None, None
    if not _dfe_part(est, 4):
        return None, "EstablishmentNumber: 4 digits expected"
    try:
        low, high = _age(row.get("low_age", ""), "StatutoryLowAge"), _age(row.get("high_age", ""), "StatutoryHighAge")
        closes = _close_date(row.get("close_date", ""))
    except ValueError as exc:
        return None, str(exc)
    school = School(
        dfe=la + est,
        urn=urn,
        name=row.get("name", ""),
        la_code=la,
        status=row.get("status", ""),
        phase=row.get("phase", ""),
        first_year=year_of_low_age(low) if low is not None else None,
        last_year=year_of_high_age(high) if high is not None else None,
        close_date=closes,
    )
    return school, None


def parse_register(content: bytes) -> list[School]:
    """The schools of a GIAS export (``read_register`` without the report of skipped rows)."""
    return read_register(content).schools


# --- the register in the database (administrator's connection) -----------------------------------------


@dataclass(frozen=True)
class LoadReport:
    schools: int
    open: int
    closed: int
    outside: int  # schools of another local authority (kept: children cross borders)
    sha256: str
    skipped: list[dict] = field(default_factory=list)  # rows left out: {"row": n, "reason": …}
    unreadable_bytes: int = 0


def _report(read: RegisterRead, la_codes: list[str], digest: str) -> LoadReport:
    schools = read.schools
    return LoadReport(
        schools=len(schools),
        open=sum(s.is_open for s in schools),
        closed=sum(not s.is_open for s in schools),
        outside=sum(s.la_code not in la_codes for s in schools),
        sha256=digest,
        skipped=[{"row": r, "reason": why} for r, why in read.skipped],
        unreadable_bytes=read.unreadable_bytes,
    )


async def load_register(
    conn, content: bytes, origin: str, actor: str, la_codes: list[str], protocol_version: str
) -> LoadReport:
    """Replace the register with this export, in one transaction, audited."""
    import hashlib

    from .keystore import audit

    read = read_register(content)
    schools = read.schools
    digest = hashlib.sha256(content).hexdigest()
    async with conn.transaction():
        await conn.execute("DELETE FROM shared.schools")
        await conn.copy_records_to_table(
            "schools",
            schema_name="shared",
            columns=["dfe", "urn", "name", "la_code", "status", "phase", "first_year", "last_year", "close_date"],
            records=[s.as_row() for s in schools],
        )
        await conn.execute(
            "INSERT INTO shared.school_register_loads(sha256, origin, schools, loaded_by) VALUES ($1,$2,$3,$4)",
            digest,
            origin,
            len(schools),
            actor,
        )
        report = _report(read, la_codes, digest)
        await audit(
            conn,
            actor,
            "schools.loaded",
            "schools-register",
            {
                "origin": origin,
                "sha256": digest,
                "schools": report.schools,
                "closed": report.closed,
                "outside_the_la": report.outside,
                "rows_skipped": len(read.skipped),
                "unreadable_bytes": read.unreadable_bytes,
            },
            protocol_version,
        )
    return report
