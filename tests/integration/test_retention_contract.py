"""Retention's repository: the part of its contract the deletion requests and their certificates rely
on, run against both the in-memory fake of the use-case unit tests and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import pytest
from sais_retention.adapters.repository import PgUnitOfWork
from sais_retention.app import WIRING
from sais_retention.domain.plan import DeletionRequest
from sais_shared.events import DeletionRequested

from tests.fakes import FakeRetentionRepository, FakeRetentionUnitOfWork
from tests.helpers import service_pool

pytestmark = pytest.mark.integration

AT = datetime(2017, 10, 11, 9, tzinfo=UTC)


@pytest.fixture(params=["in-memory", "postgresql"])
async def uow(request, settings_env) -> AsyncIterator:
    if request.param == "in-memory":
        yield FakeRetentionUnitOfWork(FakeRetentionRepository(live={}))
        return
    async with service_pool(WIRING.migrations) as pool:
        yield PgUnitOfWork(pool)


def requested(subject: str, owners: list[str]) -> DeletionRequested:
    return DeletionRequested(
        event_id=uuid.uuid4(),
        occurred_at=AT,
        request_id=uuid.uuid4(),
        subject=subject,
        rule="isp-11.1-transfer-plus-3-months",
        scope="transfer",
        owners=owners,
    )


async def test_a_request_reads_back_as_written_and_waits_for_each_owner_until_it_is_closed(uow):
    req, key = requested(f"batch:{uuid.uuid4()}", ["ingest", "eligibility"]), uuid.uuid4()
    retained = {str(uuid.uuid4()): "still needed by another live subject"}
    async with uow() as repo:
        await repo.add_request(req, date(2017, 10, 10), [key], retained)
        assert await repo.request_exists(req.subject)
    async with uow() as repo:
        assert await repo.claim_request(req.request_id) == DeletionRequest(
            req.request_id, req.subject, req.rule, date(2017, 10, 10), ["ingest", "eligibility"], [key], retained, AT
        )
        await repo.add_confirmation(req.request_id, "ingest", {"ingest.extracts": 1})
        await repo.add_confirmation(req.request_id, "ingest", {"ingest.extracts": 99})  # a redelivery: the first stays
        assert await repo.confirmations(req.request_id) == {"ingest": {"ingest.extracts": 1}}
    async with uow() as repo:
        waiting = await repo.unconfirmed(AT + timedelta(hours=1))
        assert (["ingest", "eligibility"], ["ingest"]) in waiting
        assert (["ingest", "eligibility"], ["ingest"]) not in await repo.unconfirmed(AT - timedelta(hours=1))
        await repo.close_request(req.request_id, None)
    async with uow() as repo:
        closed = await repo.claim_request(req.request_id)
        assert closed is not None and closed.completed_at is not None
        assert (["ingest", "eligibility"], ["ingest"]) not in await repo.unconfirmed(AT + timedelta(hours=1))
    async with uow() as repo:
        assert await repo.claim_request(uuid.uuid4()) is None
