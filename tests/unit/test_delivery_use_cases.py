"""Delivery's use case in memory, through its ports (store, key store, mailer, clock): what it refuses,
audits and never sends. Rendering, S/MIME and SMTP of a real batch are exercised by the integration
tests against the real servers and the stock openssl CLI."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from sais_delivery.domain.errors import (
    NothingToDeliverError,
    NothingToResolveError,
    RecipientNotAllowedError,
    SharingSuspendedError,
    StaleDataError,
)
from sais_delivery.service_layer.deliver import DeliveryService
from sais_shared.errors import ConfigurationError
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit


@dataclass
class FakeStore:
    """Only the steps these use cases reach; a step they must not reach fails the test."""

    members: int = 3
    content: str = "c1"
    stale: list[str] = field(default_factory=list)
    sent_before: dict | None = None
    suspended: tuple[bool, str | None] = (False, None)
    interrupted: list[int] = field(default_factory=list)
    audited: list[tuple[str, dict]] = field(default_factory=list)
    coverage: dict[str, list[str]] = field(default_factory=lambda: {"2017/18": []})

    async def coverage_gaps(self, academic_year, protocol_id, protocol_version):
        return self.coverage.get(academic_year)

    async def audit(self, actor, action, subject, details, protocol_version):
        self.audited.append((action, details))

    async def sharing(self):
        return self.suspended

    async def set_sharing(self, suspended, reason, actor, protocol_version):
        self.suspended = (suspended, reason)
        self.audited.append(("sharing.suspended" if suspended else "sharing.resumed", {"reason": reason}))

    async def pending_batch(self, window, academic_year):
        return None

    async def window_content(self, academic_year, sources):
        return self.members, self.content

    async def extracts_received_before(self, academic_year, sources, before):
        return self.stale

    async def last_sent(self, window, academic_year, recipient):
        return self.sent_before

    async def batch(self, batch_id):
        return {"batch_id": batch_id, "status": "sent", "recipient": "ann.curzons@nhs.net", "counts": '{"flu": 3}',
                "message_id": f"<{batch_id}@x>", "replaces_batch": None, "files": "[]", "delete_by": date(2017, 10, 20),
                "academic_year": "2017/18", "protocol_version": "0.2"}  # fmt: skip

    async def part_summaries(self, batch_id):
        return []

    async def interrupted_parts(self, batch_id):
        return self.interrupted

    def __getattr__(self, name):  # snapshot, claim_part, …: planning or sending would start here
        raise AssertionError(f"the use case went on to {name}() when it should have stopped")


class NoMail:
    async def send(self, *a, **k):
        raise AssertionError("nothing may be sent")


class Clock:
    def now(self):
        return datetime(2017, 7, 10, 9, tzinfo=UTC)

    def today(self):
        return date(2017, 7, 10)


@dataclass
class ProtocolInForce:
    current: object


def service(store: FakeStore) -> DeliveryService:
    def no_smime(recipient):
        raise AssertionError("no message may be built")

    return DeliveryService(store, object(), ProtocolInForce(load_protocol()), Clock(), NoMail(), no_smime,
                           "sais-datashare@la.example.invalid", object(),
                           default_recipient="sais-dev-recipient@nhs.net")  # fmt: skip


async def deliver(svc, **kw):
    return await svc.deliver("july", "2017/18", actor="officer", **kw)


async def test_suspended_sharing_refuses_audits_and_sends_nothing():
    store = FakeStore(suspended=(True, "breach B-7"))
    with pytest.raises(SharingSuspendedError):
        await deliver(service(store))
    assert [a for a, _ in store.audited] == ["delivery.refused"]
    assert store.audited[0][1]["reason"] == "SharingSuspendedError"


async def test_a_recipient_off_the_allow_list_is_refused_by_name():
    store = FakeStore()
    with pytest.raises(RecipientNotAllowedError):
        await deliver(service(store), recipient="someone@gmail.com")
    assert store.audited[0][1]["recipient"] == "someone@gmail.com"


async def test_an_empty_window_is_nothing_to_deliver_and_not_a_refusal():
    store = FakeStore(members=0)
    with pytest.raises(NothingToDeliverError):
        await deliver(service(store))
    assert store.audited == []


async def test_stale_data_is_refused_naming_the_extracts():
    store = FakeStore(stale=["e-2017-01"])
    with pytest.raises(StaleDataError, match="e-2017-01"):
        await deliver(service(store))
    assert store.audited == [("delivery.refused", store.audited[0][1])]
    assert store.audited[0][1]["extracts"] == ["e-2017-01"]


async def test_the_same_content_already_sent_is_not_sent_again():
    batch: UUID = uuid4()
    store = FakeStore(sent_before={"batch_id": batch, "content_sha256": "c1"})
    result = await deliver(service(store))
    assert result.already_sent and result.batch_id == batch


async def test_resolving_a_batch_with_no_interrupted_part_is_refused():
    store = FakeStore(interrupted=[])
    with pytest.raises(NothingToResolveError, match="no interrupted part"):
        await service(store).resolve(uuid4(), sent=True, actor="officer")
    assert store.audited == []


async def test_with_no_recipient_named_anywhere_nothing_is_attempted():
    store = FakeStore()
    svc = service(store)
    svc.default_recipient = None  # the shipped example protocol names none
    with pytest.raises(ConfigurationError, match="SAIS_DELIVERY_RECIPIENT"):
        await deliver(svc)
    svc.default_recipient, svc.sender = "sais-dev-recipient@nhs.net", None
    with pytest.raises(ConfigurationError, match="SAIS_DELIVERY_SENDER_ADDRESS"):
        await deliver(svc)
    assert store.audited == []


async def test_suspending_and_resuming_is_audited_both_ways():
    store = FakeStore()
    svc = service(store)
    await svc.set_suspended(True, "INC-42", "ig-lead")
    assert await svc.is_suspended() == (True, "INC-42")
    await svc.set_suspended(False, "INC-42 closed", "ig-lead")
    assert [a for a, _ in store.audited] == ["sharing.suspended", "sharing.resumed"]


async def test_a_batch_under_a_coverage_gap_tells_the_sender_the_cohort_is_incomplete():
    batch: UUID = uuid4()
    sent = {"batch_id": batch, "content_sha256": "c1"}
    assert (await deliver(service(FakeStore(sent_before=sent)))).warnings == []  # checked, no gap
    gap = "flu: Y5 (MFU) is requested from none of summer-census"
    result = await deliver(service(FakeStore(sent_before=sent, coverage={"2017/18": [gap]})))
    [warning] = result.warnings
    assert "cohort incomplete under protocol v0.2" in warning and gap in warning
    [unchecked] = (await deliver(service(FakeStore(sent_before=sent, coverage={})))).warnings
    assert "has not reported its coverage check of 2017/18" in unchecked
