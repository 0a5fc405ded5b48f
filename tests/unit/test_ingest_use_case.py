"""Ingest's file use case in memory, through its ports (extract store, key store, publishers, clock):
the real readers, validation and minimisation, fake storage and Kafka. The PostgreSQL and Kafka
adapters behind the same ports are exercised by the integration tests."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from uuid import UUID

import pytest
from sais_ingest.adapters.repository import ExtractRow
from sais_ingest.service_layer.ingest_file import Ingest, Publishers
from sais_shared.crypto import DataKey, KeyEncryptionKey
from sais_shared.events import ExtractCompleted, PupilPersonal, PupilRecorded, RowRejected
from sais_shared.protocol import load_protocol

from tests.helpers import REPO, personal_values
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.unit
MAY = REPO / "data" / "samples" / "may-census-2017.csv"


@dataclass
class FakeExtractStore:
    extracts: dict[UUID, ExtractRow] = field(default_factory=dict)
    problems_: list[tuple] = field(default_factory=list)
    row_keys: list[tuple] = field(default_factory=list)
    dip: dict[UUID, list[dict]] = field(default_factory=dict)
    audited: list[tuple[str, str]] = field(default_factory=list)

    async def audit(self, actor, action, subject, details, protocol_version):
        self.audited.append((action, subject))

    async def by_hash(self, sha256):
        return next((e for e in self.extracts.values() if e.content_sha256 == sha256), None)

    async def get(self, extract_id):
        return self.extracts.get(extract_id)

    async def latest_completed(self, source, reference_date, other_than):
        done = [
            e
            for e in self.extracts.values()
            if (e.source, e.reference_date, e.status) == (source, reference_date, "completed")
            and e.extract_id != other_than
        ]
        return done[-1].extract_id if done else None

    async def start(
        self,
        *,
        extract_id,
        sha256,
        source,
        reference_date,
        target_academic_year,
        file_name,
        encoding,
        supersedes,
        key_id,
        originator,
        protocol_version,
        ingested_by,
    ):
        self.extracts[extract_id] = ExtractRow(
            extract_id,
            sha256,
            source,
            reference_date,
            "started",
            0,
            0,
            0,
            0,
            0,
            supersedes,
            file_name,
            target_academic_year,
            [],
            protocol_version,
        )
        self.problems_ = [p for p in self.problems_ if p[0] != extract_id]

    async def add_problems(self, extract_id, rows):
        self.problems_ += [(extract_id, *r) for r in rows]

    async def add_row_keys(self, extract_id, rows):
        self.row_keys += [(extract_id, *r) for r in rows]

    async def duplicate_rows(self, extract_id):
        first: dict[str, int] = {}
        out = []
        for ex, key, row in sorted(self.row_keys, key=lambda r: r[2]):
            if ex == extract_id:
                if key in first:
                    out.append((row, first[key]))
                else:
                    first[key] = row
        self.row_keys = [r for r in self.row_keys if r[0] != extract_id]
        return out

    async def save_dip_sample(self, extract_id, rows):
        self.dip[extract_id] = [
            dict(zip(("row_number", "school_dfe", "year_group", "gender", "personal"), r, strict=True)) for r in rows
        ]

    async def dip_sample(self, extract_id):
        return sorted(self.dip.get(extract_id, []), key=lambda r: r["row_number"])

    async def problems(self, extract_id, kind, limit=1000):
        return [
            dict(zip(("row_number", "field", "code", "reason"), p[1:2] + p[3:], strict=True))
            for p in sorted(self.problems_, key=lambda p: (p[1], p[3]))
            if p[0] == extract_id and p[2] == kind
        ]

    async def complete(self, extract_id, *, rows_in, accepted, rejected, out_of_scope, warnings, dropped_columns):
        self.extracts[extract_id] = replace(
            self.extracts[extract_id],
            status="completed",
            rows_in=rows_in,
            accepted=accepted,
            rejected=rejected,
            out_of_scope=out_of_scope,
            warnings=warnings,
            dropped_columns=dropped_columns,
        )


class FakeKeys:
    def __init__(self) -> None:
        self.kek = KeyEncryptionKey(os.urandom(32))
        self.keys: dict[UUID, DataKey] = {}
        self.by_extract: dict[UUID, DataKey] = {}

    async def key_for_extract(self, extract_id):
        if extract_id not in self.by_extract:
            key = DataKey.generate(extract_id)
            self.by_extract[extract_id] = self.keys[key.key_id] = key
        return self.by_extract[extract_id]

    async def get_many(self, key_ids):
        return {k: self.keys[k] for k in key_ids}


class FakePublisher:
    """Collects what would go to one topic (serialised, as the Kafka adapter sends it)."""

    def __init__(self, topic: str) -> None:
        self.topic, self.sent = topic, []

    async def publish(self, message, *, key=None, **_):
        self.sent.append((key, message if isinstance(message, bytes) else message.model_dump_json().encode()))
        done = asyncio.get_running_loop().create_future()  # the broker's acknowledgement, already in
        done.set_result(None)
        return done


class FixedClock:
    def now(self):
        return datetime(2017, 6, 1, 9, tzinfo=UTC)

    def today(self):
        return date(2017, 6, 1)


@dataclass
class ProtocolInForce:
    current: object


@pytest.fixture
def ingest():
    pubs = Publishers(FakePublisher("pupils"), FakePublisher("completed"), FakePublisher("rejected"))
    return Ingest(FakeExtractStore(), FakeKeys(), ProtocolInForce(load_protocol()), pubs, FixedClock())


async def test_every_row_is_counted_published_minimised_and_sealed(ingest):
    rep = await ingest.file(MAY, source="summer-census", reference_date=date(2017, 5, 18), actor="test")
    assert rep.balanced and (rep.rows_in, rep.accepted, rep.rejected, rep.out_of_scope) == (52, 49, 2, 1)
    assert {r["row_number"] for r in rep.rejections} == {52, 53}
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
