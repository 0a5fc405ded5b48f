"""Eligibility's use cases in memory, through its ports (unit of work, key store, outbox, clock), as in
cosmicpython: the real domain and service layer, fake storage. The PostgreSQL adapter behind the same
port is exercised by the integration tests."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from uuid import UUID, uuid4

import pytest
from sais_eligibility.adapters.rules_files import load_all_rules
from sais_eligibility.domain.model import SchoolSpan
from sais_eligibility.service_layer.handlers import EligibilityService
from sais_shared.crypto import DataKey, Sealed
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
    PupilPersonal,
    PupilRecorded,
    stable_id,
)
from sais_shared.protocol import load_protocol

from tests.fakes import FakeKeys, FakeOutbox, FakeUnitOfWork, FixedClock, ProtocolInForce
from tests.helpers import extract_completed as completed

pytestmark = pytest.mark.unit

MAY = date(2017, 5, 18)


# --- fakes ------------------------------------------------------------------------------------


@pytest.fixture
def world():
    uow, keys = FakeUnitOfWork(), FakeKeys()
    uow.repo.destroyed_keys = keys.destroyed  # one database: the keys' table as a transaction reads it
    outbox = FakeOutbox(uow.repo)
    svc = EligibilityService(uow, keys, ProtocolInForce(load_protocol()), load_all_rules(), outbox, FixedClock())
    return svc, uow.repo, keys, outbox


# --- how an upstream extract arrives ---------------------------------------------------------------


def pupil(
    keys: FakeKeys,
    key: DataKey,
    extract_id: UUID,
    row: int,
    *,
    forename="Ada",
    surname="Lovelace",
    dob=date(2010, 3, 4),
    postcode="CV34 4AB",
    year_group="2",
    school="9372001",
    school_name="Castle Primary",
    source="summer-census",
    ref: date = MAY,
    received: datetime = datetime(2017, 6, 1, tzinfo=UTC),
) -> PupilRecorded:
    personal = PupilPersonal(
        surname=surname,
        forename=forename,
        date_of_birth=dob,
        address_lines=["1 High Street", "Warwick"],
        postcode=postcode,
    )
    event = PupilRecorded(
        event_id=stable_id("pupil", extract_id, row),
        occurred_at=received,
        extract_id=extract_id,
        record_id=stable_id("record", extract_id, row),
        source=source,
        reference_date=ref,
        row_number=row,
        originator="LA",
        protocol_version="0.2",
        school_dfe=school,
        school_name=school_name,
        year_group=year_group,
        gender="F",
        match_key=keys.kek.blind_index(forename, surname, dob.isoformat()),
        personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
    )
    return event.model_copy(update={"personal": key.seal_model(personal, event.aad())})


async def send(svc, pupils, done):
    await svc.handle_pupils(pupils)
    await svc.handle_extracts([done])
    await svc.release_wanted()  # what the releaser does beside the consumers


# --- the use cases -------------------------------------------------------------------------------


async def test_a_may_census_child_is_rolled_forward_into_the_flu_cohort_once(world):
    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await send(svc, [pupil(keys, key, ex, 2)], completed(ex, key, 1))
    [added] = outbox.published
    assert isinstance(added, CohortMemberAdded)
    assert (added.programme, added.year_group, added.academic_year, added.change) == ("flu", "3", "2017/18", "added")
    opened = key.open_model(added.personal, PupilPersonal, added.aad())
    assert opened.surname == "Lovelace"  # sealed to the cohort event's own context


async def test_redelivered_events_publish_nothing_more(world):
    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, 2), pupil(keys, key, ex, 3, forename="Alan", surname="Turing")]
    await send(svc, events, completed(ex, key, 2))
    await send(svc, events, completed(ex, key, 2))
    assert len(outbox.published) == 2


async def test_pupil_events_delivered_twice_before_their_extract_completes_count_once(world):
    """A consumer stopped after its batch committed and before its offsets did gets the batch again; a
    producer's retry can put one event twice in a batch. Each record counts once towards its extract, so the
    extract is complete (and released) when its count says, not never."""
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    a, b = pupil(keys, key, ex, 2), pupil(keys, key, ex, 3, forename="Alan", surname="Turing")
    await svc.handle_pupils([a, a])
    await svc.handle_pupils([a, b])
    assert repo.progress[ex][0] == 2
    await svc.handle_extracts([completed(ex, key, 2)])
    await svc.release_wanted()
    assert sorted(e.revision for e in outbox.published) == [1, 1] and len(repo.records) == 2


async def test_the_same_child_in_a_second_extract_is_one_member_updated(world):
    svc, _repo, keys, outbox = world
    key1, ex1, key2, ex2 = keys.new(), uuid4(), keys.new(), uuid4()
    await send(svc, [pupil(keys, key1, ex1, 2)], completed(ex1, key1, 1))
    later = datetime(2017, 6, 20, tzinfo=UTC)  # the newer record wins (ties broken by record id: not here)
    await send(svc, [pupil(keys, key2, ex2, 7, school="9372002", received=later)], completed(ex2, key2, 1))
    added, updated = outbox.published
    assert added.pupil_id == updated.pupil_id and updated.change == "updated" and updated.revision == 2
    assert updated.school_dfe == "9372002"


async def test_a_replacement_dataset_withdraws_a_child_no_longer_in_it(world):
    svc, repo, keys, outbox = world
    key1, ex1, key2, ex2 = keys.new(), uuid4(), keys.new(), uuid4()
    await send(
        svc,
        [pupil(keys, key1, ex1, 2), pupil(keys, key1, ex1, 3, forename="Alan", surname="Turing")],
        completed(ex1, key1, 2),
    )
    await send(svc, [pupil(keys, key2, ex2, 2)], completed(ex2, key2, 1, supersedes=ex1))
    withdrawn = [e for e in outbox.published if isinstance(e, CohortMemberWithdrawn)]
    assert len(withdrawn) == 1 and "replacement dataset" in withdrawn[0].reason
    names = {
        e.pupil_id: key1.open_model(e.personal, PupilPersonal, e.aad()).forename
        for e in outbox.published
        if isinstance(e, CohortMemberAdded)
    }
    assert names[withdrawn[0].pupil_id] == "Alan"
    assert {k[2] for k, m in repo.cohort.items() if m.status == "active"} == {
        p for p, name in names.items() if name == "Ada"
    }


async def test_a_child_outside_the_programme_years_gets_no_event_and_an_age_finding(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    # recorded in Year 5 in May (Year 6 in 2017/18: no programme), born as a Year 2 child would be
    await send(svc, [pupil(keys, key, ex, 2, year_group="5")], completed(ex, key, 1))
    assert outbox.published == []
    assert [code for (_, _, code) in repo.findings] == ["out-of-year-group"]


async def test_replayed_events_of_deleted_data_are_skipped(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    keys.destroyed.add(key.key_id)  # retention destroyed the extract's key
    await svc.handle_pupils([pupil(keys, key, ex, 2)])
    await svc.release_wanted()
    assert repo.records == {} and outbox.published == []


# --- leaving a school (the May census rolled forward past the school's last year) ----------------------


async def test_an_infant_school_year_2_goes_out_with_the_school_not_yet_known_until_the_year_3_admission(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    infant = dict(school="9372101", school_name="Brook Infant School")
    await send(svc, [pupil(keys, key, ex, 2, **infant)], completed(ex, key, 1))
    [added] = outbox.published
    assert (added.programme, added.year_group) == ("flu", "3")
    assert (added.school_dfe, added.school_name) == ("", "")  # never the infant school the child has left
    [(code, detail)] = [(k[2], d) for k, d in repo.findings.items()]
    assert code == "school-not-yet-known" and "left infant school after Year 2" in detail

    # the Admissions Service's Year 3 place names the junior school: that record wins, the finding goes
    key2, ex2 = keys.new(), uuid4()
    admission = pupil(
        keys,
        key2,
        ex2,
        4,
        year_group="3",
        school="9372102",
        school_name="Brook Junior School",
        source="admissions-year3-transfer",
        ref=date(2017, 4, 17),
    )
    await send(svc, [admission], completed(ex2, key2, 1, source="admissions-year3-transfer", ref=date(2017, 4, 17)))
    updated = outbox.published[-1]
    assert (updated.change, updated.pupil_id) == ("updated", added.pupil_id)
    assert (updated.school_dfe, updated.school_name) == ("9372102", "Brook Junior School")
    assert repo.findings == {}


async def test_an_infant_year_2_at_a_primary_school_stays_at_it(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await send(svc, [pupil(keys, key, ex, 2)], completed(ex, key, 1))
    [added] = outbox.published
    assert (added.school_dfe, added.school_name) == ("9372001", "Castle Primary") and repo.findings == {}


MAY_2020 = date(2020, 5, 21)


async def test_a_year_6_leaver_is_a_year_7_flu_child_with_no_school_until_the_october_census(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    may = dict(ref=MAY_2020, received=datetime(2020, 6, 1, tzinfo=UTC), dob=date(2009, 3, 4))
    await send(
        svc, [pupil(keys, key, ex, 2, year_group="6", **may)], completed(ex, key, 1, ref=MAY_2020, year="2020/21")
    )
    [added] = outbox.published
    assert (added.academic_year, added.programme, added.year_group) == ("2020/21", "flu", "7")
    assert added.school_dfe == "" and added.school_name == ""  # not Castle Primary, which the child has left
    assert [k[2] for k in repo.findings] == ["school-not-yet-known"]

    # the October census says where the child is: it wins, and the child is at that school
    key2, ex2 = keys.new(), uuid4()
    october = date(2020, 10, 1)
    oct_row = pupil(
        keys,
        key2,
        ex2,
        9,
        year_group="7",
        school="9374001",
        school_name="Avon Valley School",
        source="autumn-census",
        ref=october,
        received=datetime(2020, 10, 20, tzinfo=UTC),
        dob=date(2009, 3, 4),
    )
    await send(svc, [oct_row], completed(ex2, key2, 1, source="autumn-census", ref=october, year="2020/21"))
    updated = outbox.published[-1]
    assert (updated.change, updated.school_dfe, updated.school_name) == ("updated", "9374001", "Avon Valley School")
    assert repo.findings == {}


async def test_the_schools_register_keeps_a_middle_school_year_6_at_its_school(world):
    svc, repo, keys, outbox = world
    repo.schools["9372001"] = SchoolSpan("4", "8")  # a middle school: Years 4 to 8
    repo.schools["9372101"] = SchoolSpan("R", "3")  # an infant school the register says teaches Year 3
    key, ex = keys.new(), uuid4()
    may = dict(ref=MAY_2020, received=datetime(2020, 6, 1, tzinfo=UTC), dob=date(2009, 3, 4))
    rows = [
        pupil(keys, key, ex, 2, year_group="6", **may),
        pupil(
            keys,
            key,
            ex,
            3,
            year_group="2",
            forename="Bo",
            dob=date(2013, 3, 4),
            school="9372101",
            school_name="Brook Infant School",
            ref=MAY_2020,
            received=datetime(2020, 6, 1, tzinfo=UTC),
        ),
    ]
    await send(svc, rows, completed(ex, key, 2, ref=MAY_2020, year="2020/21"))
    assert sorted(e.school_dfe for e in outbox.published) == ["9372001", "9372101"] and repo.findings == {}

    repo.schools["9372001"] = SchoolSpan("R", "6")  # a primary school after all: Year 7 is elsewhere
    key2, ex2 = keys.new(), uuid4()
    await send(
        svc,
        [pupil(keys, key2, ex2, 2, year_group="6", **may)],
        completed(ex2, key2, 1, supersedes=ex, ref=MAY_2020, year="2020/21"),
    )
    [ada] = [e for e in outbox.published[2:] if isinstance(e, CohortMemberAdded)]
    assert ada.change == "updated" and ada.school_dfe == ""
    assert "teaches to Year 6" in repo.findings[next(iter(repo.findings))]


# --- the rules against the protocol in force ---------------------------------------------------------


async def test_coverage_is_checked_into_a_gauge_and_an_event_per_year_for_delivery(world):
    from prometheus_client import REGISTRY
    from sais_shared.events import CoverageChecked
    from sais_shared.protocol import bundled_protocol_path

    svc, _repo, _keys, outbox = world
    gaps = await svc.check_coverage()  # the bundled v0.2 (the 2017 ISP)
    value = lambda y: REGISTRY.get_sample_value("sais_protocol_coverage_gaps", {"academic_year": y})
    assert gaps["2017/18"] == [] and value("2017/18") == 0 and value("2018/19") == 3  # flu Year 5, three sexes
    checked = {e.academic_year: e for e in outbox.published if isinstance(e, CoverageChecked)}
    assert set(checked) == set(svc.rules) and checked["2017/18"].gaps == []
    [flu5] = checked["2018/19"].gaps
    assert (flu5.programme, flu5.year_groups, flu5.sexes) == ("flu", ["5"], ["M", "F", "U"])
    assert "requested from none of summer-census" in flu5.description

    await svc.check_coverage()  # the same check again (a restart): the same event ids, which delivery has seen
    again = [e.event_id for e in outbox.published if isinstance(e, CoverageChecked)]
    assert len(again) == 2 * len(svc.rules) and set(again) == {e.event_id for e in checked.values()}

    v03 = load_protocol(bundled_protocol_path().with_name("warwickshire-cwpt-v0.3.yaml"))
    await svc.check_coverage(v03)
    latest = [e for e in outbox.published if isinstance(e, CoverageChecked)][-len(svc.rules) :]
    assert all(e.protocol_version == "0.3" and e.gaps == [] for e in latest)
    assert all(value(y) == 0 for y in svc.rules)


# --- all or nothing ------------------------------------------------------------------------------


def failed(extract_id: UUID, key: DataKey, published: int):
    from sais_shared.events import ExtractFailed

    return ExtractFailed(
        event_id=stable_id("extract-failed", extract_id),
        occurred_at=datetime(2017, 6, 1, tzinfo=UTC),
        extract_id=extract_id,
        source="summer-census",
        reference_date=MAY,
        target_academic_year="2017/18",
        key_id=key.key_id,
        status="refused",
        code="file.field-too-long",
        reason="a field is too long",
        published=published,
    )


async def test_an_extract_s_children_are_held_until_it_is_complete(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 5)]
    await svc.handle_pupils(events[:2])
    await svc.release_wanted()
    assert outbox.published == [] and len(repo.records) == 2  # recorded and matched, in no cohort
    await svc.handle_extracts([completed(ex, key, 3)])
    await svc.release_wanted()
    assert outbox.published == []  # completed, but one of its three pupil events has not come yet
    await svc.handle_pupils(events[2:])
    await svc.release_wanted()
    assert len(outbox.published) == 3  # the last one came: all three released together


async def test_a_checksum_that_does_not_match_holds_the_extract(world):
    from sais_shared.events import records_digest

    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 4)]
    wrong = records_digest([events[0].record_id, stable_id("record", ex, 99)])  # right count, other records
    await send(svc, events, completed(ex, key, 2, digest=wrong))
    assert outbox.published == []
    right = records_digest([e.record_id for e in events])
    key2, ex2 = keys.new(), uuid4()
    events2 = [pupil(keys, key2, ex2, n, forename=f"Child{n}") for n in range(2, 4)]
    await send(svc, events2, completed(ex2, key2, 2, digest=records_digest([e.record_id for e in events2])))
    assert right != wrong and len(outbox.published) == 2


async def test_a_failed_extract_is_discarded_and_its_late_events_too(world):
    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 6)]
    await svc.handle_pupils(events[:2])
    await svc.release_wanted()
    await svc.handle_extracts([failed(ex, key, published=4)])
    await svc.release_wanted()
    assert repo.records == {}  # what it left is gone
    await svc.handle_pupils(events[2:])  # the rest arrive after the failure
    await svc.release_wanted()
    assert repo.records == {} and outbox.published == []


async def test_a_withdrawn_extract_s_children_leave_the_cohort(world):
    from sais_shared.events import ExtractWithdrawn

    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await send(svc, [pupil(keys, key, ex, 2)], completed(ex, key, 1))
    [added] = outbox.published
    await svc.handle_extracts(
        [
            ExtractWithdrawn(
                event_id=stable_id("extract-withdrawn", ex),
                occurred_at=datetime(2017, 6, 2, tzinfo=UTC),
                extract_id=ex,
                target_academic_year="2017/18",
                reason="wrong reference date",
                withdrawn_by="Jo",
            )
        ]
    )
    await svc.release_wanted()
    [_, gone] = outbox.published
    assert isinstance(gone, CohortMemberWithdrawn) and gone.pupil_id == added.pupil_id
    assert "withdrawn" in gone.reason and gone.revision == added.revision + 1


async def test_a_release_cut_short_by_a_crash_is_finished_at_start(world, monkeypatch):
    from sais_eligibility.service_layer import handlers

    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 7)]
    await svc.handle_pupils(events)
    await svc.release_wanted()
    monkeypatch.setattr(handlers, "RELEASE_CHUNK", 2)
    calls = 0
    real = svc._recompute

    async def crash_after_the_first_chunk(*a, **k):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("the database went away")
        return await real(*a, **k)

    svc._recompute = crash_after_the_first_chunk
    with pytest.raises(ConnectionError):
        await svc.handle_extracts([completed(ex, key, 5)])
        await svc.release_wanted()
    assert len(outbox.published) == 2  # the first chunk's two children, then the crash
    svc._recompute = real
    await svc.reconcile_pending()  # what the service does at start
    assert len(outbox.published) == 5 and len({e.pupil_id for e in outbox.published}) == 5


async def test_a_chunk_s_events_are_published_while_the_next_chunk_is_worked_and_all_before_the_walk_ends(
    world, monkeypatch
):
    """The walk does not wait for a chunk's publishing (the broker's acknowledgements, the outbox's delete)
    before it works the next chunk; it waits for the last one before it returns, and for one in flight when a
    chunk fails, so that none is left running beside the releaser's retry. A chunk's events go from memory,
    as they were queued; the outbox is read back only for what a stop left there."""
    from sais_eligibility.service_layer import handlers

    svc, repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await svc.handle_pupils([pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 7)])
    monkeypatch.setattr(handlers, "RELEASE_CHUNK", 2)
    chunks, seen, given, read_back = 0, [], [], []
    real_recompute, real_publish, real_flush = svc._recompute, outbox.publish, outbox.flush

    async def recompute(*a, **k):
        nonlocal chunks
        chunks += 1
        return await real_recompute(*a, **k)

    async def publish(events):
        seen.append(chunks)  # how many chunks the walk had worked when this chunk's publishing began
        given.append(len(events))
        return await real_publish(events)

    async def flush():
        read_back.append(await real_flush())
        return read_back[-1]

    svc._recompute, outbox.publish, outbox.flush = recompute, publish, flush
    await svc.handle_extracts([completed(ex, key, 5)])
    await svc.release_wanted()
    assert chunks == 3 and seen == [2, 3, 3]  # chunk 1's publishing began once chunk 2 was under way
    assert given == [2, 2, 1] and set(read_back) == {0}  # each chunk's events from memory; nothing left to read
    assert len({e.pupil_id for e in outbox.published}) == 5 and not repo.outbox


# --- the releaser, beside the consumers --------------------------------------------------------------


async def test_the_batch_that_completes_an_extract_only_asks_for_its_release(world):
    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    events = [pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 5)]
    await svc.handle_extracts([completed(ex, key, 3)])
    await svc.handle_pupils(events)  # the last of its rows: complete, and the batch returns unreleased
    assert outbox.published == [] and svc.releases.take() == {"2017/18"}
    svc.releases.want({"2017/18"})
    await svc.release_wanted()
    assert len(outbox.published) == 3


async def test_the_releaser_starts_with_what_a_stop_left_and_retries_what_fails(world):
    svc, _repo, keys, outbox = world
    key, ex = keys.new(), uuid4()
    await svc.handle_pupils([pupil(keys, key, ex, n, forename=f"Child{n}") for n in range(2, 5)])
    await svc.handle_extracts([completed(ex, key, 3)])
    svc.releases.take()  # as after a restart: nothing asked for, the extract pending in the database
    real, calls = svc._recompute, 0

    async def fails_once(*a, **k):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("the database went away")
        await real(*a, **k)

    svc._recompute = fails_once
    task = asyncio.create_task(svc.run_releases(check_every_s=3600, retry_s=0))
    try:
        await asyncio.wait_for(_until(lambda: len(outbox.published) == 3), 10)
    finally:
        await _stop(task)
    assert calls == 2  # the failed walk, then the walk retried


async def test_the_releaser_releases_what_the_consumers_ask_for_as_they_ask(world):
    svc, _repo, keys, outbox = world
    task = asyncio.create_task(svc.run_releases(check_every_s=3600, retry_s=0))
    try:
        for n in range(2):
            key, ex = keys.new(), uuid4()
            await send_unreleased(svc, [pupil(keys, key, ex, 2 + n, forename=f"Child{n}")], completed(ex, key, 1))
            await asyncio.wait_for(_until(lambda n=n: len(outbox.published) == n + 1), 10)
    finally:
        await _stop(task)


async def send_unreleased(svc, pupils, done):
    await svc.handle_pupils(pupils)
    await svc.handle_extracts([done])


async def _stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0)  # the releaser's turn: no time passes, the loop only yields
