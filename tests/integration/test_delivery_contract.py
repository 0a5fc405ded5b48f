"""Delivery's unit of work, one contract run against both its adapters: the in-memory fake the use-case
unit tests use (tests/fakes.py) and PostgreSQL. What the fake promises is what the database does, so
the unit tests of delivery's use cases prove something about the real thing."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sais_delivery.adapters.store import PgDeliveryUnitOfWork
from sais_delivery.app import MIGRATIONS
from sais_delivery.domain.batch import PartStatus, SentMeta, planned
from sais_delivery.domain.parts import RowSize, SchoolLoad
from sais_shared.crypto import Sealed
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked
from sais_shared.protocol import load_protocol

from tests.fakes import InMemoryDelivery
from tests.helpers import service_pool

pytestmark = pytest.mark.integration

JUNE = datetime(2017, 6, 1, 9, tzinfo=UTC)
JULY = ["summer-census"]


@pytest.fixture(params=["in-memory", "postgresql"])
async def uow(request, settings_env) -> AsyncIterator:
    if request.param == "in-memory":
        yield InMemoryDelivery()
        return
    async with service_pool(MIGRATIONS) as pool:
        yield PgDeliveryUnitOfWork(pool)


def added(
    pupil: uuid.UUID, revision: int, *, school: str = "9372001", source: str = "summer-census", year_group: str = "R"
) -> CohortMemberAdded:
    return CohortMemberAdded(
        event_id=uuid.uuid4(),
        occurred_at=JUNE,
        academic_year="2017/18",
        programme="flu",
        pupil_id=pupil,
        school_dfe=school,
        school_name=f"School {school}",
        year_group=year_group,
        gender="F",
        source=source,
        reference_date=JUNE.date(),
        received_at=JUNE,
        extract_ids=[uuid.uuid4()],
        revision=revision,
        personal=Sealed(key_id=uuid.uuid4(), nonce="bm9uY2U=", ciphertext="c2VhbGVk"),
    )


def withdrawal(pupil: uuid.UUID, revision: int) -> CohortMemberWithdrawn:
    return CohortMemberWithdrawn(
        event_id=uuid.uuid4(),
        occurred_at=JUNE,
        academic_year="2017/18",
        programme="flu",
        pupil_id=pupil,
        revision=revision,
        reason="left",
    )


async def apply(uow, *events, sizes=None) -> None:
    async with uow() as tx:
        await tx.members.apply(list(events), sizes or {})


async def test_school_loads_are_summed_from_the_sizes_measured_and_none_while_one_is_unmeasured(uow):
    a, b, c = (added(uuid.uuid4(), 1, school=s) for s in ("9372001", "9372001", "9372002"))
    sizes = {a.event_id: RowSize(100, 40), b.event_id: RowSize(120, 50), c.event_id: RowSize(90, 30)}
    await apply(uow, a, b, c, sizes=sizes)
    async with uow() as tx:
        with_mavis = await tx.members.school_loads("2017/18", JULY, with_mavis=True)
        csv_only = await tx.members.school_loads("2017/18", JULY, with_mavis=False)
    assert with_mavis == [SchoolLoad("9372001", 2, 310, 170), SchoolLoad("9372002", 1, 120, 120)]
    assert csv_only == [SchoolLoad("9372001", 2, 220, 120), SchoolLoad("9372002", 1, 90, 90)]
    await apply(uow, added(uuid.uuid4(), 1, school="9372003"))  # applied unmeasured
    async with uow() as tx:
        assert await tx.members.school_loads("2017/18", JULY, with_mavis=True) is None
    await apply(uow, added(a.pupil_id, 2, school="9372001"))  # a newer revision, unmeasured, replaces a's size
    async with uow() as tx:
        assert await tx.members.school_loads("2017/18", ["autumn-census"], with_mavis=True) == []


async def _content(tx, academic_year: str, sources: list[str]) -> tuple[int, str]:
    """(members, content fingerprint) of a window, as a plan records them."""
    s = await tx.members.summary(academic_year, sources)
    assert await tx.members.window_size(academic_year, sources) == sum(s.counts.values())
    return sum(s.counts.values()), s.content_sha256


async def test_the_latest_revision_wins_and_a_child_stays_in_the_window_it_came_in_through(uow):
    ada, bea = uuid.uuid4(), uuid.uuid4()
    first = added(ada, 1)
    await apply(uow, first, added(bea, 1))
    async with uow() as tx:
        n, content = await _content(tx, "2017/18", JULY)
    await apply(uow, added(ada, 3, source="autumn-census", year_group="1"), added(ada, 2, year_group="R"))
    await apply(uow, first)  # a replay is not applied twice
    async with uow() as tx:
        n_after, changed = await _content(tx, "2017/18", JULY)
        december = await _content(tx, "2017/18", ["autumn-census"])
        [member] = [m async for m in tx.members.by_school("2017/18", JULY) if m.pupil_id == ada]
    assert (n, n_after, december[0]) == (2, 2, 0) and changed != content
    assert (member.revision, member.year_group, member.source) == (3, "1", "autumn-census")
    withdrawn = withdrawal(bea, 2)
    await apply(uow, withdrawn)
    async with uow() as tx:
        assert (await _content(tx, "2017/18", JULY))[0] == 1
    await apply(uow, added(bea, 1), withdrawn)  # a replay of both, in any order, changes nothing
    async with uow() as tx:
        assert (await _content(tx, "2017/18", JULY))[0] == 1


async def test_a_withdrawal_withdraws_only_a_member_held_at_an_older_revision(uow):
    held, never = uuid.uuid4(), uuid.uuid4()
    await apply(uow, added(held, 1))

    # one never held (a replay after retention deleted it, say), one not newer than the member held
    await apply(uow, withdrawal(never, 2), withdrawal(held, 1))
    await apply(uow, added(never, 1))  # had the withdrawal made up a member at revision 2, this would not apply
    async with uow() as tx:
        members = sorted([(m.pupil_id, m.revision) async for m in tx.members.by_school("2017/18", JULY)])
    assert members == sorted([(held, 1), (never, 1)])
    await apply(uow, withdrawal(held, 2))
    async with uow() as tx:
        assert [m.pupil_id async for m in tx.members.by_school("2017/18", JULY)] == [never]


async def test_a_batch_is_recorded_once_with_its_children_by_part_and_moves_only_from_where_it_was(uow):
    pupils = [uuid.uuid4() for _ in range(3)]
    await apply(
        uow,
        added(pupils[0], 1, school="9372001"),
        added(pupils[1], 1, school="9372001"),
        added(pupils[2], 1, school="9372002"),
    )
    async with uow(snapshot=True) as tx:
        s = await tx.members.summary("2017/18", JULY)
        batch = planned(
            uuid.uuid4(),
            "july",
            "2017/18",
            "sais@nhs.net",
            s,
            load_protocol(),
            JUNE,
            None,
            [
                [{"school_dfe": "9372001", "offset": 0, "limit": None}],
                [{"school_dfe": "9372002", "offset": 0, "limit": None}],
            ],
        )
        assert await tx.batches.add(batch, JULY)
        assert not await tx.batches.add(batch, JULY)
    assert s.counts == {"flu": 3} and len(s.key_ids) == 3 and len(s.extract_ids) == 3
    async with uow() as tx:
        stored = await tx.batches.pending("july", "2017/18")
        part_one = [m.pupil_id async for m in tx.members.of_part(batch.batch_id, 1, "2017/18")]
        part_two = [m.pupil_id async for m in tx.members.of_part(batch.batch_id, 2, "2017/18")]
    assert stored is not None and stored.batch_id == batch.batch_id and stored.part_count == 2
    assert sorted(part_one, key=str) == sorted(pupils[:2], key=str) and part_two == [pupils[2]]
    meta = SentMeta({"flu": 2}, [{"name": "flu-2017-18-1of2.csv", "sha256": "0" * 64, "rows": 2}], 1000)
    async with uow() as tx:
        held = await tx.batches.hold(batch.batch_id)
        await tx.batches.save(held, held.claim(1, JUNE, meta))
    async with uow() as tx:
        now = await tx.batches.get(batch.batch_id)
        assert (now.status, now.part(1).status, now.part(1).attempts, now.part(1).size_bytes) == (
            PartStatus.SENDING,
            PartStatus.SENDING,
            1,
            1000,
        )
        with pytest.raises(RuntimeError, match="changed meanwhile"):  # saved from a stale view: refused
            await tx.batches.save(held, held.fail(1, "refused"))
    with pytest.raises(ZeroDivisionError):  # a unit of work that fails leaves nothing behind
        async with uow() as tx:
            now = await tx.batches.hold(batch.batch_id)
            await tx.batches.save(now, now.accepted(1, JUNE, "250 ok"))
            raise ZeroDivisionError
    async with uow() as tx:
        assert (await tx.batches.get(batch.batch_id)).part(1).status is PartStatus.SENDING
        await tx.batches.drop(batch.batch_id)
        assert await tx.batches.get(batch.batch_id) is None


async def test_the_latest_coverage_check_and_the_sharing_switch(uow):
    def check(at: datetime, gaps: int) -> CoverageChecked:
        return CoverageChecked.model_validate(
            {
                "event_id": str(uuid.uuid4()),
                "occurred_at": at.isoformat(),
                "academic_year": "2017/18",
                "protocol_id": "p",
                "protocol_version": "0.2",
                "gaps": [
                    {
                        "programme": "flu",
                        "year_groups": ["5"],
                        "sexes": ["F", "M"],
                        "sources": ["summer-census"],
                        "description": f"gap {i}",
                    }
                    for i in range(gaps)
                ],
            }
        )

    async with uow() as tx:
        assert await tx.members.coverage_gaps("2017/18", "p", "0.2") is None
        await tx.members.record_coverage([check(JUNE.replace(day=3), 0), check(JUNE, 2)])  # the later one wins
        assert await tx.members.coverage_gaps("2017/18", "p", "0.2") == []
        assert await tx.sharing.get() == (False, None)
        await tx.sharing.set(True, "breach B-1", "ig-lead")
    async with uow() as tx:
        assert await tx.sharing.get() == (True, "breach B-1")
