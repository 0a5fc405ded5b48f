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
