"""Streaming extract readers. Each yields (spreadsheet row number, cells) after the header row;
memory stays flat whatever the file size, and everything a file can make us do is bounded
(:class:`ReadLimits`): a file over a cap is refused by name, before it costs memory or time.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml import ElementTree as DefusedET

from ..domain.files import FileFacts, ReadLimits
from ..domain.headers import map_headers
from ..domain.model import ExtractFileError

CHUNK = 1 << 20
HEADER_LOOKAHEAD = 10  # non-blank rows searched for the header row (title and instruction rows above it)


# A skipped row above the header "looks like a child" when it has several cells and a date of birth.
_DATE_CELL = re.compile(r"\s*(\d{1,2}[/.\-]\d{1,2}[/.\-]\d{2,4}|\d{4}-\d{1,2}-\d{1,2}(?:[T ].*)?)\s*")


def _looks_like_a_child(cells: list[str]) -> bool:
    filled = [c for c in cells if c.strip()]
    return len(filled) >= 4 and any(_DATE_CELL.fullmatch(c) for c in filled)


@dataclass
class HeaderSearch:
    """What the look-ahead found in one sheet: the header row, its score and the rows read so far."""

    header_number: int
    headers: list[str]
    score: int  # known headers it matches
    rest: list[tuple[int, list[str]]]  # rows read after it (to be yielded before the rest of the sheet)


def find_header(raw: Iterator[tuple[int, list[str]]], limits: ReadLimits) -> HeaderSearch | None:
    """Among the first few non-blank rows (within ``header_lookahead_rows`` rows), the one whose cells
    match the most known headers. A row above it that looks like a child's record is refused: a header
    that is not the first row must have only titles and instructions above it."""
    buffered: list[tuple[int, list[str]]] = []  # every row read ahead, blank ones too (they keep numbers)
    candidates: list[int] = []  # positions in ``buffered`` of the non-blank rows
    for row_number, cells in raw:
        buffered.append((row_number, cells))
        if any(c.strip() for c in cells):
            candidates.append(len(buffered) - 1)
            if len(candidates) == HEADER_LOOKAHEAD:
                break
        if len(buffered) >= limits.header_lookahead_rows:
            break
    if not candidates:
        return None
    scores = {i: len(map_headers(buffered[i][1])[0]) for i in candidates}
    best = max(candidates, key=lambda i: (scores[i], -i)) if max(scores.values()) else candidates[0]
    for i in candidates:
        if i < best and _looks_like_a_child(buffered[i][1]):
            raise ExtractFileError(
                f"row {buffered[i][0]}, above the header row {buffered[best][0]}, looks like a pupil's record "
                "(several cells and a date); only a title or instructions may stand above the header. Move the "
                "header to the top, or the row below it",
                code="file.row-above-header",
            )
    header_number, headers = buffered[best]
    return HeaderSearch(header_number, headers, scores[best], buffered[best + 1 :])


def bounded(rows: Iterator[tuple[int, list[str]]], limits: ReadLimits) -> Iterator[tuple[int, list[str]]]:
    """Rows within the caps on rows, columns, cell length and blank runs; a row past one is a refusal."""
    blank = 0
    for n, cells in rows:
        if n > limits.max_rows:
            raise ExtractFileError(
                f"the file has more than {limits.max_rows:,} rows (SAIS_INGEST_MAX_ROWS): split it by school",
                code="file.too-many-rows",
            )
        while cells and not cells[-1].strip():
            cells = cells[:-1]  # trailing empty cells are not columns
        if not cells:
            blank += 1
            if blank > limits.max_blank_run:
                raise ExtractFileError(
                    f"rows {n - blank + 1}–{n} are all blank, more than {limits.max_blank_run:,} in a row "
                    "(SAIS_INGEST_MAX_BLANK_RUN): delete the empty rows (often formatting down to the sheet's last "
                    "row) and export again",
                    code="file.blank-rows",
                )
            yield n, cells
            continue
        blank = 0
        if len(cells) > limits.max_columns:
            raise ExtractFileError(
                f"row {n} has {len(cells)} columns, more than {limits.max_columns} (SAIS_INGEST_MAX_COLUMNS)",
                code="file.too-many-columns",
            )
        if any(len(c) > limits.max_field_chars for c in cells):
            raise ExtractFileError(
                f"row {n} has a cell longer than {limits.max_field_chars:,} characters "
                "(SAIS_INGEST_MAX_FIELD_CHARS): not a value an extract holds",
                code="file.field-too-long",
            )
        yield n, cells


def with_header_row(
    raw: Iterator[tuple[int, list[str]]],
    found: Callable[[int, list[str]], None],
    limits: ReadLimits | None = None,
) -> Iterator[tuple[int, list[str]]]:
    """From a sheet's rows as (row number as shown, cells): ``(0, headers)``, then the rows below it.
    The header row is the one, among the first few non-blank rows, whose cells match the most known
    headers (a title such as "Summer census 2017 extract" above it matches none); rows above it are
    skipped, and row numbers stay the ones the spreadsheet shows. ``found(row number, headers)``
    is told which row was taken."""
    limits = limits or ReadLimits()
    raw = bounded(raw, limits)
    search = find_header(raw, limits)
    if search is None:
        return
    found(search.header_number, search.headers)
    yield 0, search.headers
    yield from search.rest
    yield from raw


def _utf16_without_bom(head: bytes) -> str | None:
    """UTF-16 text without a byte-order mark: every other byte is NUL (ASCII text in 2 bytes)."""
    sample = head[: 4096 - (len(head[:4096]) % 2)]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    if odd > 0.3 * half and even < 0.05 * half:
        return "utf-16-le"
    if even > 0.3 * half and odd < 0.05 * half:
        return "utf-16-be"
    return None


def inspect_file(path: Path, limits: ReadLimits | None = None) -> FileFacts:
    """One streaming pass: content hash, and which text encoding (UTF-8 with or without BOM, UTF-16 with
    or without BOM, else Windows-1252) or which kind of binary file it is. Refuses what is not a regular
    file (a pipe or a device would hang or never end) and a file over the size cap."""
    limits = limits or ReadLimits()
    _check_regular_and_size(path, limits)
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    utf8 = True
    size = 0
    head = b""
    nul = False  # a NUL byte anywhere: binary, unless the text is UTF-16
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            nul = nul or b"\x00" in chunk
            if len(head) < 4096:
                head += chunk[: 4096 - len(head)]
            size += len(chunk)
            if size > limits.max_file_bytes:  # it grew while we read it
                raise ExtractFileError("the file grew past the size cap while it was read", code="file.too-large")
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
    encoding, kind = _kind_of(head, nul=nul, utf8=utf8)
    return FileFacts(digest.hexdigest(), size, encoding, kind)


def _check_regular_and_size(path: Path, limits: ReadLimits) -> None:
    """Refuse what is not a regular file (a pipe or a device would hang or never end), or is over the cap."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ExtractFileError(f"the file cannot be read: {exc.strerror}", code="file.unreadable") from None
    if not stat.S_ISREG(st.st_mode):
        raise ExtractFileError(
            "not a regular file (a pipe, device or folder): ingest reads files only", code="file.not-regular"
        )
    if st.st_size > limits.max_file_bytes:
        raise ExtractFileError(
            f"the file is {st.st_size:,} bytes, more than {limits.max_file_bytes:,} (SAIS_INGEST_MAX_FILE_BYTES)",
            code="file.too-large",
        )


def _kind_of(head: bytes, *, nul: bool, utf8: bool) -> tuple[str, str]:
    """(text encoding, kind) from the file's first bytes and what the whole pass found."""
    if head.startswith(codecs.BOM_UTF16_LE) or head.startswith(codecs.BOM_UTF16_BE):
        return "utf-16", "text"
    if bom_less := _utf16_without_bom(head):
        return bom_less, "text"
    if head.startswith(b"PK\x03\x04"):
        return "binary", "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "binary", "ole2"
    if nul:
        return "binary", "binary"
    return ("utf-8-sig" if utf8 else "cp1252"), "text"  # utf-8-sig strips a BOM when there is one


def _delimiter(path: Path, encoding: str) -> str:
    """Comma, or tab for Excel's "Unicode Text" and other tab-separated exports, or semicolon: whichever
    the first line has most of."""
    with open(path, encoding=encoding, errors="replace", newline="") as f:
        first = f.readline(64 * 1024)
    counts = {d: first.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _limited_lines(f, max_chars: int, where: Callable[[], int]) -> Iterator[str]:
    """The file's lines, each at most ``max_chars`` long (a row with no line break would be read whole)."""
    while line := f.readline(max_chars + 1):
        if len(line) > max_chars and not line.endswith(("\n", "\r")):
            raise ExtractFileError(
                f"row {where()} is longer than {max_chars:,} characters (SAIS_INGEST_MAX_LINE_CHARS): not a "
                "line of an extract",
                code="file.line-too-long",
            )
        yield line


class CsvExtract:
    """CSV as people produce it: any of the encodings above, CRLF or LF, quoted newlines; commas, or tabs
    (Excel's "Unicode Text"), or semicolons."""

    def __init__(self, path: Path, encoding: str, limits: ReadLimits | None = None) -> None:
        self.path = path
        self.encoding = encoding
        self.limits = limits or ReadLimits()
        self.headers: list[str] = []
        self.header_row = 1
        self.delimiter = ","

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        row_number = 0
        limits = self.limits

        def raw() -> Iterator[tuple[int, list[str]]]:
            nonlocal row_number
            csv.field_size_limit(limits.max_field_chars + 1)
            with open(self.path, encoding=self.encoding, errors="strict", newline="") as f:
                lines = _limited_lines(f, limits.max_line_chars, lambda: row_number + 1)
                for cells in csv.reader(lines, delimiter=self.delimiter):
                    row_number += 1
                    yield row_number, cells

        try:
            self.delimiter = _delimiter(self.path, self.encoding)
            yield from with_header_row(raw(), self._found, limits)
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise ExtractFileError(
                    f"row {row_number + 1} has a cell longer than {limits.max_field_chars:,} characters "
                    "(SAIS_INGEST_MAX_FIELD_CHARS): not a value an extract holds",
                    code="file.field-too-long",
                ) from None
            raise ExtractFileError(
                f"the file is not readable CSV at row {row_number + 1}: {exc}", code="file.csv"
            ) from None
        except UnicodeDecodeError:
            raise ExtractFileError(
                f"the file is not valid {self.encoding} text at row {row_number + 1}: export it again as CSV UTF-8",
                code="file.encoding",
            ) from None

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


def check_workbook(path: Path, limits: ReadLimits) -> list[str]:
    """Before a workbook is opened: every part's unpacked size and packing ratio within the caps (a small
    file that unpacks to gigabytes is refused here, not found out by running out of memory). Returns the
    worksheet parts."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise ExtractFileError("the file is not a readable .xlsx workbook (not a zip file)", code="file.xlsx") from None
    with zf:
        sheets = []
        for info in zf.infolist():
            if info.file_size > limits.max_xlsx_member_bytes:
                raise ExtractFileError(
                    f"the workbook's part {info.filename} unpacks to {info.file_size:,} bytes, more than "
                    f"{limits.max_xlsx_member_bytes:,} (SAIS_INGEST_MAX_XLSX_MEMBER_BYTES)",
                    code="file.xlsx-too-large",
                )
            if info.file_size > 1 << 20 and info.file_size > limits.max_xlsx_ratio * max(info.compress_size, 1):
                raise ExtractFileError(
                    f"the workbook's part {info.filename} unpacks {info.file_size // max(info.compress_size, 1):,} "
                    f"times larger than it is stored, more than {limits.max_xlsx_ratio} (SAIS_INGEST_MAX_XLSX_RATIO): "
                    "a real sheet does not; save it again from Excel, or as CSV",
                    code="file.xlsx-ratio",
                )
            if info.filename.lower().endswith("sharedstrings.xml") and info.file_size > limits.max_shared_strings_bytes:
                raise ExtractFileError(
                    f"the workbook's table of text values is {info.file_size:,} bytes, more than "
                    f"{limits.max_shared_strings_bytes:,} (SAIS_INGEST_MAX_SHARED_STRINGS_BYTES): save it as CSV",
                    code="file.xlsx-strings",
                )
            if info.filename.startswith("xl/worksheets/") and info.filename.endswith(".xml"):
                sheets.append(info.filename)
        return sheets


def _column(ref: str) -> int:
    """``"XFD12"`` → 16384: the column number of a cell reference."""
    n = 0
    for ch in ref:
        if not ch.isalpha():
            break
        n = n * 26 + (ord(ch.upper()) - 64)
    return n


def scan_sheet(path: Path, part: str, limits: ReadLimits) -> None:
    """One streaming pass over a sheet part before it is opened: a cell beyond the column cap (the
    reader would pad every row out to it), or a formula with no saved value (a workbook written by a
    program that does not calculate, or never saved in Excel, holds no value to read), is refused by
    the cell it is in."""
    with zipfile.ZipFile(path) as zf, zf.open(part) as f:
        depth = 0
        for event, el in DefusedET.iterparse(
            f, events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
        ):
            if event == "start":
                depth += 1
                if depth > limits.max_xml_depth:
                    raise ExtractFileError("the workbook's XML is nested too deeply", code="file.xml-depth")
                continue
            depth -= 1
            tag = _local(el.tag)
            if tag == "c":
                ref = el.get("r") or ""
                if ref and _column(ref) > limits.max_columns:
                    raise ExtractFileError(
                        f"cell {ref} is in column {_column(ref):,}, beyond the {limits.max_columns} columns an extract "
                        "may have (SAIS_INGEST_MAX_COLUMNS): delete what is there, or copy the data to a new sheet",
                        code="file.too-many-columns",
                    )
                kids = {_local(k.tag): k for k in el}
                v = kids.get("v")
                if "f" in kids and (v is None or not (v.text or "").strip()):  # no <v>, or an empty one
                    raise ExtractFileError(
                        f"cell {ref or '?'} of the workbook holds a formula without a saved value (the file was not "
                        "saved in Excel, so the value is not in it): open it in Excel and save it, then ingest it again",
                        code="file.formula-without-value",
                    )
            elif tag == "row":
                el.clear()


class XlsxExtract:
    """Excel workbook, read in streaming (read-only) mode; the first sheet that has a header row (the
    report names it when it is not the first); row numbers as Excel shows them."""

    def __init__(self, path: Path, limits: ReadLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ReadLimits()
        self.headers: list[str] = []
        self.header_row = 1
        self.sheet: str | None = None

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        limits = self.limits
        for part in check_workbook(self.path, limits):
            scan_sheet(self.path, part, limits)
        try:
            import openpyxl  # here, not at import: a tenth of a second of every CLI call that reads no workbook

            wb = openpyxl.load_workbook(self.path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
            raise ExtractFileError(
                f"the file is not a readable .xlsx workbook: {type(exc).__name__}", code="file.xlsx"
            ) from None
        try:
            chosen = None
            for ws in wb.worksheets:
                raw = bounded(self._raw(ws), limits)
                search = find_header(raw, limits)
                if search is None:
                    continue
                if chosen is None or search.score > chosen[1].score:
                    chosen = (ws, search, raw)
                if search.score >= 4:  # a real header row: take the first sheet that has one
                    break
            if chosen is None:
                return
            ws, search, raw = chosen
            if ws is not wb.worksheets[0]:
                self.sheet = ws.title
            self.header_row, self.headers = search.header_number, search.headers
            yield 0, search.headers
            yield from search.rest
            yield from raw
        finally:
            wb.close()

    def _raw(self, ws) -> Iterator[tuple[int, list[str]]]:
        cap = self.limits.max_columns + 1  # one more than allowed: a wide row is seen and refused by name
        for n, values in enumerate(ws.iter_rows(values_only=True, max_col=cap), 1):
            yield n, [_cell_text(v) for v in values]


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

    def __init__(self, path: Path, limits: ReadLimits | None = None) -> None:
        self.path = path
        self.limits = limits or ReadLimits()
        self.headers = CTF_HEADERS
        self.dropped: set[str] = set()

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        yield 0, CTF_HEADERS
        school_dfe = school_name = ""
        n = depth = 0
        try:
            for event, el in DefusedET.iterparse(
                str(self.path), events=("start", "end"), forbid_dtd=True, forbid_entities=True, forbid_external=True
            ):
                if event == "start":
                    depth += 1
                    if depth > self.limits.max_xml_depth:
                        raise ExtractFileError(
                            f"the XML is nested more than {self.limits.max_xml_depth} deep (SAIS_INGEST_MAX_XML_DEPTH): "
                            "not a Common Transfer File",
                            code="file.xml-depth",
                        )
                    continue
                depth -= 1
                tag = _local(el.tag)
                if tag == "SourceSchool":
                    school_dfe = _find_text(el, "LEA") + _find_text(el, "Estab")
                    school_name = _find_text(el, "SchoolName")
                elif tag == "Pupil":
                    n += 1
                    if n > self.limits.max_rows:
                        raise ExtractFileError(
                            f"the file has more than {self.limits.max_rows:,} pupils (SAIS_INGEST_MAX_ROWS)",
                            code="file.too-many-rows",
                        )
                    cells = self._pupil(el, school_dfe, school_name)
                    if any(len(c) > self.limits.max_field_chars for c in cells):
                        raise ExtractFileError(
                            f"pupil {n} has a value longer than {self.limits.max_field_chars:,} characters "
                            "(SAIS_INGEST_MAX_FIELD_CHARS)",
                            code="file.field-too-long",
                        )
                    yield n, cells
                    el.clear()  # flat memory: a processed pupil is dropped
        except (DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden) as exc:
            raise ExtractFileError(
                f"the XML file uses a DTD or entities, which are refused: {type(exc).__name__}", code="file.xml-dtd"
            ) from None
        except DefusedET.ParseError as exc:
            raise ExtractFileError(
                f"the XML file is not well formed (after record {n}): {exc}", code="file.xml"
            ) from None
        if n == 0 and not school_dfe:
            raise ExtractFileError(
                "no <Pupil> records and no <SourceSchool>: not a Common Transfer File", code="file.not-ctf"
            )

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


def open_extract(
    path: Path, facts: FileFacts, limits: ReadLimits | None = None
) -> CsvExtract | XlsxExtract | CtfExtract:
    limits = limits or ReadLimits()
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt", ".tsv", ""}:
        if facts.kind == "zip":
            raise ExtractFileError(
                "the file is an Excel workbook (.xlsx) or another zip file, not CSV text: give it its .xlsx name, "
                "or save it as CSV",
                code="file.not-text",
            )
        if facts.kind == "ole2":
            raise ExtractFileError(
                "the file is an old Excel workbook (.xls), not CSV text: save it as .xlsx or CSV UTF-8",
                code="file.not-text",
            )
        if facts.kind == "binary":
            raise ExtractFileError("the file is not text (it holds NUL bytes): not a CSV export", code="file.not-text")
        return CsvExtract(path, facts.encoding, limits)
    if suffix == ".xlsx":
        if facts.kind != "zip":
            raise ExtractFileError(
                "the file is named .xlsx but is not an Excel workbook (not a zip file)", code="file.xlsx"
            )
        return XlsxExtract(path, limits)
    if suffix == ".xml":
        return CtfExtract(path, limits)
    if suffix == ".xls":
        raise ExtractFileError(
            "old Excel workbooks (.xls) are not read: save it as .xlsx or CSV UTF-8", code="file.type"
        )
    raise ExtractFileError(
        f"unsupported file type {suffix!r}: ingest reads .csv (or tab-separated .txt), .xlsx and CTF .xml",
        code="file.type",
    )


class FileReaders:
    """The extract readers behind the service layer's ``ExtractFiles`` port, under one set of limits."""

    def __init__(self, limits: ReadLimits | None = None) -> None:
        self.limits = limits or ReadLimits()

    def inspect(self, path: Path) -> FileFacts:
        return inspect_file(path, self.limits)

    def open(self, path: Path, facts: FileFacts) -> CsvExtract | XlsxExtract | CtfExtract:
        return open_extract(path, facts, self.limits)


__all__ = ["FileFacts", "FileReaders", "ReadLimits", "inspect_file", "open_extract"]
