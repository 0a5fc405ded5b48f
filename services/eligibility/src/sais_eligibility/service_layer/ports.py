"""What eligibility's use cases need from storage: one transaction (a unit of work) over its tables."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol
from uuid import UUID

from ..domain.cohort import Held

Row = Mapping[str, Any]  # a stored row, by column name


class Repository(Protocol):
    async def claim_new(self, event_ids: Iterable[UUID]) -> set[UUID]: ...

    async def lock_year(self, year: str, *, exclusive: bool) -> None: ...

    async def lock_children(self, year: str, match_keys: set[str]) -> None: ...

    async def known_children(self, year: str, match_keys: list[str]) -> list[Row]: ...

    async def add_records(self, rows: list[tuple]) -> None: ...

    async def add_findings(self, findings: list[tuple]) -> None: ...

    async def cohort_state(
        self, year: str, pupil_ids: set[UUID]
    ) -> tuple[dict[UUID, list[Row]], dict[UUID, dict[str, Held]]]: ...

    async def save_cohort(self, upserts: list[tuple], withdrawals: list[tuple], outbox: list[tuple]) -> None: ...

    async def add_extracts(self, rows: list[tuple]) -> None: ...

    async def any_ready(self, year: str) -> bool: ...

    async def ready_extracts(self, year: str) -> list[Row]: ...

    async def retire_extract(self, extract_id: UUID) -> set[UUID]: ...

    async def mark_reconciled(self, extract_id: UUID) -> None: ...


class UnitOfWork(Protocol):
    """``async with uow() as repo``: everything done through ``repo`` commits together, or not at all."""

    def __call__(self) -> AbstractAsyncContextManager[Repository]: ...
