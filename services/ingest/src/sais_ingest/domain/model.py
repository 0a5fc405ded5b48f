"""What ingest decides about each row: accepted, rejected (with field and reason) or out of scope."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sais_shared.errors import SaisError


@dataclass(frozen=True)
class Problem:
    """A named check that failed. ``reason`` never quotes the value (it may be personal data)."""

    field: str
    code: str
    reason: str


@dataclass(frozen=True)
class CleanRow:
    row_number: int
    school_dfe: str
    school_name: str
    year_group: str
    surname: str
    forename: str
    date_of_birth: date
    gender: str
    address_lines: list[str]
    postcode: str
    warnings: list[Problem] = field(default_factory=list)


@dataclass(frozen=True)
class Rejected:
    row_number: int
    problems: list[Problem]


@dataclass(frozen=True)
class OutOfScope:
    """Valid, but not a year group/sex this source is asked for (ISP §6.1, §10.1): not forwarded."""

    row_number: int
    year_group: str
    gender: str


Outcome = CleanRow | Rejected | OutOfScope


class ExtractFileError(SaisError):
    """The file as a whole cannot be read (encoding, no header, a required column missing), or an
    extract is refused as a whole (a replacement that withdraws too much). ``code`` names the rule."""

    code = "file.unreadable"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code:
            self.code = code
