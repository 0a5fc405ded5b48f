"""Streaming extract readers. Each yields (spreadsheet row number, cells) after the header row;
memory stays flat whatever the file size.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..domain.model import ExtractFileError

CHUNK = 1 << 20


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

    def rows(self) -> Iterator[tuple[int, list[str]]]:
        try:
            with open(self.path, encoding=self.encoding, errors="strict", newline="") as f:
                reader = csv.reader(f)
                row_number = 0
                for cells in reader:
                    row_number += 1
                    if not self.headers:
                        if not any(c.strip() for c in cells):
                            continue  # blank lines above the header
                        self.headers = cells
                        yield 0, cells
                        continue
                    yield row_number, cells
        except csv.Error as exc:
            raise ExtractFileError(f"the file is not readable CSV near row {row_number}: {exc}") from None
        except UnicodeDecodeError:
            raise ExtractFileError(f"the file is not valid {self.encoding}") from None


def open_extract(path: Path, facts: FileFacts) -> CsvExtract:
    suffix = path.suffix.lower()
    if suffix in {".csv", ".txt", ""}:
        return CsvExtract(path, facts.encoding)
    raise ExtractFileError(f"unsupported file type {suffix!r}: ingest reads .csv")
