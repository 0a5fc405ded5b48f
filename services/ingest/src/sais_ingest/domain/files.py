"""What ingest knows of a file before reading its rows, and the caps on what one file may make it do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ReadLimits:
    """Caps on what one file can make ingest do; each is a setting (SAIS_INGEST_MAX_*)."""

    max_file_bytes: int = 1 << 30  # 1 GiB
    max_rows: int = 2_000_000
    max_columns: int = 200
    max_field_chars: int = 32_767  # Excel's own limit on a cell
    max_line_chars: int = 1_000_000
    header_lookahead_rows: int = 100  # rows read (blank ones too) looking for the header row
    max_blank_run: int = 100_000
    max_xlsx_member_bytes: int = 512 << 20  # one part of a workbook, unpacked
    max_xlsx_ratio: int = 100  # unpacked ÷ packed, for parts over 1 MiB
    max_shared_strings_bytes: int = 24 << 20  # Excel's table of strings, held in memory while reading
    max_xml_depth: int = 64


@dataclass(frozen=True)
class FileFacts:
    sha256: str
    size: int
    encoding: str
    kind: str = "text"  # text, zip (an .xlsx), ole2 (an old .xls), binary
