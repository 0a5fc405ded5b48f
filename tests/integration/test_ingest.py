"""ingest through real Kafka and PostgreSQL: events, minimisation, encryption, duplicates, replacement."""

import json
import shutil
from datetime import date

import asyncpg
import pytest
from sais_ingest.app import ingest_session
from sais_ingest.config import IngestSettings
from sais_shared.events import (
    ExtractCompleted,
    PupilPersonal,
    PupilRecorded,
    RowRejected,
)
from sais_shared.topics import Topics

from tests.helpers import REPO, all_table_text, personal_values, read_topic
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.integration
MAY = REPO / "data" / "samples" / "may-census-2017.csv"


async def _ingest(path, source="summer-census", ref=date(2017, 5, 18)):
    async with ingest_session(IngestSettings()) as s:
        return await s.file(path, source=source, reference_date=ref, actor="test")


async def test_extract_is_published_minimised_encrypted_and_counted(settings_env, infra):
    rep = await _ingest(MAY)
    assert rep.balanced and (rep.rows_in, rep.accepted, rep.rejected, rep.out_of_scope) == (52, 49, 2, 1)
    assert {r["row_number"] for r in rep.rejections} == {52, 53}
    assert set(rep.dropped_columns) == {"UPN", "Ethnicity", "SEN"}

    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    pupils = await read_topic(infra.kafka, topics.pupil_recorded)
    completed = await read_topic(infra.kafka, topics.extract_completed)
    rejected = await read_topic(infra.kafka, topics.row_rejected)
    assert len(pupils) == 49 and len(completed) == 1 and len(rejected) == 2
    done = ExtractCompleted.model_validate_json(completed[0].value)
    assert (done.rows_in, done.accepted, done.rejected, done.out_of_scope) == (52, 49, 2, 1)
    assert {RowRejected.model_validate_json(r.value).field for r in rejected} == {"date_of_birth", "postcode"}

    # No personal value and no dropped column's value travels or rests in clear text.
    secrets = personal_values(MAY)
    assert len(secrets) > 100  # the scan below is only as good as this list
    upns = {line.split(",")[0] for line in MAY.read_text(encoding="utf-8-sig").splitlines()[1:]}
    scan = PersonalDataScan(secrets | upns | {"WBRI"})  # WBRI: an ethnicity code, never forwarded
    records = pupils + completed + rejected
    assert not scan.in_events(r.value for r in records), "personal data in Kafka"
    assert not scan.in_text("\n".join((r.key or b"").decode(errors="replace") for r in records)), "in a key"
    assert not scan.in_text(await all_table_text(settings_env["SAIS_DATABASE_URL"])), "personal data in PostgreSQL"

    # ... but the personal fields are there, sealed under the extract's data key.
    events = [PupilRecorded.model_validate_json(r.value) for r in pupils]
    async with ingest_session(IngestSettings()) as s:
        keys = await s.keys.get_many({e.personal.key_id for e in events})
    opened = [keys[e.personal.key_id].open_model(e.personal, PupilPersonal, e.aad()) for e in events]
    assert {p.surname for p in opened} <= {v for v in secrets}
    assert all(e.originator == "Warwickshire County Council: Insight Service" for e in events)

    # A dip sample of accepted rows for the data officer's spot check (ISP §9.3), stored sealed (scan above).
    assert len(rep.dip_sample) == 10 and len({r["row_number"] for r in rep.dip_sample}) == 10
    assert all(r["surname"] in secrets or len(r["surname"]) < 4 for r in rep.dip_sample)
    assert {r["row_number"] for r in rep.dip_sample} <= {e.row_number for e in events}


async def test_same_file_twice_publishes_nothing_new(settings_env, infra):
    first = await _ingest(MAY)
    second = await _ingest(MAY)
    assert second.duplicate and second.extract_id == first.extract_id
    pupils = await read_topic(infra.kafka, Topics(settings_env["SAIS_TOPIC_PREFIX"]).pupil_recorded)
    assert len(pupils) == 49


async def test_corrected_file_is_a_replacement_dataset(settings_env, infra, tmp_path):
    first = await _ingest(MAY)
    corrected = tmp_path / "may-corrected.csv"
    lines = MAY.read_text(encoding="utf-8-sig").splitlines()
    corrected.write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")  # the two bad rows removed
    second = await _ingest(corrected)
    assert second.supersedes == first.extract_id and second.rejected == 0
    completed = await read_topic(infra.kafka, Topics(settings_env["SAIS_TOPIC_PREFIX"]).extract_completed)
    events = [json.loads(r.value) for r in completed]
    assert [e["supersedes"] for e in events].count(str(first.extract_id)) == 1


async def test_file_missing_a_required_column_is_refused_before_publishing(settings_env, infra, tmp_path):
    from sais_ingest.domain.model import ExtractFileError

    bad = tmp_path / "bad.csv"
    bad.write_text("Surname,Forename\nSmith,Jo\n")
    with pytest.raises(ExtractFileError, match="school_dfe"):
        await _ingest(bad)
    assert await read_topic(infra.kafka, Topics(settings_env["SAIS_TOPIC_PREFIX"]).pupil_recorded) == []


def test_sample_files_are_committed():
    assert shutil.which("openssl")
    for name in (
        "may-census-2017.csv",
        "admissions-reception-2017.csv",
        "admissions-year3-transfer-2017.csv",
        "october-census-2017.csv",
    ):
        assert (REPO / "data" / "samples" / name).stat().st_size > 0


async def test_the_same_child_twice_in_one_extract_is_one_child_and_a_near_repeat_is_reported(settings_env, tmp_path):
    lines = MAY.read_text(encoding="utf-8-sig").splitlines()
    moved = lines[1].replace("CV34 4FL", "CV34 4FM")  # same name and date of birth, another postcode
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([lines[0], lines[1], lines[2], lines[1].replace("A937", "B937", 1), moved]) + "\n")
    rep = await _ingest(dup)  # row 4 differs from row 2 only in the UPN, which ISP §6.1 does not allow
    assert (rep.rows_in, rep.accepted, rep.repeated) == (4, 3, 1) and rep.balanced
    assert [(w["row_number"], w["code"]) for w in rep.warning_rows if w["field"] == "row"] == [
        (4, "row.repeated"),
        (5, "row.same-child"),
    ]
    dsn = settings_env["SAIS_DATABASE_URL"]
    conn = await asyncpg.connect(dsn)
    try:  # the repeat is not indexed (so not published); the near repeat is, for review
        assert await conn.fetchval("SELECT count(*) FROM ingest.row_index") == 3
    finally:
        await conn.close()


async def test_a_refused_extract_is_json_too_with_json(settings_env, tmp_path):
    from tests.integration.test_protocol_versions import sais

    bad = tmp_path / "no-header.csv"
    bad.write_text("Smith,Ann,12/03/2012\r\n", encoding="utf-8")
    r = sais(settings_env, "ingest", "file", str(bad), "--source", "summer-census", "--reference-date", "2017-05-18",
             "--json")  # fmt: skip
    assert r.returncode == 2
    doc = json.loads(r.stdout)  # the one documented shape of a failure
    assert set(doc) == {"error", "exit_code", "message"} and doc["exit_code"] == 2
    assert "required column(s) missing" in doc["message"]
    assert "Smith" not in r.stdout + r.stderr  # the refusal never echoes a child's details


async def test_an_extract_completes_only_together_with_its_audit_entry(settings_env):
    """Finding 5: an extract completed and then its audit entry failed (the id it wanted was taken), leaving
    a completion nobody audited. Now both are one transaction: if the entry cannot be written, the extract
    has not completed either; the same for an ending."""
    import uuid

    from sais_ingest.adapters.repository import ExtractRepository
    from sais_shared.db import create_pool
    from sais_shared.keystore import AuditEntry
    from sais_shared.settings import CommonSettings

    pool = await create_pool(CommonSettings().database_login("ingest"))
    try:
        repo = ExtractRepository(pool)
        extract_id = uuid.uuid4()
        await repo.start(
            extract_id=extract_id, sha256="0" * 64, source="summer-census", reference_date=date(2017, 5, 18),
            target_academic_year="2017/18", file_name="may.csv", encoding="utf-8", supersedes=None,
            key_id=uuid.uuid4(), originator="LA", protocol_version="0.2", ingested_by="t",
        )  # fmt: skip
        counts = dict(rows_in=1, accepted=1, rejected=0, out_of_scope=0, warnings=0, dropped_columns=[])
        unwritable = AuditEntry(None, "extract.ingested", f"extract:{extract_id}", {})  # actor is NOT NULL
        with pytest.raises(asyncpg.NotNullViolationError):
            await repo.complete(extract_id, **counts, audit_entry=unwritable)
        assert (await repo.get(extract_id)).status == "started"  # rolled back with its entry
        with pytest.raises(asyncpg.NotNullViolationError):
            await repo.end(extract_id, "failed", "x", "y", "t", published=0, audit_entry=unwritable)
        assert (await repo.get(extract_id)).status == "started"
        ingested = AuditEntry("t", "extract.ingested", f"extract:{extract_id}", {"accepted": 1}, "0.2")
        await repo.complete(extract_id, **counts, audit_entry=ingested)
        assert (await repo.get(extract_id)).status == "completed"
    finally:
        await pool.close()
    admin = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        assert await admin.fetchval(
            "SELECT count(*) FROM shared.audit_log WHERE action='extract.ingested' AND subject=$1", f"extract:{extract_id}"
        ) == 1  # fmt: skip
    finally:
        await admin.close()
