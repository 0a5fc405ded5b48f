"""An extract as ingest records it, and why it may not be ingested right now."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sais_shared.errors import SaisError


@dataclass(frozen=True)
class ExtractRow:
    extract_id: UUID
    content_sha256: str
    source: str
    reference_date: date
    status: str
    rows_in: int
    accepted: int
    rejected: int
    out_of_scope: int
    warnings: int
    supersedes: UUID | None
    file_name: str
    target_academic_year: str
    dropped_columns: list[str]
    protocol_version: str
    key_id: UUID | None = None
    repeated: int = 0
    published: int = 0
    failure_code: str | None = None
    failure: str | None = None
    ingested_by: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by: str | None = None

    @classmethod
    def of(cls, r: Mapping[str, Any]) -> ExtractRow:
        return cls(**{k: r[k] for k in cls.__dataclass_fields__})


@dataclass(frozen=True, slots=True)
class RowProblem:
    """Why a row was rejected, or what a person should check about it (row numbers as in the file)."""

    row_number: int
    kind: str  # rejected | warning | out-of-scope
    field: str
    code: str
    reason: str

    def shown(self) -> dict[str, Any]:
        """As the extract's report lists it."""
        return {"row_number": self.row_number, "field": self.field, "code": self.code, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RowKeys:
    """An accepted row's keyed indices: of the child (name and date of birth) and of all its content."""

    row_number: int
    child_key: str
    content_key: str


@dataclass(frozen=True, slots=True)
class DipSampleRow:
    """A row kept for spot-checking against the source (ISP §9.3), its personal fields sealed (JSON)."""

    row_number: int
    school_dfe: str
    year_group: str
    gender: str
    personal: str


@dataclass(frozen=True, slots=True)
class StagedRecord:
    """One record of an inbound extract as staged: still sealed by the publisher."""

    extract_ref: str
    seq: int
    nonce: str
    ciphertext: str


@dataclass(frozen=True, slots=True)
class InboundHead:
    """An inbound extract's state, and its extract-started event as received (JSON)."""

    status: str  # receiving | incomplete | ingested | refused
    started: str


class ExtractBusyError(SaisError):
    """Another process is ingesting the same extract right now."""


@dataclass(frozen=True)
class Staged:
    """What one run of inbound records did: how many were staged, and the extracts that had records left out
    because they were never started (or their start was refused) or were over their size limit."""

    staged: int
    no_start: list[str]
    over_limit: list[str]
    over_limit_records: int = 0
