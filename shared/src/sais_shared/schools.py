"""The schools register: the DfE's "Get Information about Schools" (GIAS) establishment export,
read into one entry per DfE number (LA code + establishment number, the number the ISP's data
carries), with the school's URN, status and age range as year groups.

GIAS exports are CSV in Windows-1252 (the download page's "all establishment data" file); the
column names carry their coded form (``LA (code)``) or their named form (``EstablishmentStatus
(name)``), and both spellings are accepted. A DfE number listed twice (a school that closed and
reopened under the same number, as some academy conversions do) keeps the open establishment.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
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
        return (self.dfe, self.urn, self.name, self.la_code, self.status, self.phase, self.first_year,
                self.last_year, self.close_date)  # fmt: skip


def year_of_low_age(age: int) -> str:
    """A child of statutory age ``age`` at the start of the year is in year ``age - 4`` (4 → R)."""
    return year_from_index(age - 4)


def year_of_high_age(age: int) -> str:
    """A school whose pupils reach ``age`` teaches to year ``age - 5`` (11 → Year 6, 16 → Year 11)."""
    return year_from_index(max(age - 5, -2))


def _decode(content: bytes) -> str:
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        return content.decode("cp1252")  # GIAS's own encoding


def _age(value: str, row: int, column: str) -> int | None:
    value = value.strip()
    if not value:
        return None
    if not value.isdigit():
        raise RegisterError(f"row {row}, {column}: an age in whole years is expected")
    return int(value)


def _close_date(value: str, row: int) -> date | None:
    value = value.strip()
    if not value:
        return None
    for fmt in ("%d-%m-%Y", "%d/%m/%Y", "%Y-%m-%d"):
        try:
            return datetime.strptime(value, fmt).date()
        except ValueError:
            continue
    raise RegisterError(f"row {row}, CloseDate: a date like 31-08-2016 is expected")


def parse_register(content: bytes) -> list[School]:
    """Every establishment of a GIAS export, one per DfE number. Raises RegisterError naming the row."""
    reader = csv.reader(io.StringIO(_decode(content), newline=""))
    header = next(reader, None) or []
    index: dict[str, int] = {}
    for name, spellings in COLUMNS.items():
        for s in spellings:
            if s in header:
                index[name] = header.index(s)
                break
    missing = [COLUMNS[n][0] for n in REQUIRED if n not in index]
    if missing:
        raise RegisterError(f"row 1: not a GIAS establishment export: no column {', '.join(missing)}")
    by_dfe: dict[str, School] = {}
    for number, values in enumerate(reader, start=2):
        if not any(v.strip() for v in values):
            continue

        def get(name: str) -> str:
            i = index.get(name)
            return values[i].strip() if i is not None and i < len(values) else ""

        urn, la, est = get("urn"), get("la_code"), get("establishment")
        if not (urn.isdigit() and len(urn) == 6):
            raise RegisterError(f"row {number}, URN: 6 digits expected")
        if not la.isdigit() or len(la) != 3:
            raise RegisterError(f"row {number}, LA (code): 3 digits expected")
        if not est:  # some establishment types (e.g. children's centres) have no DfE number
            continue
        if not est.isdigit() or len(est) != 4:
            raise RegisterError(f"row {number}, EstablishmentNumber: 4 digits expected")
        low, high = _age(get("low_age"), number, "StatutoryLowAge"), _age(get("high_age"), number, "StatutoryHighAge")
        school = School(
            dfe=la + est,
            urn=urn,
            name=get("name"),
            la_code=la,
            status=get("status"),
            phase=get("phase"),
            first_year=year_of_low_age(low) if low is not None else None,
            last_year=year_of_high_age(high) if high is not None else None,
            close_date=_close_date(get("close_date"), number),
        )
        held = by_dfe.get(school.dfe)
        if held is None or (school.is_open and not held.is_open):
            by_dfe[school.dfe] = school
    if not by_dfe:
        raise RegisterError("the file holds no establishment with a DfE number")
    return sorted(by_dfe.values(), key=lambda s: s.dfe)


# --- the register in the database (administrator's connection) -----------------------------------------


@dataclass(frozen=True)
class LoadReport:
    schools: int
    open: int
    closed: int
    outside: int  # schools of another local authority (kept: children cross borders)
    sha256: str


async def load_register(conn, content: bytes, origin: str, actor: str, la_codes: list[str],
                        protocol_version: str) -> LoadReport:  # fmt: skip
    """Replace the register with this export, in one transaction, audited."""
    import hashlib

    from .keystore import audit

    schools = parse_register(content)
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
        report = LoadReport(
            schools=len(schools),
            open=sum(s.is_open for s in schools),
            closed=sum(not s.is_open for s in schools),
            outside=sum(s.la_code not in la_codes for s in schools),
            sha256=digest,
        )
        await audit(conn, actor, "schools.loaded", "schools-register",
                    {"origin": origin, "sha256": digest, "schools": report.schools, "closed": report.closed,
                     "outside_the_la": report.outside}, protocol_version)  # fmt: skip
    return report
