"""Streaming extract readers. Each yields (spreadsheet row number, cells) after the header row;
memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import openpyxl
from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml import ElementTree as DefusedET

from ..domain.headers import map_headers
from ..domain.model import ExtractFileError

CHUNK = 1 << 20
HEADER_LOOKAHEAD = 10  # non-blank rows searched for the header row (title and instruction rows above it)


def with_header_row(raw: Iterator[tuple[int, list[str]]], found: Callable[[int, list[str]], None]
                    ) -> Iterator[tuple[int, list[str]]]:  # fmt: skip
    """From a sheet's rows as (row number as shown, cells): ``(0, headers)``, then the rows below it.
    The header row is the one, among the first few non-blank rows, whose cells match the most known
    headers (a title such as "Summer census 2017 extract" above it matches none); rows above it are
    skipped, and row numbers stay the ones the spreadsheet shows. ``found(row number, headers)``
    is told which row was taken."""
    buffered: list[tuple[int, list[str]]] = []  # every row read ahead, blank ones too (they keep numbers)
    candidates: list[int] = []  # positions in ``buffered`` of the non-blank rows
    for row_number, cells in raw:
        buffered.append((row_number, cells))
        if any(c.strip() for c in cells):
            candidates.append(len(buffered) - 1)
            if len(candidates) == HEADER_LOOKAHEAD:
                break
    if not candidates:
        return
    scores = {i: len(map_headers(buffered[i][1])[0]) for i in candidates}
    best = max(candidates, key=lambda i: (scores[i], -i)) if max(scores.values()) else candidates[0]
    header_number, headers = buffered[best]
    found(header_number, headers)
    yield 0, headers
    yield from buffered[best + 1 :]
    yield from raw


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    encoding: str


def inspect_file(path: Path) -> FileFacts:
    """One streaming pass: content hash, and UTF-8 (with or without BOM) vs Windows-1252."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    size = 0
    first = b""
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            if not first:
                first = chunk[:4]
            size += len(chunk)
            digest.update(chunk)
            if utf8:
                try:
                    decoder.decode(chunk)
                except UnicodeDecodeError:
                    utf8 = False
    if utf8:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8 = False
    if first.startswith(codecs.BOM_UTF16_LE) or first.startswith(codecs.BOM_UTF16_BE):
        encoding = "utf-16"
    elif utf8:
        encoding = "utf-8-sig"  # strips a BOM when there is one
    else:
        encoding = "cp1252"
    return FileFacts(digest.hexdigest(), size, encoding)


class CsvExtract:
    """CSV as people produce it: any of the encodings above, CRLF or LF, quoted newlines."""

    def __init__(self, path: Path, encoding: str) -> None:
        self.path = path
        self.encoding = encoding
        self.headers: list[str] = []
        self.header_row = 1

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        row_number = 0

        def raw() -> Iterator[tuple[int, list[str]]]:
            nonlocal row_number
            with open(self.path, encoding=self.encoding, errors="strict", newline="") as f:
                for cells in csv.reader(f):
                    row_number += 1
                    yield row_number, cells

        try:
            yield from with_header_row(raw(), self._found)
        except csv.Error as exc:
            raise ExtractFileError(f"the file is not readable CSV near row {row_number}: {exc}") from None
        except UnicodeDecodeError:
            raise ExtractFileError(f"the file is not valid {self.encoding}") from None

    def _found(self, row_number: int, headers: list[str]) -> None:
        self.header_row, self.headers = row_number, headers


def _cell_text(v: object) -> str:
    if v is None:
        return ""
    if isinstance(v, datetime):
        return v.date().isoformat()
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


class XlsxExtract:
    """Excel workbook, first sheet, read in streaming (read-only) mode; row numbers as Excel shows them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headers: list[str] = []
        self.header_row = 1

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        try:
            wb = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise ExtractFileError(f"the file is not a readable .xlsx workbook: {type(exc).__name__}") from None
        try:
            ws = wb.worksheets[0]
            raw = ((n, [_cell_text(v) for v in values]) for n, values in enumerate(ws.iter_rows(values_only=True), 1))
            yield from with_header_row(raw, self._found)
        finally:
            wb.close()

    def _found(self, row_number: int, headers: list[str]) -> None:
        self.header_row, self.headers = row_number, headers


CTF_HEADERS = [
    "School DfE Number",
    "School Name",
    "Year Group",
    "Surname",
    "Forename",
    "DOB",
    "Gender",
    "SAON",
    "PAON",
    "Street",
    "Locality",
    "Town",
    "County",
    "Address Line 1",
    "Address Line 2",
    "Address Line 3",
    "Address Line 4",
    "Address Line 5",
    "Postcode",
]
_USED_CTF = {
    "Surname",
    "LegalSurname",
    "Forename",
    "LegalForename",
    "DOB",
    "Sex",
    "Gender",
    "BasicDetails",
    "Address",
    "NCyearActual",
}


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find_text(el, *names: str) -> str:
    for node in el.iter():
        if _local(node.tag) in names and node.text and node.text.strip():
            return node.text.strip()
    return ""


class CtfExtract:
    """DfE Common Transfer File (XML): one record per <Pupil>, school from the header's SourceSchool.
    Parsed streaming and safely: DTDs, entities and external references are refused (defusedxml)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.headers = CTF_HEADERS
        self.dropped: set[str] = set()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        yield 0, CTF_HEADERS
        school_dfe = school_name = ""
        n = 0
        try:
            for _event, el in DefusedET.iterparse(
                str(self.path), events=("end",), forbid_dtd=True, forbid_entities=True, forbid_external=True
            ):
                tag = _local(el.tag)
                if tag == "SourceSchool":
                    school_dfe = _find_text(el, "LEA") + _find_text(el, "Estab")
                    school_name = _find_text(el, "SchoolName")
                elif tag == "Pupil":
                    n += 1
                    yield n, self._pupil(el, school_dfe, school_name)
                    el.clear()  # flat memory: a processed pupil is dropped
        except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as exc:
            raise ExtractFileError(
                f"the XML file uses a DTD or entities, which are refused: {type(exc).__name__}"
            ) from None
        except DefusedET.ParseError as exc:
            raise ExtractFileError(f"the XML file is not well formed (after record {n}): {exc}") from None
        if n == 0 and not school_dfe:
            raise ExtractFileError("no <Pupil> records and no <SourceSchool>: not a Common Transfer File")

    @staticmethod
    def _own(el, *names: str) -> str:
        """A pupil's own value: a direct child, or one inside BasicDetails — never a contact's (parents)."""
        scopes = [el] + [c for c in el if _local(c.tag) == "BasicDetails"]
        for scope in scopes:
            for c in scope:
                if _local(c.tag) in names and c.text and c.text.strip():
                    return c.text.strip()
        return ""

    def _pupil(self, el, school_dfe: str, school_name: str) -> list[str]:
        self.dropped |= {_local(c.tag) for c in el} - _USED_CTF
        scopes = [el] + [c for c in el if _local(c.tag) == "BasicDetails"]
        addr = next((c for scope in scopes for c in scope if _local(c.tag) == "Address"), None)
        bs = {
            k: _find_text(addr, k) if addr is not None else ""
            for k in ("SAON", "PAON", "Street", "Locality", "Town", "AdministrativeArea", "PostTown")
        }
        lines = [_find_text(addr, f"AddressLine{i}") if addr is not None else "" for i in range(1, 6)]
        own = self._own
        return [
            school_dfe,
            school_name,
            own(el, "NCyearActual"),
            own(el, "LegalSurname", "Surname"),
            own(el, "LegalForename", "Forename"),
            own(el, "DOB"),
            own(el, "Sex", "Gender"),
            bs["SAON"],
            bs["PAON"],
            bs["Street"],
            bs["Locality"],
            bs["Town"] or bs["PostTown"],
            bs["AdministrativeArea"],
            *lines,
            _find_text(addr, "PostCode", "Postcode") if addr is not None else "",
        ]


def open_extract(path: Path, facts: FileFacts) -> CsvExtract | XlsxExtract | CtfExtract:
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt", ""}:
        return CsvExtract(path, facts.encoding)
    if suffix == ".xlsx":
        return XlsxExtract(path)
    if suffix == ".xml":
        return CtfExtract(path)
    raise ExtractFileError(f"unsupported file type {suffix!r}: ingest reads .csv, .xlsx and CTF .xml")
