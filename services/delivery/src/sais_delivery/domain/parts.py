"""Splitting a batch into messages under a size limit (NHSmail takes at most 35 MB per message,
attachments included). Pure: the service measures each school's rendered rows, this decides.

A part is a list of segments; a segment is a whole school, or a slice of one school's rows when
that school alone is over the limit. Schools are never split otherwise, so each part is useful
to the SAIS team on its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# What the wire costs per byte of CSV: the attachments are base64 in the signed MIME entity (4/3,
# plus CRLF every 76 characters), and the CMS envelope around it is base64 again (4/3, plus line
# ends). 4/3 · 78/76 · 4/3 · 66/64 ≈ 1.88; rounded up.
WIRE_BYTES_PER_CSV_BYTE = 1.9
# Headers, body, signature, certificates, field definitions, manifest and CSV headers of one part.
FIXED_OVERHEAD_BYTES = 256 * 1024
NHSMAIL_LIMIT_BYTES = 35_000_000
DEFAULT_MAX_MESSAGE_BYTES = 30_000_000  # NHSmail's 35 MB less 14 % of room


@dataclass(frozen=True)
class RowSize:
    """The bytes one member's row takes: in its programme file, and in a Mavis file."""

    csv_bytes: int
    mavis_bytes: int

    def planned(self, with_mavis: bool) -> int:
        return self.csv_bytes + (self.mavis_bytes if with_mavis else 0)


@dataclass(frozen=True, slots=True)
class SchoolLoad:
    """What one school's rows in a batch cost: rows, rendered CSV bytes and the largest row."""

    school_dfe: str
    rows: int
    csv_bytes: int
    max_row_bytes: int


@dataclass(frozen=True)
class Segment:
    """A school's rows in a part: all of them, or rows [offset, offset + limit) in batch order."""

    school_dfe: str
    offset: int = 0
    limit: int | None = None

    def as_json(self) -> dict:
        return {"school_dfe": self.school_dfe, "offset": self.offset, "limit": self.limit}


def csv_budget(max_message_bytes: int) -> int:
    """CSV bytes one part may carry so that the message stays under ``max_message_bytes`` on the wire."""
    budget = int((max_message_bytes - FIXED_OVERHEAD_BYTES) / WIRE_BYTES_PER_CSV_BYTE)
    if budget < 4096:
        raise ValueError(f"a maximum message size of {max_message_bytes} bytes leaves no room for data")
    return budget


def plan_parts(schools: Iterable[SchoolLoad], budget: int) -> list[list[Segment]]:
    """Pack schools, in the order given, into as few parts as fit ``budget`` CSV bytes each."""
    parts: list[list[Segment]] = []
    current: list[Segment] = []
    used = 0
    for s in schools:
        if s.csv_bytes > budget:  # this school alone is over the limit: slices of it, each a part
            if current:
                parts.append(current)
                current, used = [], 0
            per = max(1, budget // max(1, s.max_row_bytes))
            parts += [[Segment(s.school_dfe, off, per)] for off in range(0, s.rows, per)]
            continue
        if current and used + s.csv_bytes > budget:
            parts.append(current)
            current, used = [], 0
        current.append(Segment(s.school_dfe))
        used += s.csv_bytes
    if current:
        parts.append(current)
    return parts


def part_suffix(part_no: int, part_count: int) -> str:
    """``-part-2-of-3`` in file names and Message-IDs; nothing when the batch is one message."""
    return "" if part_count == 1 else f"-part-{part_no}-of-{part_count}"
