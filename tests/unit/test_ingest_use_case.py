"""Ingest's file use case in memory, through its ports (extract store, key store, publishers, clock):
the real readers, validation and minimisation, fake storage and Kafka. The PostgreSQL and Kafka
adapters behind the same ports are exercised by the integration tests."""

from __future__ import annotations

from datetime import date
from uuid import UUID

import pytest
from sais_ingest.adapters.readers import FileReaders
from sais_ingest.adapters.repository import ExtractRow
from sais_ingest.domain.model import ExtractFileError
from sais_ingest.service_layer.ingest_file import Ingest, Publishers
from sais_shared.events import ExtractCompleted, PupilPersonal, PupilRecorded, RowRejected
from sais_shared.protocol import load_protocol

from tests.fakes import FakeExtractStore, FakeKeys, FakePublisher, FixedClock, ProtocolInForce
from tests.helpers import REPO, personal_values
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.unit
MAY = REPO / "data" / "samples" / "may-census-2017.csv"


@pytest.fixture
def ingest():
    pubs = Publishers(FakePublisher("pupils"), FakePublisher("completed"), FakePublisher("rejected"))
    return Ingest(FakeExtractStore(), FakeKeys(), ProtocolInForce(load_protocol()), pubs, FixedClock(), FileReaders())


async def test_every_row_is_counted_published_minimised_and_sealed(ingest):
    rep = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 5, 18), actor="test")
    assert rep.balanced and (rep.rows_in, rep.accepted, rep.rejected, rep.out_of_scope) == (52, 49, 2, 1)
    assert {r["row_number"] for r in rep.rejections} == {52, 53}
    [left_out] = rep.out_of_scope_rows  # named by row, with why: valid, but not requested from this source
    assert left_out["row_number"] == 50 and "not requested from summer-census" in left_out["reason"]
    assert set(rep.dropped_columns) == {"UPN", "Ethnicity", "SEN"}
    pupils = [PupilRecorded.model_validate_json(v) for _, v in ingest.publishers.pupil_recorded.sent]
    rejects = [RowRejected.model_validate_json(v) for _, v in ingest.publishers.row_rejected.sent]
    [done] = [ExtractCompleted.model_validate_json(v) for _, v in ingest.publishers.extract_completed.sent]
    assert len(pupils) == 49 and {r.row_number for r in rejects} == {52, 53}
    assert (done.rows_in, done.accepted, done.rejected, done.out_of_scope) == (52, 49, 2, 1)
    # nothing personal in clear text on any topic; the sealed fields open with the extract's key
    scan = PersonalDataScan(personal_values(MAY))
    for publisher in (
        ingest.publishers.pupil_recorded,
        ingest.publishers.row_rejected,
        ingest.publishers.extract_completed,
    ):
        assert not scan.in_events(v for _, v in publisher.sent)
        assert not scan.in_text("\n".join((k or b"").decode(errors="replace") for k, _ in publisher.sent))
    key = ingest.keys.by_extract[done.extract_id]
    assert key.open_model(pupils[0].personal, PupilPersonal, pupils[0].aad()).surname
    assert [a for a, _ in ingest.repo.audited] == ["extract.ingested"]


async def test_the_same_file_again_publishes_nothing_and_is_audited_as_a_duplicate(ingest):
    first = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 5, 18), actor="test")
    sent = len(ingest.publishers.pupil_recorded.sent)
    again = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 5, 18), actor="test")
    assert again.duplicate and again.extract_id == first.extract_id
    assert len(ingest.publishers.pupil_recorded.sent) == sent
    assert [a for a, _ in ingest.repo.audited] == ["extract.ingested", "extract.duplicate_ignored"]


async def test_a_source_the_protocol_does_not_cover_is_refused_before_reading(ingest):
    from sais_shared.protocol import ProtocolError

    with pytest.raises(ProtocolError):
        await ingest.file(MAY, source="hospital-records", reference_date=date(2017, 5, 18), actor="test")
    assert ingest.repo.extracts == {} and ingest.publishers.pupil_recorded.sent == []


async def test_an_extract_with_a_title_row_is_ingested_and_reports_where_its_header_was(ingest, tmp_path):
    titled = tmp_path / "may-titled.csv"
    titled.write_text("Summer census 2017 extract\r\n" + MAY.read_text(encoding="utf-8-sig"), encoding="utf-8")
    rep = await ingest.file(titled, source="summer-census", reference_date=date(2017, 5, 18), actor="test")
    assert rep.header_row == 2 and (rep.rows_in, rep.accepted, rep.rejected) == (52, 49, 2)
    assert {r["row_number"] for r in rep.rejections} == {53, 54}  # one lower, as Excel shows them


# --- all or nothing, one child once, corrections -------------------------------------------------

REF = date(2017, 5, 18)


def _completed(ingest):
    from sais_shared.events import extract_event_adapter

    return [extract_event_adapter.validate_json(v) for _, v in ingest.publishers.extract_completed.sent]


def _lines(path=MAY):
    return path.read_text(encoding="utf-8-sig").splitlines()


async def test_a_row_repeated_exactly_is_one_child_and_twins_stay_two(ingest, tmp_path):
    lines = _lines()
    header, first = lines[0], lines[1]
    cols = header.split(",")
    twin = first.split(",")
    fore = next(i for i, c in enumerate(cols) if "forename" in c.lower())
    twin[fore] = "Zebedee"  # same date of birth, address and school; another forename
    f = tmp_path / "repeat.csv"
    f.write_text("\n".join([header, first, *lines[2:], first, ",".join(twin)]) + "\n", encoding="utf-8")
    rep = await ingest.file(f, source="summer-census", reference_date=REF, actor="test")
    assert rep.balanced and rep.repeated == 1 and rep.accepted == 50  # 49 + the twin; the repeat once
    pupils = [PupilRecorded.model_validate_json(v) for _, v in ingest.publishers.pupil_recorded.sent]
    assert len(pupils) == 50 and len({p.record_id for p in pupils}) == 50
    [done] = _completed(ingest)
    assert (done.accepted, done.repeated) == (50, 1)
    repeat_row = len(lines) + 1  # header is row 1: the copy of row 2 is the file's second-to-last row
    assert any(w["code"] == "row.repeated" and w["row_number"] == repeat_row and "row 2" in w["reason"]
               for w in rep.warning_rows)  # fmt: skip


async def test_a_long_run_of_rows_out_of_scope_is_stored_chunk_by_chunk(ingest, tmp_path):
    """A census sorted by year group starts with a year the protocol does not ask for: those rows are
    problems only, and were kept in memory until the next accepted rows (a 1,000,000-pupil October census
    took its CLI from 102 to 214 MB)."""
    from sais_ingest.service_layer.ingest_file import CHUNK_ROWS

    lines = _lines()
    out_of_scope = lines[49]  # spreadsheet row 50, a Year 4: not requested from the summer census
    n = 3 * CHUNK_ROWS + 7
    f = tmp_path / "sorted-by-year.csv"
    f.write_text("\n".join([lines[0], *[out_of_scope] * n, lines[1]]) + "\n", encoding="utf-8")
    stored: list[int] = []
    add_problems = ingest.repo.add_problems

    async def spy(extract_id, rows):
        stored.append(len(rows))
        await add_problems(extract_id, rows)

    ingest.repo.add_problems = spy
    rep = await ingest.file(f, source="summer-census", reference_date=REF, actor="test")
    assert rep.balanced and (rep.out_of_scope, rep.accepted) == (n, 1)
    assert sum(stored) == n and max(stored) <= CHUNK_ROWS


async def test_same_name_and_birth_date_with_other_details_is_reported_not_merged(ingest, tmp_path):
    lines = _lines()
    header, first = lines[0], lines[1]
    cols = [c.lower() for c in header.split(",")]
    moved = first.split(",")
    pc = next(i for i, c in enumerate(cols) if "postcode" in c.replace(" ", ""))
    moved[pc] = "CV1 1AA"
    f = tmp_path / "moved.csv"
    f.write_text("\n".join([header, first, *lines[2:], ",".join(moved)]) + "\n", encoding="utf-8")
    rep = await ingest.file(f, source="summer-census", reference_date=REF, actor="test")
    assert rep.repeated == 0 and rep.accepted == 50
    assert any(w["code"] == "row.same-child" and "row 2" in w["reason"] for w in rep.warning_rows)


async def test_a_file_refused_part_way_is_ended_refused_and_announced(ingest, tmp_path, monkeypatch):
    from sais_ingest.service_layer import ingest_file

    monkeypatch.setattr(ingest_file, "CHUNK_ROWS", 10)  # so rows are published before the bad one
    lines = _lines()
    f = tmp_path / "long.csv"
    f.write_text("\n".join([*lines, lines[1].replace(",", ',"' + "x" * 200_000 + '",', 1)]) + "\n", encoding="utf-8")
    with pytest.raises(ExtractFileError):
        await ingest.file(f, source="summer-census", reference_date=REF, actor="Jo")
    [row] = ingest.repo.extracts.values()
    assert row.status == "refused" and row.failure
    [ended] = _completed(ingest)
    assert ended.type == "extract-failed" and ended.status == "refused" and ended.published >= 10
    assert ended.published == len(ingest.publishers.pupil_recorded.sent)
    assert ("extract.refused", f"extract:{row.extract_id}") in ingest.repo.audited
    again = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="Jo")  # the fixed file
    assert not again.duplicate and again.extract_id != row.extract_id


async def test_a_chunk_is_written_while_the_next_one_is_read_and_every_row_is_counted(ingest, monkeypatch):
    """A chunk's repeat check, publication and problems wait on the database and the broker; the rows after it
    are read meanwhile. Chunks are written one at a time, in order, and all before the extract completes."""
    from sais_ingest.service_layer import ingest_file

    monkeypatch.setattr(ingest_file, "CHUNK_ROWS", 10)
    runs, read_when_indexed = [], []  # rows read when each chunk was checked for repeats
    real_begin, index_rows = ingest._begin, ingest.repo.index_rows

    async def begin(*a, **k):
        runs.append(run := await real_begin(*a, **k))
        return run

    async def spy(extract_id, rows):
        read_when_indexed.append(runs[0].report.rows_in)
        return await index_rows(extract_id, rows)

    ingest._begin, ingest.repo.index_rows = begin, spy
    rep = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    assert rep.balanced and (rep.rows_in, rep.accepted) == (52, 49)
    assert read_when_indexed[0] > 10  # the first chunk was checked once the second was being read
    assert read_when_indexed == sorted(read_when_indexed)  # in order, one at a time
    [done] = _completed(ingest)
    assert done.type == "extract-completed" and done.accepted == len(ingest.publishers.pupil_recorded.sent) == 49


async def test_a_chunk_that_cannot_be_written_fails_its_extract_and_nothing_after_it_is_published(ingest, monkeypatch):
    from sais_ingest.service_layer import ingest_file

    monkeypatch.setattr(ingest_file, "CHUNK_ROWS", 10)
    calls = 0
    index_rows = ingest.repo.index_rows

    async def fails_second(extract_id, rows):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise ConnectionError("the database went away")
        return await index_rows(extract_id, rows)

    ingest.repo.index_rows = fails_second
    with pytest.raises(ConnectionError):
        await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    [row] = ingest.repo.extracts.values()
    assert row.status == "failed"
    [ended] = _completed(ingest)
    assert ended.type == "extract-failed" and ended.published == len(ingest.publishers.pupil_recorded.sent) < 49


async def test_an_abandoned_extract_is_ended_by_the_next_ingest(ingest):
    ingest.repo.extracts[UUID(int=1)] = ExtractRow(
        UUID(int=1), "ab" * 32, "summer-census", REF, "started", 0, 0, 0, 0, 0, None, "x.csv", "2017/18", [], "0.2",
        key_id=UUID(int=2),
    )  # fmt: skip
    await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    assert ingest.repo.extracts[UUID(int=1)].status == "failed"
    assert [e.type for e in _completed(ingest)] == ["extract-failed", "extract-completed"]


async def test_a_header_only_replacement_is_refused_unless_confirmed(ingest, tmp_path):
    first = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    empty = tmp_path / "empty.csv"
    empty.write_text(_lines()[0] + "\n", encoding="utf-8")
    dry = await ingest.file(empty, source="summer-census", reference_date=REF, actor="test", dry_run=True)
    assert dry.dry_run and dry.status == "refused" and dry.effect["withdrawals"] == 49 and dry.effect["before"] == 49
    assert len(_completed(ingest)) == 1  # a dry run publishes nothing
    with pytest.raises(ExtractFileError, match="--replace"):
        await ingest.file(empty, source="summer-census", reference_date=REF, actor="test")
    assert _completed(ingest)[-1].type == "extract-failed"
    done = await ingest.file(empty, source="summer-census", reference_date=REF, actor="test", replace=True)
    assert done.supersedes == first.extract_id and done.rows_in == 0
    assert ("extract.replacement_confirmed", f"extract:{done.extract_id}") in ingest.repo.audited


async def test_a_small_correction_replaces_without_confirmation_and_dry_run_counts_it(ingest, tmp_path):
    await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    lines = _lines()
    fixed = tmp_path / "fixed.csv"
    fixed.write_text("\n".join([lines[0], *lines[2:]]) + "\n", encoding="utf-8")  # one child fewer (2 %)
    dry = await ingest.file(fixed, source="summer-census", reference_date=REF, actor="test", dry_run=True)
    assert dry.status == "dry-run" and (dry.effect["withdrawals"], dry.effect["adds"]) == (1, 0)
    rep = await ingest.file(fixed, source="summer-census", reference_date=REF, actor="test")
    assert rep.supersedes is not None and rep.status == "completed" and rep.accepted == 48


@pytest.mark.parametrize(
    ("source", "ref", "says"),
    [
        ("summer-census", date(1, 1, 1), "before"),
        ("summer-census", date(9999, 12, 31), "future"),
        ("summer-census", date(2099, 5, 18), "future"),
        ("summer-census", date(2016, 12, 25), "in May"),
        ("autumn-census", date(2017, 5, 18), "in October"),
        ("admissions-reception", date(2016, 11, 1), "before the September"),
    ],
)
async def test_a_reference_date_outside_its_source_s_window_is_refused(ingest, source, ref, says):
    with pytest.raises(ExtractFileError, match=says) as err:
        await ingest.file(MAY, source=source, reference_date=ref, actor="test")
    assert "--force-date" in str(err.value) and ingest.repo.extracts == {}


async def test_a_forced_reference_date_is_taken_and_audited(ingest):
    rep = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 6, 20), actor="t", force_date=True)
    assert rep.accepted == 49
    assert ("extract.reference_date_forced", f"extract:{rep.extract_id}") in ingest.repo.audited


async def test_the_same_file_with_another_reference_date_is_a_new_extract(ingest):
    a = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    b = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 5, 19), actor="test")
    assert not b.duplicate and b.extract_id != a.extract_id


async def test_a_withdrawn_extract_is_announced_and_cannot_be_withdrawn_twice(ingest):
    from sais_ingest.service_layer.ingest_file import ExtractStateError

    rep = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    await ingest.withdraw(rep.extract_id, reason="wrong date", actor="Jo")
    assert _completed(ingest)[-1].type == "extract-withdrawn"
    with pytest.raises(ExtractStateError):
        await ingest.withdraw(rep.extract_id, reason="again", actor="Jo")
    again = await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    assert not again.duplicate  # withdrawn: the same file may be ingested again


async def test_the_same_extract_being_ingested_by_another_process_is_refused_as_busy(ingest):
    from sais_ingest.adapters.repository import ExtractBusyError
    from sais_shared.events import stable_id

    reading = stable_id("extract", "x", "summer-census", REF, "2017/18", 0)
    facts = __import__("sais_ingest.adapters.readers", fromlist=["inspect_file"]).inspect_file(MAY)
    ingest.repo.extracts[reading] = ExtractRow(
        reading, facts.sha256, "summer-census", REF, "started", 0, 0, 0, 0, 0, None, "x.csv", "2017/18", [], "0.2",
        key_id=UUID(int=2),
    )  # fmt: skip
    ingest.repo.held.add(reading)  # another process holds its lock
    with pytest.raises(ExtractBusyError, match="another process"):
        await ingest.file(MAY, source="summer-census", reference_date=REF, actor="test")
    assert ingest.repo.extracts[reading].status == "started"  # left to the process reading it
