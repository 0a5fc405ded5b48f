"""Ports every service layer depends on, as small ``typing.Protocol``s: the adapters (PostgreSQL key
store, outboxes publishing to Kafka, wall clock) satisfy them structurally, and so do the in-memory fakes that the
use-case unit tests pass instead."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol
from uuid import UUID

from .crypto import DataKey, KeyEncryptionKey


class Clock(Protocol):
    def now(self) -> datetime: ...

    def today(self) -> date: ...


class Keys(Protocol):
    """Data keys by id (the key store), and the KEK's blind index."""

    @property
    def kek(self) -> KeyEncryptionKey: ...

    async def get_many(self, key_ids: Iterable[UUID]) -> dict[UUID, DataKey]: ...

    async def destroyed_among(self, key_ids: Iterable[UUID]) -> set[UUID]: ...


class Outbox(Protocol):
    """Events committed with a state change, published after the commit."""

    async def flush(self) -> int: ...
