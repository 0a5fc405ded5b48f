"""The files the SAIS team receives: one CSV per programme, field definitions (§9.4) and a
manifest (§8.4 originator and marking, sources, counts, hashes, delete-by date). Pure.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from datetime import date

from sais_shared.files import safe_cell
from sais_shared.protocol import Protocol
from sais_shared.schoolyear import year_index

SCHOOL_NOT_KNOWN = "School not yet known"


@dataclass(frozen=True)
class Row:
    programme: str
    dose: int | None
    school_dfe: str
    school_name: str
    year_group: str
    surname: str
    forename: str
    date_of_birth: date
    gender: str
    address_lines: list[str]
    postcode: str

    def sort_key(self) -> tuple:
        return (
            self.school_name.casefold(),
            self.school_dfe,
            year_index(self.year_group),
            self.surname.casefold(),
            self.forename.casefold(),
            self.date_of_birth,
        )


@dataclass(frozen=True)
class Column:
    """One column of a programme file. Its definition (§9.4) is the protocol's definition of the
    dataset field it carries, or its own for a column that is not protocol data."""

    header: str
    field: str | None  # the protocol dataset field, or None
    definition: str = ""
    note: str = ""  # how the file shows the protocol field, after its definition


# The programme files' columns and the field definitions both come from this list, so they agree.
FILE_COLUMNS = [
    Column("School DfE number", "school_dfe", note="Blank when the school is not yet known (see School name)."),
    Column(
        "School name",
        "school_name",
        note=f"'{SCHOOL_NOT_KNOWN}' for a child recorded in May at a school that ends before the child's year "
        "group in September (Year 6 at primary school, Year 2 at infant school) and not yet on a later "
        "census or admission: the school the child has left is never shown.",
    ),
    Column("Year group", "year_group"),
    Column("Surname", "surname"),
    Column("Forename", "forename"),
    Column("Date of birth", "date_of_birth"),
    Column("Gender", "gender"),
    *(Column(f"Address line {i}", "address") for i in range(1, 6)),
    Column("Postcode", "postcode"),
    Column("Programme", None, "Immunisation programme the pupil is eligible for in the academic year."),
    Column(
        "Dose",
        None,
        "Dose number of the programme in that year's schedule: HPV dose 1 (Year 8) or 2 (Year 9); HPV is "
        "one dose from 2023/24, shown as 1. Blank for programmes given once (flu, Td/IPV, MenACWY).",
    ),
]
COLUMNS = [c.header for c in FILE_COLUMNS]


def year_group_cell(year_group: str) -> str:
    """As the field definition has it: R for Reception, else the year's number (1-14)."""
    return year_group


@dataclass(frozen=True)
class RenderedFile:
    name: str
    content: bytes
    rows: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


class _Line:
    """csv.writer's file: keeps the last line written."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text


def line_writer(**fmt):
    """One CSV line at a time, CRLF-terminated, from one writer made once (not a writer and a buffer a line)."""
    line = _Line()
    writer = csv.writer(line, lineterminator="\r\n", **fmt)

    def write_line(cells: list[str]) -> str:
        writer.writerow(cells)
        return line.text

    return write_line


_QUOTED_LINE = line_writer(quoting=csv.QUOTE_ALL)


def csv_line(cells: list[str]) -> str:
    """One CSV line, every cell quoted and formula-safe."""
    return _QUOTED_LINE([safe_cell(c) for c in cells])


def _csv(rows: list[list[str]]) -> bytes:
    return ("\ufeff" + "".join(csv_line(r) for r in rows)).encode("utf-8")  # BOM: Excel opens UTF-8 correctly


def row_cells(r: Row) -> list[str]:
    lines = (r.address_lines + [""] * 5)[:5]
    return [
        r.school_dfe,
        r.school_name or SCHOOL_NOT_KNOWN,
        year_group_cell(r.year_group),
        r.surname,
        r.forename,
        r.date_of_birth.strftime("%d/%m/%Y"),
        r.gender,
        *lines,
        r.postcode,
        r.programme,
        "" if r.dose is None else str(r.dose),
    ]


def row_bytes(r: Row) -> int:
    """Bytes this row takes in its CSV file (what a part's size is planned from)."""
    return len(csv_line(row_cells(r)).encode("utf-8"))


def keyed_line(r: Row) -> bytes:
    """A row as one compact bytes value, its sort key first: what a large file is built from (no Row
    object kept, and no wide string: a part of 100,000 children stays a few tens of MB)."""
    key = "\x00".join(
        (
            r.school_name.casefold(),
            r.school_dfe,
            f"{year_index(r.year_group):02d}",
            r.surname.casefold(),
            r.forename.casefold(),
            r.date_of_birth.isoformat(),
        )
    )
    return key.replace("\x01", "").encode("utf-8") + b"\x01" + csv_line(row_cells(r)).encode("utf-8")


def programme_file(name: str, rows: list[Row]) -> RenderedFile:
    return programme_file_from_lines(name, [keyed_line(r) for r in rows])


def programme_file_from_lines(name: str, lines: list[bytes]) -> RenderedFile:
    """``lines`` from keyed_line, sorted here (in place) by their keys."""
    lines.sort()
    body = b"".join([("\ufeff" + csv_line(COLUMNS)).encode("utf-8"), *(kl.split(b"\x01", 1)[1] for kl in lines)])
    return RenderedFile(name, body, len(lines))


def field_definitions(protocol: Protocol) -> RenderedFile:
    """One definition per column of the programme files, in their order (address lines share one)."""
    by_name = {f.name: f for f in protocol.dataset}
    rows, seen = [["Field", "Definition"]], set()
    for c in FILE_COLUMNS:
        if c.field is None:
            rows.append([c.header, c.definition])
        elif c.field not in seen:
            f = by_name[c.field]
            header = "Address lines 1-5" if c.field == "address" else c.header
            rows.append([header, f"{f.definition} (ISP dataset: {f.label})" + (f" {c.note}" if c.note else "")])
        if c.field:
            seen.add(c.field)
    return RenderedFile("field-definitions.csv", _csv(rows), len(rows) - 1)


def _transfer(protocol: Protocol) -> dict[str, str | None]:
    return {
        "method": protocol.transfer.method,
        "as_written": protocol.transfer.as_written,
        "why_it_differs": protocol.transfer.method_reason,
    }


def manifest(
    *,
    batch_id: str,
    protocol: Protocol,
    window: str,
    academic_year: str,
    files: list[RenderedFile],
    sources: list[dict],
    counts: dict[str, int],
    delete_by: date,
    prepared_at: str,
    replaces_batch: str | None,
    part: dict | None = None,
    coverage_gaps: list[str] | None = None,
    mavis: dict | None = None,
) -> RenderedFile:
    """``counts`` are this message's; ``part`` says which part of the batch it is (number, of, the
    batch's counts and schools), so each message can be checked on its own. ``coverage_gaps``: the
    children the year's programmes need whom the protocol does not request (None: not checked)."""
    doc = {
        "batch_id": batch_id,
        "protective_marking": protocol.protective_marking,
        "originator": protocol.originator_label,
        "protocol": {"id": protocol.id, "version": protocol.version},
        "purpose": protocol.purpose,
        "window": window,
        "academic_year": academic_year,
        "prepared_at": prepared_at,
        "replaces_batch": replaces_batch,
        "delete_by": delete_by.isoformat(),
        "retention": f"Delete by {delete_by.isoformat()}: {protocol.retention_months} months from transfer "
        "(ISP §11.1).",
        "transfer": _transfer(protocol),
        "part": part or {"number": 1, "of": 1},
        "counts": counts,
        "cohort_complete": None if coverage_gaps is None else not coverage_gaps,
        "cohort_gaps": coverage_gaps or [],
        "sources": sources,
        "files": [{"name": f.name, "rows": f.rows, "sha256": f.sha256} for f in files],
    }
    if mavis is not None:  # the Mavis cohort-import files: rows written, and rows left out (by school and reason)
        doc["mavis_cohort_import"] = {
            "files": [f.name for f in files if f.name.startswith("mavis-")],
            **mavis,
            "note": "Every row left out is still in the programme file; a row Mavis would refuse is never written.",
        }
    return RenderedFile("manifest.json", json.dumps(doc, indent=2).encode(), len(files))


def body_text(
    protocol: Protocol,
    *,
    window: str,
    academic_year: str,
    counts: dict[str, int],
    delete_by: date,
    batch_id: str,
    part_no: int = 1,
    part_count: int = 1,
) -> str:
    """The message body: no personal data, only what the files are and how to handle them."""
    of = (
        []
        if part_count == 1
        else [
            f"This is part {part_no} of {part_count} of the batch: each part holds whole schools and",
            "is complete on its own; the counts below are this part's.",
            "",
        ]
    )
    lines = [
        protocol.protective_marking,
        "",
        f"Pupil data for the {academic_year} school immunisation programmes ({window} delivery),",
        f"shared under the Information Sharing Protocol '{protocol.id}' v{protocol.version}.",
        *of,
        f"Originator: {protocol.originator_label}.",
        "",
        "Records per programme:",
        *[f"  {k}: {v}" for k, v in sorted(counts.items())],
        "",
        "The attached field-definitions.csv describes every column (ISP §9.4); manifest.json lists the",
        "sources, counts and the SHA-256 of each file.",
        f"Delete this data by {delete_by.isoformat()} (ISP §11.1). Use it only for the purpose of the protocol.",
        f"Batch {batch_id}.",
        "",
        protocol.protective_marking,
    ]
    return "\r\n".join(lines) + "\r\n"
