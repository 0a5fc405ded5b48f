"""Retention's use cases in memory, through its ports (unit of work over its tables and the key
store's retention functions, outbox, clock): schedule from events, request a due deletion with the
keys destroyed at once, certify only when every owner has confirmed. The PostgreSQL adapter behind
the same port is exercised by the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from sais_retention.domain.plan import ScheduledDeletion
from sais_retention.service_layer.retention import RULE_PARTY_LEFT, RULE_TRANSFER, RULE_UNDELIVERED, RetentionService
from sais_shared.events import OWNERS, DeletionConfirmed, DeliveryCompleted, ExtractCompleted
from sais_shared.protocol import load_protocol

from tests.fakes import ProtocolInForce

pytestmark = pytest.mark.unit


@dataclass
class Row:
    subject: str
    rule: str
    due_on: date
    extract_ids: list
    key_ids: list
    requested: bool = False
    executed: bool = False
    certificate_id: UUID | None = None


@dataclass
class FakeRepository:
    live: dict[UUID, UUID]  # key id → extract id: the key store
    processed: set = field(default_factory=set)
    schedule_: dict[str, Row] = field(default_factory=dict)
    requests: dict[UUID, dict] = field(default_factory=dict)
    confirmed: dict[UUID, dict[str, dict]] = field(default_factory=dict)
    certificates: list = field(default_factory=list)
    outbox: list = field(default_factory=list)
    audited: list[str] = field(default_factory=list)

    async def claim_new(self, event_ids):
        fresh = set(event_ids) - self.processed
        self.processed |= fresh
        return fresh

    async def schedule(self, subject, rule, due_on, extract_ids, key_ids):
        self.schedule_.setdefault(subject, Row(subject, rule, due_on, list(extract_ids), list(key_ids)))

    async def due_subjects(self, today):
        rows = [r for r in self.schedule_.values() if not (r.executed or r.requested) and r.due_on <= today]
        return [r.subject for r in sorted(rows, key=lambda r: (r.due_on, r.subject))]

    async def claim_due(self, subject):
        r = self.schedule_.get(subject)
        if r is None or r.executed or r.requested:
            return None
        return ScheduledDeletion(r.subject, r.rule, r.extract_ids, r.key_ids), r.due_on

    async def live_scheduled(self, rule, other_than):
        return [ScheduledDeletion(r.subject, r.rule, r.extract_ids, r.key_ids) for r in self.schedule_.values()
                if not r.executed and r.subject != other_than and r.rule == rule]  # fmt: skip

    async def mark_executed(self, subject):
        self.schedule_[subject].executed = True

    async def mark_requested(self, subject):
        for r in self.schedule_.values():
            if (subject is None and not r.executed) or r.subject == subject:
                r.requested = True

    async def live_keys(self):
        return list(self.live.items())

    async def destroy_keys(self, key_ids, by):
        destroyed = sorted(k for k in set(key_ids) if k in self.live)
        for k in destroyed:
            del self.live[k]
        return destroyed

    async def audit(self, actor, action, subject, details, protocol_version):
        self.audited.append(action)

    async def request_exists(self, subject):
        return any(r["subject"] == subject for r in self.requests.values())

    async def add_request(self, req, due_on, destroyed, keys_retained):
        self.requests[req.request_id] = {
            "request_id": req.request_id, "subject": req.subject, "rule": req.rule, "due_on": due_on,
            "owners": req.owners, "key_ids_destroyed": destroyed, "keys_retained": keys_retained,
            "requested_at": req.occurred_at, "completed_at": None,
        }  # fmt: skip
        self.outbox.append(req)

    async def claim_request(self, request_id):
        return self.requests.get(request_id)

    async def add_confirmation(self, request_id, service, rows_deleted):
        self.confirmed.setdefault(request_id, {}).setdefault(service, rows_deleted)

    async def confirmations(self, request_id):
        return dict(self.confirmed.get(request_id, {}))

    async def close_request(self, request_id, certificate_id):
        self.requests[request_id] = {**self.requests[request_id], "completed_at": datetime.now(UTC),
                                     "certificate_id": certificate_id}  # fmt: skip

    async def add_certificate(self, cert, keys_retained):
        self.certificates.append(cert)
        self.outbox.append(cert)

    async def certify_scheduled(self, certificate_id, *, subject=None, requested_by=None):
        for r in self.schedule_.values():
            if r.subject == subject or (subject is None and r.requested and not r.executed):
                r.executed, r.certificate_id = True, certificate_id

    async def pending_counts(self, today):
        pending = [r for r in self.schedule_.values() if not r.executed]
        return sum(r.due_on >= today for r in pending), sum(r.due_on < today for r in pending)

    async def unconfirmed(self, requested_before):
        return [
            (r["owners"], list(self.confirmed.get(r["request_id"], {})))
            for r in self.requests.values()
            if r["completed_at"] is None and r["requested_at"] < requested_before
        ]


class FakeUnitOfWork:
    def __init__(self, repo: FakeRepository) -> None:
        self.repo = repo

    @asynccontextmanager
    async def __call__(self) -> AsyncIterator[FakeRepository]:
        yield self.repo


class FakeOutbox:
    def __init__(self, repo: FakeRepository) -> None:
        self.repo, self.published = repo, []

    async def flush(self) -> int:
        n = len(self.repo.outbox)
        self.published += self.repo.outbox
        self.repo.outbox = []
        return n


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
    repo = FakeRepository(live={key: extract})
    clock = Clock(date(2017, 7, 20))
    svc = RetentionService(FakeUnitOfWork(repo), ProtocolInForce(load_protocol()), clock, FakeOutbox(repo),
                           timedelta(hours=1))  # fmt: skip
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
    for service in req["owners"]:
        certs = await svc.handle_confirmations(
            [confirm(type("R", (), {"request_id": req["request_id"]}), service, 1)], service
        )
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
