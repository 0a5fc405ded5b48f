"""Delivery's use cases in memory, through their ports (unit of work, key store, mailer, S/MIME builder,
clock): what they refuse, audit and never send, and the whole way from a cohort to a sent batch (plan,
render, parts, retries, an interrupted send and its resolution, a refusal and its replan). S/MIME and
SMTP of a real batch are exercised by the integration tests, against the real servers and the stock
openssl CLI."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import UTC, date, datetime
from uuid import UUID

import pytest
from sais_delivery.domain.batch import PartStatus
from sais_delivery.domain.errors import (
    MessageMayHaveBeenSentError,
    NothingToDeliverError,
    NothingToResolveError,
    RecipientNotAllowedError,
    SharingSuspendedError,
    SmtpRejectedError,
    SmtpTransientError,
    StaleDataError,
    UncertainDeliveryError,
)
from sais_delivery.domain.parts import FIXED_OVERHEAD_BYTES, WIRE_BYTES_PER_CSV_BYTE
from sais_delivery.service_layer.deliver import DeliveryService
from sais_shared.crypto import Sealed
from sais_shared.errors import ConfigurationError
from sais_shared.events import CohortMemberAdded, DeliveryCompleted, PupilPersonal
from sais_shared.protocol import load_protocol

from tests.fakes import FakeKeys, FakeMailer, FakeSmime, FixedClock, InMemoryDelivery, ProtocolInForce

pytestmark = pytest.mark.unit

JULY = datetime(2017, 7, 10, 9, tzinfo=UTC)
RECIPIENT = "sais-dev-recipient@nhs.net"


class World:
    def __init__(self, *answers: BaseException, max_message_bytes: int | None = None) -> None:
        self.uow, self.keys, self.mailer, self.smime = InMemoryDelivery(), FakeKeys(), FakeMailer(*answers), FakeSmime()
        self.key = self.keys.new()
        self.extract = uuid.uuid4()
        extra = {"max_message_bytes": max_message_bytes} if max_message_bytes else {}
        self.svc = DeliveryService(
            self.uow,
            self.keys,
            ProtocolInForce(load_protocol()),
            FixedClock(JULY),
            self.mailer,
            self.smime,
            "sais-datashare@la.example.invalid",
            object(),
            backoff_s=0,
            default_recipient=RECIPIENT,
            **extra,
        )

    @property
    def audited(self) -> list[str]:
        return [action for action, _, _ in self.uow.state.audited]

    def child(
        self,
        school: str = "9372001",
        *,
        received: datetime = datetime(2017, 6, 1, 9, tzinfo=UTC),
        pupil: UUID | None = None,
        revision: int = 1,
        surname: str = "Lovelace",
        key=None,
    ) -> CohortMemberAdded:
        key = key or self.key
        e = CohortMemberAdded(
            event_id=uuid.uuid4(),
            occurred_at=received,
            academic_year="2017/18",
            programme="flu",
            pupil_id=pupil or uuid.uuid4(),
            school_dfe=school,
            school_name=f"School {school}",
            year_group="R",
            gender="F",
            source="summer-census",
            reference_date=received.date(),
            received_at=received,
            extract_ids=[self.extract],
            revision=revision,
            personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
        )
        p = PupilPersonal(
            surname=surname,
            forename="Ada",
            date_of_birth=date(2012, 3, 4),
            address_lines=["1 High St"],
            postcode="CV34 4RL",
        )
        return e.model_copy(update={"personal": key.seal_model(p, e.aad())})

    async def seed(self, *events: CohortMemberAdded) -> None:
        await self.svc.apply_cohort_events(list(events))

    async def deliver(self, **kw):
        return await self.svc.deliver("july", "2017/18", actor="officer", **kw)

    def completed(self) -> list[DeliveryCompleted]:
        return [e for e in self.uow.published if isinstance(e, DeliveryCompleted)]


def rows_of(content: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))


# --- what is refused, and never sent -------------------------------------------------------------


async def test_suspended_sharing_refuses_audits_and_sends_nothing():
    w = World()
    await w.seed(w.child())
    await w.svc.set_suspended(True, "breach B-7", "ig-lead")
    with pytest.raises(SharingSuspendedError):
        await w.deliver()
    assert w.audited == ["sharing.suspended", "delivery.refused"]
    assert w.uow.state.audited[-1][2]["reason"] == "SharingSuspendedError"
    assert w.mailer.sent == [] and w.uow.state.batches == {}


async def test_a_recipient_off_the_allow_list_is_refused_by_name():
    w = World()
    await w.seed(w.child())
    with pytest.raises(RecipientNotAllowedError):
        await w.deliver(recipient="someone@gmail.com")
    assert w.uow.state.audited[0][2]["recipient"] == "someone@gmail.com"
    assert w.mailer.sent == []


async def test_an_empty_window_is_nothing_to_deliver_and_not_a_refusal():
    w = World()
    with pytest.raises(NothingToDeliverError):
        await w.deliver()
    assert w.audited == []


async def test_stale_data_is_refused_naming_the_extracts():
    w = World()
    await w.seed(w.child(received=datetime(2017, 1, 2, 9, tzinfo=UTC)))
    with pytest.raises(StaleDataError, match=str(w.extract)):
        await w.deliver()
    assert w.audited == ["delivery.refused"]
    assert w.uow.state.audited[0][2]["extracts"] == [str(w.extract)]
    assert w.mailer.sent == []


async def test_resolving_a_batch_with_no_interrupted_part_is_refused():
    w = World()
    with pytest.raises(NothingToResolveError, match="no interrupted part"):
        await w.svc.resolve(uuid.uuid4(), sent=True, actor="officer")
    await w.seed(w.child())
    res = await w.deliver()
    with pytest.raises(NothingToResolveError, match="interrupted: none"):
        await w.svc.resolve(res.batch_id, sent=True, actor="officer")
    assert "batch.resolved" not in w.audited


async def test_with_no_recipient_named_anywhere_nothing_is_attempted():
    w = World()
    await w.seed(w.child())
    w.svc.default_recipient = None  # the shipped example protocol names none
    with pytest.raises(ConfigurationError, match="SAIS_DELIVERY_RECIPIENT"):
        await w.deliver()
    w.svc.default_recipient, w.svc.sender = RECIPIENT, ""
    with pytest.raises(ConfigurationError, match="SAIS_DELIVERY_SENDER_ADDRESS"):
        await w.deliver()
    assert w.audited == []


async def test_suspending_and_resuming_is_audited_both_ways():
    w = World()
    await w.svc.set_suspended(True, "INC-42", "ig-lead")
    assert await w.svc.is_suspended() == (True, "INC-42")
    await w.svc.set_suspended(False, "INC-42 closed", "ig-lead")
    assert w.audited == ["sharing.suspended", "sharing.resumed"]


async def test_a_batch_under_a_coverage_gap_tells_the_sender_the_cohort_is_incomplete():
    w = World()
    await w.seed(w.child())
    protocol = load_protocol()
    coverage = w.uow.state.coverage
    unchecked = [x for x in (await w.deliver()).warnings if "coverage" in x]
    assert len(unchecked) == 1 and "has not reported its coverage check of 2017/18" in unchecked[0]
    coverage[("2017/18", protocol.id, protocol.version)] = ([], JULY)
    assert not [x for x in (await w.deliver()).warnings if "cohort" in x]  # checked, no gap (and already sent)
    gap = "flu: Y5 (MFU) is requested from none of summer-census"
    coverage[("2017/18", protocol.id, protocol.version)] = ([gap], JULY)
    [warning] = [x for x in (await w.deliver()).warnings if "cohort" in x]
    assert f"cohort incomplete under protocol v{protocol.version}" in warning and gap in warning


# --- the way a batch goes ------------------------------------------------------------------------


async def test_a_cohort_is_planned_rendered_sent_and_completed_once():
    w = World()
    await w.seed(*(w.child("9372001", surname=f"Ann{i}") for i in range(2)), w.child("9372002", surname="Bea"))
    res = await w.deliver()
    assert (res.status, res.counts, len(res.parts), res.delete_by) == ("sent", {"flu": 3}, 1, "2017-10-10")
    assert w.audited == ["batch.prepared", "batch.sent"]
    [built] = w.smime.built
    files = {f.name: f for f in built.files}
    assert {"flu-2017-18.csv", "field-definitions.csv", "manifest.json"} <= set(files)
    assert sorted(r["Surname"] for r in rows_of(files["flu-2017-18.csv"].content)) == ["Ann0", "Ann1", "Bea"]
    manifest = json.loads(files["manifest.json"].content)
    assert (manifest["counts"], manifest["delete_by"], manifest["part"]["of"]) == ({"flu": 3}, "2017-10-10", 1)
    assert built.message_id == res.message_id and len(w.mailer.sent) == 1
    [done] = w.completed()
    assert (done.batch_id, done.delete_by, done.transferred_at) == (res.batch_id, date(2017, 10, 10), JULY)
    assert [f.name for f in done.files] == [n for n in files if n.endswith(".csv") and n != "field-definitions.csv"]
    again = await w.deliver()  # the same content: nothing more goes
    assert again.already_sent and again.batch_id == res.batch_id and len(w.mailer.sent) == 1


async def test_a_cohort_over_the_message_size_goes_in_parts_of_whole_schools():
    w = World(max_message_bytes=FIXED_OVERHEAD_BYTES + int(4200 * WIRE_BYTES_PER_CSV_BYTE))
    await w.seed(
        *(w.child(school, surname=f"S{school[-1]}n{i}") for school in ("9372001", "9372002") for i in range(12))
    )
    res = await w.deliver()
    assert res.status == "sent" and len(res.parts) == 2 and len(w.mailer.sent) == 2
    schools = [
        json.loads(next(f for f in b.files if f.name == "manifest.json").content)["part"]["schools"]
        for b in w.smime.built
    ]
    assert schools == [["9372001"], ["9372002"]]
    assert [b.message_id for b in w.smime.built] == [p["message_id"] for p in res.parts]
    [done] = w.completed()
    assert [p.part for p in done.parts] == [1, 2] and done.programmes == {"flu": 24}


def two_part_world(*answers: BaseException) -> World:
    return World(*answers, max_message_bytes=FIXED_OVERHEAD_BYTES + int(4200 * WIRE_BYTES_PER_CSV_BYTE))


async def seed_two_schools(w: World) -> None:
    await w.seed(
        *(w.child(school, surname=f"S{school[-1]}n{i}") for school in ("9372001", "9372002") for i in range(12))
    )


async def test_the_next_part_is_rendered_while_one_is_sent_and_parts_go_in_order():
    w = two_part_world()
    await seed_two_schools(w)
    second_built, mailer, build = asyncio.Event(), w.mailer, w.smime.build
    seen_while_sending: list[int] = []

    def building(**kw):
        out = build(**kw)
        if len(w.smime.built) == 2:
            second_built.set()
        return out

    async def sending(message: bytes, *, sender: str, recipient: str) -> str:
        if not mailer.sent:  # the first part waits on the wire until the second has been rendered
            await asyncio.wait_for(second_built.wait(), timeout=30)
        seen_while_sending.append(len(w.smime.built))
        return await FakeMailer.send(mailer, message, sender=sender, recipient=recipient)

    w.smime.build, w.mailer.send = building, sending
    res = await w.deliver()
    assert res.status == "sent" and seen_while_sending == [2, 2]
    assert [m for m, _ in w.mailer.sent] == [
        b"".join(f.content for f in built.files) for built in w.smime.built
    ]  # sent in the order planned, each as rendered
    assert [b.message_id for b in w.smime.built] == [p["message_id"] for p in res.parts]


async def test_a_part_refused_for_good_sends_no_later_part_and_leaves_no_render_running():
    w = two_part_world(SmtpRejectedError("552 message too big"))
    await seed_two_schools(w)
    with pytest.raises(SmtpRejectedError, match="refused part 1 of 2"):
        await w.deliver()
    [b] = w.uow.state.batches.values()
    assert [p.status for p in b.parts] == [PartStatus.FAILED, PartStatus.PREPARED] and w.mailer.sent == []
    pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()]
    assert pending == []


async def test_a_deferred_send_is_tried_again_and_counted():
    w = World(SmtpTransientError("451 try later"), SmtpTransientError("451 try later"))
    await w.seed(w.child())
    res = await w.deliver()
    assert res.status == "sent" and len(w.mailer.sent) == 1
    part = w.uow.state.batches[res.batch_id].parts[0]
    assert (part.status, part.attempts, part.last_error) == (PartStatus.SENT, 3, None)


async def test_a_send_deferred_every_time_leaves_the_part_prepared_for_the_next_run():
    w = World(*(SmtpTransientError("451 try later") for _ in range(4)))
    await w.seed(w.child())
    with pytest.raises(SmtpTransientError):
        await w.deliver()
    [b] = w.uow.state.batches.values()
    assert (b.status, b.parts[0].status, b.parts[0].last_error) == ("prepared", "prepared", "451 try later")
    res = await w.deliver()  # the next run resumes the same batch
    assert (res.batch_id, res.status, len(w.mailer.sent)) == (b.batch_id, "sent", 1)


async def test_an_interrupted_send_waits_for_an_operator_and_then_completes():
    w = World(MessageMayHaveBeenSentError("connection lost during the send"))
    await w.seed(w.child())
    with pytest.raises(UncertainDeliveryError, match="check the mailbox"):
        await w.deliver()
    [b] = w.uow.state.batches.values()
    assert b.parts[0].status is PartStatus.SENDING and w.completed() == []
    with pytest.raises(UncertainDeliveryError, match=f"sais delivery resolve {b.batch_id} --part 1"):
        await w.deliver()  # never resent blindly
    res = await w.svc.resolve(b.batch_id, sent=True, actor="officer")
    assert res is not None and res.status == "sent" and w.mailer.sent == []
    assert w.audited[-2:] == ["batch.resolved", "batch.sent"]
    [done] = w.completed()
    assert done.transferred_at == JULY  # the attempt's time: when the server may have accepted it


async def test_a_part_refused_for_good_is_planned_afresh_on_the_next_run():
    w = World(SmtpRejectedError("552 message too big"))
    await w.seed(w.child())
    with pytest.raises(SmtpRejectedError, match="refused part 1 of 1"):
        await w.deliver()
    [refused] = w.uow.state.batches.values()
    assert (refused.status, refused.parts[0].status) == ("failed", "failed")
    res = await w.deliver()
    assert res.status == "sent" and "batch.replanned" in w.audited and len(w.mailer.sent) == 1


async def test_a_child_changed_between_planning_and_sending_goes_as_it_is_now_and_widens_the_batch():
    w = World()
    pupil = uuid.uuid4()
    await w.seed(w.child(pupil=pupil, surname="Before"))
    newer_key = w.keys.new()

    def after_prepare(point: str) -> None:
        if point == "after-prepare":  # eligibility's newer revision, sealed under another extract's key
            w.uow.state.members[("2017/18", "flu", pupil)] |= {"key_id": newer_key.key_id}
            e = w.child(pupil=pupil, revision=2, surname="After", key=newer_key)
            w.uow.state.members[("2017/18", "flu", pupil)] |= {"revision": 2, "personal": e.personal.model_dump_json()}

    w.svc.fault = after_prepare
    res = await w.deliver()
    [built] = w.smime.built
    [row] = rows_of(next(f for f in built.files if f.name == "flu-2017-18.csv").content)
    assert row["Surname"] == "After"
    [done] = w.completed()
    assert newer_key.key_id in done.key_ids and res.status == "sent"
