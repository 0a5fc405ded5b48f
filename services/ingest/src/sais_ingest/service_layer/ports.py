"""What ingest's file use case needs from storage and the key store (PostgreSQL adapters in
``adapters.repository`` and ``sais_shared.keystore``; in-memory fakes in the unit tests)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from datetime import date
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

from sais_shared.crypto import DataKey, KeyEncryptionKey
from sais_shared.keystore import AuditEntry

from ..domain.extracts import DipSampleRow, ExtractRow, InboundHead, RowKeys, RowProblem, Staged, StagedRecord
from ..domain.files import FileFacts


class ExtractStore(Protocol):
    async def audit(self, actor: str, action: str, subject: str, details: dict, protocol_version: str) -> None: ...

    def hold(self, extract_id: UUID) -> AbstractAsyncContextManager[None]: ...

    async def is_held(self, extract_id: UUID) -> bool: ...

    async def identity(self, sha256: str, source: str, reference_date: date, target_year: str) -> ExtractRow | None: ...

    async def attempts(self, sha256: str, source: str, reference_date: date, target_year: str) -> int: ...

    async def end(
        self,
        extract_id: UUID,
        status: str,
        code: str,
        reason: str,
        by: str,
        *,
        published: int,
        audit_entry: AuditEntry | None = None,
    ) -> bool: ...

    async def abandoned(self) -> list[UUID]: ...

    async def unannounced(self) -> list[ExtractRow]: ...

    async def announced(self, extract_id: UUID) -> None: ...

    async def index_rows(self, extract_id: UUID, rows: list[RowKeys]) -> dict[int, int]: ...

    async def same_child_rows(self, extract_id: UUID) -> list[tuple[int, int]]: ...

    async def replacement_effect(self, extract_id: UUID, supersedes: UUID) -> dict[str, int]: ...

    async def discard(self, extract_id: UUID) -> None: ...

    async def get(self, extract_id: UUID) -> ExtractRow | None: ...

    async def latest_completed(self, source: str, reference_date: date, other_than: UUID) -> UUID | None: ...

    async def start(
        self,
        *,
        extract_id: UUID,
        sha256: str,
        source: str,
        reference_date: date,
        target_academic_year: str,
        file_name: str,
        encoding: str,
        supersedes: UUID | None,
        key_id: UUID,
        originator: str,
        protocol_version: str,
        ingested_by: str,
    ) -> None: ...

    async def add_problems(self, extract_id: UUID, rows: list[RowProblem]) -> None: ...

    async def save_dip_sample(self, extract_id: UUID, rows: list[DipSampleRow]) -> None: ...

    async def dip_sample(self, extract_id: UUID) -> list[DipSampleRow]: ...

    async def problems(self, extract_id: UUID, kind: str, limit: int = 1000) -> list[RowProblem]: ...

    async def complete(
        self,
        extract_id: UUID,
        *,
        rows_in: int,
        accepted: int,
        rejected: int,
        out_of_scope: int,
        warnings: int,
        dropped_columns: list[str],
        repeated: int = 0,
        audit_entry: AuditEntry | None = None,
    ) -> None: ...


class ExtractKeys(Protocol):
    @property
    def kek(self) -> KeyEncryptionKey: ...

    async def key_for_extract(self, extract_id: UUID) -> DataKey: ...

    async def get_many(self, key_ids: Iterable[UUID]) -> dict[UUID, DataKey]: ...


class InboundHandler(Protocol):
    async def handle(self, messages: list[Any]) -> None:
        """A batch of the inbound topic, in order."""
        ...


class ExtractReader(Protocol):
    """One file's rows, as its reader finds them (the header row first)."""

    def rows(self) -> Iterator[tuple[int, list[str]]]: ...


class ExtractFiles(Protocol):
    """The file readers (CSV, workbooks, the DfE's Common Transfer File), under the operator's limits."""

    def inspect(self, path: Path) -> FileFacts: ...

    def open(self, path: Path, facts: FileFacts) -> ExtractReader: ...


class InboundStore(Protocol):
    """Inbound extracts staged as they arrive, still sealed, until they are complete."""

    async def started(
        self, extract_ref: str, source: str, reference_date: date, originator: str, started_json: str
    ) -> str: ...

    async def stage(self, records: list[StagedRecord], max_bytes: int) -> Staged: ...

    async def audit(self, entry: AuditEntry) -> None: ...

    async def head(self, extract_ref: str) -> InboundHead | None: ...

    async def count(self, extract_ref: str) -> tuple[int, int | None, int | None]: ...

    async def missing(self, extract_ref: str, expected: int, limit: int = 10) -> list[int]: ...

    def records(self, extract_ref: str) -> AsyncIterator[StagedRecord]: ...

    async def incomplete(self, extract_ref: str, problem: str, audit_entry: AuditEntry | None = None) -> None: ...

    async def refused(self, extract_ref: str, problem: str, audit_entry: AuditEntry | None = None) -> None: ...

    async def ingested(self, extract_ref: str, extract_id: UUID) -> None: ...
