"""Retention's use cases in memory, through its ports (unit of work over its tables and the key
store's retention functions, outbox, clock): schedule from events, request a due deletion with the
keys destroyed at once, certify only when every owner has confirmed. The PostgreSQL adapter behind
the same port is exercised by the integration tests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sais_retention.service_layer.retention import RULE_PARTY_LEFT, RULE_TRANSFER, RULE_UNDELIVERED, RetentionService
from sais_shared.events import OWNERS, DeletionConfirmed, DeliveryCompleted, ExtractCompleted
from sais_shared.protocol import load_protocol

from tests.fakes import FakeRetentionOutbox, FakeRetentionRepository, FakeRetentionUnitOfWork, ProtocolInForce

pytestmark = pytest.mark.unit


@dataclass
class Clock:
    today_: date

    def now(self):
        return datetime(self.today_.year, self.today_.month, self.today_.day, 12, tzinfo=UTC)

    def today(self):
        return self.today_


@pytest.fixture
def world():
    extract, key = uuid4(), uuid4()
    repo = FakeRetentionRepository(live={key: extract})
    clock = Clock(date(2017, 7, 20))
    uow, outbox = FakeRetentionUnitOfWork(repo), FakeRetentionOutbox(repo)
    svc = RetentionService(uow, ProtocolInForce(load_protocol()), clock, outbox, timedelta(hours=1))
    return svc, repo, clock, extract, key


def delivered(extract: UUID, key: UUID, on: datetime) -> DeliveryCompleted:
    batch = uuid4()
    return DeliveryCompleted(
        event_id=uuid4(), occurred_at=on, batch_id=batch, window="july", academic_year="2017/18",
        programmes={"flu": 49}, recipient="ann.curzons@nhs.net", message_id=f"<{batch}@sais>", transferred_at=on,
        delete_by=date(2017, 10, 20), files=[], extract_ids=[extract], key_ids=[key], protocol_version="0.2",
    )  # fmt: skip


def confirm(req, service: str, rows: int) -> DeletionConfirmed:
    return DeletionConfirmed(event_id=uuid4(), occurred_at=datetime.now(UTC), request_id=req.request_id,
                             service=service, rows_deleted={f"{service}.rows": rows})  # fmt: skip


async def test_a_transfer_is_due_three_months_on_and_its_keys_go_at_once(world):
    svc, repo, _clock, extract, key = world
    ev = delivered(extract, key, datetime(2017, 7, 20, 10, tzinfo=UTC))
    await svc.handle_deliveries([ev, ev])  # redelivered: one schedule row
    [row] = repo.schedule_.values()
    assert (row.rule, row.due_on) == (RULE_TRANSFER, date(2017, 10, 20))
    early = await svc.run_due(date(2017, 10, 19))  # not yet due: only the (empty) inbound-staging sweep
    assert [r.scope for r in early] == ["inbound-staging"] and repo.live == {key: extract}
    [req] = [r for r in await svc.run_due(date(2017, 10, 20)) if r.subject.startswith("batch:")]
    assert repo.live == {} and req.key_ids == [key] and sorted(req.owners) == sorted(OWNERS)
    assert "data_keys.destroyed" in repo.audited and req in svc.outbox.published


async def test_the_certificate_waits_for_every_owner_and_adds_up_their_counts(world):
    svc, repo, clock, extract, key = world
    await svc.handle_deliveries([delivered(extract, key, datetime(2017, 7, 20, 10, tzinfo=UTC))])
    [req] = [r for r in await svc.run_due(date(2017, 10, 20)) if r.subject.startswith("batch:")]
    owners = list(req.owners)
    for service in owners[:-1]:
        assert await svc.handle_confirmations([confirm(req, service, 5)], service) == []
    clock.today_ = date(2017, 10, 21)  # a day later, the last owner has not confirmed: overdue
    assert (await svc.overdue_confirmations())[owners[-1]] == 1
    [cert] = await svc.handle_confirmations([confirm(req, owners[-1], 7)], owners[-1])
    assert cert.key_ids_destroyed == [key] and sum(cert.rows_deleted.values()) == 5 * (len(owners) - 1) + 7
    assert all(r.executed for r in repo.schedule_.values() if r.subject == req.subject)
    assert (
        await svc.handle_confirmations([confirm(req, owners[-1], 7)], owners[-1]) == []
    )  # a redelivery: no second one


def completed(extract: UUID, key: UUID, on: datetime) -> ExtractCompleted:
    return ExtractCompleted(
        event_id=uuid4(), occurred_at=on, extract_id=extract, source="summer-census",
        reference_date=date(2017, 5, 18), target_academic_year="2017/18", content_sha256="0" * 64, rows_in=1,
        accepted=1, rejected=0, out_of_scope=0, warnings=0, supersedes=None, key_id=key, originator="LA",
        protocol_version="0.2", ingested_by="test",
    )  # fmt: skip


async def test_an_extract_delivered_later_is_left_to_its_transfer(world):
    svc, repo, clock, extract, key = world
    done = completed(extract, key, datetime(2017, 6, 1, tzinfo=UTC))
    clock.today_ = date(2017, 6, 1)  # retention learns of the ingest that day
    await svc.handle_extracts([done])
    clock.today_ = date(2017, 7, 20)
    await svc.handle_deliveries([delivered(extract, key, datetime(2017, 7, 20, 10, tzinfo=UTC))])
    requests = await svc.run_due(date(2017, 9, 1))  # the undelivered-extract rule is due, the transfer not yet
    assert not [r for r in requests if r.subject.startswith("extract:")]
    assert repo.live == {key: extract}  # kept: the later transfer still needs it
    assert repo.schedule_[f"extract:{extract}"].rule == RULE_UNDELIVERED
    assert repo.schedule_[f"extract:{extract}"].executed


async def test_a_party_leaving_destroys_every_key_and_is_certified_from_the_confirmations(world):
    svc, repo, _clock, _extract, _key = world
    req = await svc.purge("all", "ig-lead")
    assert repo.live == {} and "data.purge_requested" in repo.audited
    for service in req.owners:
        certs = await svc.handle_confirmations([confirm(req, service, 1)], service)
    assert [c.rule for c in certs] == [RULE_PARTY_LEFT] and "data.purged" in repo.audited
    with pytest.raises(ValueError, match="unknown party"):
        await svc.purge("nobody", "ig-lead")


def ended(extract: UUID, key: UUID, on: datetime):
    from sais_shared.events import ExtractFailed

    return ExtractFailed(
        event_id=uuid4(), occurred_at=on, extract_id=extract, source="summer-census", reference_date=date(2017, 5, 18),
        target_academic_year="2017/18", key_id=key, status="refused", code="file.field-too-long",
        reason="a cell is too long", published=2000,
    )  # fmt: skip


async def test_a_refused_extract_is_deleted_at_once_and_certified(world):
    svc, repo, clock, extract, key = world
    await svc.handle_extracts([ended(extract, key, datetime(2000, 1, 1, tzinfo=UTC))])
    assert repo.live == {}  # its key destroyed at once
    row = repo.schedule_[f"extract:{extract}"]
    assert row.rule == "extract-refused-or-failed-at-once" and row.due_on == clock.today()  # not the event's date
    [req] = [r for r in repo.requests.values()]
    for service in req.owners:
        certs = await svc.handle_confirmations([confirm(req, service, 1)], service)
    assert [c.rule for c in certs] == ["extract-refused-or-failed-at-once"]


async def test_an_ending_that_names_another_extract_s_key_destroys_nothing(world):
    svc, repo, _clock, extract, key = world
    await svc.handle_extracts([ended(uuid4(), key, datetime(2017, 7, 20, tzinfo=UTC))])  # key is `extract`'s
    assert repo.live == {key: extract} and repo.schedule_ == {}


async def test_a_confirmation_is_only_its_owners_word(world):
    """Finding 2: a confirmation for eligibility and delivery written on ingest's topic certifies nothing."""
    svc, repo, _clock, extract, key = world
    await svc.handle_deliveries([delivered(extract, key, datetime(2017, 7, 20, 10, tzinfo=UTC))])
    [req] = [r for r in await svc.run_due(date(2017, 10, 20)) if r.subject.startswith("batch:")]
    forged = [confirm(req, "eligibility", 0), confirm(req, "delivery", 0)]
    assert await svc.handle_confirmations([confirm(req, "ingest", 3), *forged], "ingest") == []
    assert set(repo.confirmed[req.request_id]) == {"ingest"}
    assert await svc.handle_confirmations([confirm(req, "eligibility", 4)], "eligibility") == []
    [cert] = await svc.handle_confirmations([confirm(req, "delivery", 5)], "delivery")
    assert cert.rows_deleted == {"ingest.rows": 3, "eligibility.rows": 4, "delivery.rows": 5}


async def test_a_backdated_extract_is_scheduled_from_the_day_retention_learns_of_it(world):
    """Finding 2: an extract-completed dated 2000-01-01 does not get its key destroyed at once."""
    svc, repo, clock, extract, key = world
    backdated = completed(extract, key, datetime(2000, 1, 1, tzinfo=UTC))
    await svc.handle_extracts([backdated])
    assert repo.schedule_[f"extract:{extract}"].due_on == date(2017, 10, 20)  # 2017-07-20 + 3 months
    await svc.run_due(clock.today())
    assert repo.live == {key: extract}
