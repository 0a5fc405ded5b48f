"""eligibility, delivery and retention as FastStream apps on the real broker and database,
fed by a real ingest: consume → effect → publish; redelivery harmless; replacement withdraws."""

import csv
import email
import json
from datetime import date

import asyncpg
import pytest
from faststream import TestApp
from sais_delivery.app import delivery_session
from sais_delivery.config import DeliverySettings
from sais_delivery.domain import mavis_rules as rules
from sais_eligibility.app import build_app as build_eligibility
from sais_eligibility.config import EligibilitySettings
from sais_ingest.app import ingest_session
from sais_ingest.config import IngestSettings
from sais_retention.app import build_app as build_retention
from sais_retention.config import RetentionSettings
from sais_shared.lag import group_lag
from sais_shared.schools import load_register, parse_register
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import REPO, cohort_member_events, openssl_open, read_topic

pytestmark = pytest.mark.integration
SAMPLES = REPO / "data" / "samples"


async def ingest(name, source, ref):
    async with ingest_session(IngestSettings()) as s:
        return await s.file(
            SAMPLES / name if isinstance(name, str) else name,
            source=source,
            reference_date=date.fromisoformat(ref),
            actor="test",
        )


async def _fetch(dsn, method, sql, *args):
    conn = await asyncpg.connect(dsn)
    try:
        return await getattr(conn, method)(sql, *args)
    finally:
        await conn.close()


async def fetchval(dsn, sql, *args):
    return await _fetch(dsn, "fetchval", sql, *args)


async def fetchrow(dsn, sql, *args):
    return await _fetch(dsn, "fetchrow", sql, *args)


def oracle_flu(paths_sources) -> int:
    """Independent count of 2017/18 flu children: in-scope rows of May census (R-3 → R..4 after roll-forward),
    reception offers and Y3 transfers; a Y3 transfer child seen in the May census is one child."""
    seen = set()
    for path, source in paths_sources:
        text = path.read_text(encoding="utf-8-sig") if source != "admissions-reception" else path.read_text("cp1252")
        for row in csv.DictReader(text.splitlines()):
            r = {k.lower(): v for k, v in row.items()}
            dob = r.get("dob") or r.get("date of birth")
            fore = r.get("legal forename") or r.get("forename")
            sur = r.get("legal surname") or r.get("surname")
            yg = (
                (r.get("ncyearactual") or r.get("year group") or "")
                .lower()
                .replace("year", "")
                .replace("y", "")
                .strip()
            )
            if source == "summer-census" and yg not in {"r", "reception", "1", "2", "3"}:
                continue
            if "/" in dob and len(dob.split("/")[2]) != 4:
                continue  # the rejected two-digit-year row
            pc = (r.get("postcode") or r.get("post code") or "").replace(" ", "").upper()
            if pc.endswith("ZZZ"):
                continue  # the rejected postcode row
            d = dob if "-" in dob else "-".join(reversed(dob.split("/")))
            seen.add((fore.lower(), sur.lower(), date.fromisoformat(d)))
    return len(seen)


async def test_eligibility_delivery_retention_through_real_kafka_postgres_and_smtp(settings_env, infra, monkeypatch):
    dsn = settings_env["SAIS_DATABASE_URL"]
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    elig_app = build_eligibility(EligibilitySettings())
    ret_app = build_retention(RetentionSettings())
    async with TestApp(elig_app), TestApp(ret_app):
        for args in (
            ("may-census-2017.csv", "summer-census", "2017-05-18"),
            ("admissions-reception-2017.csv", "admissions-reception", "2017-04-18"),
            ("admissions-year3-transfer-2017.csv", "admissions-year3-transfer", "2017-04-18"),
        ):
            await ingest(*args)
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 3 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            what="extracts reconciled",
        )
        expected = oracle_flu(
            [
                (SAMPLES / "may-census-2017.csv", "summer-census"),
                (SAMPLES / "admissions-reception-2017.csv", "admissions-reception"),
                (SAMPLES / "admissions-year3-transfer-2017.csv", "admissions-year3-transfer"),
            ]
        )
        assert (
            await fetchval(dsn, "SELECT count(*) FROM eligibility.cohort WHERE programme='flu' AND status='active'")
            == expected
        )
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 0 FROM eligibility.outbox"), what="outbox drained")
        cohort = await _cohort_events(infra, topics)
        assert {e.programme for e in cohort} == {"flu"} and len({e.pupil_id for e in cohort}) == expected
        # Each transfer child was added from the May census, then updated to the junior school: ordered per child.
        updates = [e for e in cohort if e.change == "updated"]
        assert len(updates) == 6 and all(u.source == "admissions-year3-transfer" and u.revision == 2 for u in updates)
        n_events = len(cohort)
        # The May census Year 2 infant is a Year 3 junior at the transfer school in 2017/18 (one child).
        juniors = await fetchval(
            dsn,
            "SELECT count(*) FROM eligibility.cohort c JOIN eligibility.records r "
            "ON r.record_id=c.record_id WHERE r.source='admissions-year3-transfer'",
        )
        assert juniors == 6

        # Redelivery is harmless: the same pupil events again change nothing and emit nothing.
        pupils = await read_topic(infra.kafka, topics.pupil_recorded)
        await _republish(infra, topics.pupil_recorded, pupils)
        group = EligibilitySettings().group_id_of("eligibility")
        await wait_until(  # its offsets are committed past every copy once each copy's batch has committed
            lambda: _caught_up(infra.kafka, group, topics.pupil_recorded),
            what="eligibility caught up with the redelivery",
        )
        assert len(await cohort_member_events(infra.kafka, topics.cohort)) == n_events
        assert await fetchval(dsn, "SELECT count(*) FROM eligibility.records") == 79

        # Delivery consumes the cohort (its app runs in-process too) and sends the July window.
        from sais_delivery.app import build_app as build_delivery

        monkeypatch.setenv("SAIS_AS_OF", "2017-07-10")
        async with TestApp(build_delivery(DeliverySettings())):
            await wait_until(
                lambda: fetchval(dsn, "SELECT count(*) = $1 FROM delivery.members WHERE status='active'", expected),
                what="delivery holds the cohort",
            )
            await wait_until(  # eligibility's check of 2017/18's rules against the protocol, at its start
                lambda: fetchval(dsn, "SELECT gaps = '[]' FROM delivery.coverage WHERE academic_year='2017/18'"),
                what="delivery holds the coverage check",
            )
            # the schools register, from the sample GIAS export less one school: that school's children
            # cannot have a URN, so they are left out of the Mavis file and reported, never written invalid
            register = REPO / "data" / "reference" / "gias-establishments-sample.csv"
            lines = register.read_text().splitlines(keepends=True)
            conn = await asyncpg.connect(dsn)
            try:
                await load_register(conn, "".join(x for x in lines if ",2006,Woodloes" not in x).encode(), "gias.csv",
                                    "test", ["937"], "0.2")  # fmt: skip
            finally:
                await conn.close()
            async with delivery_session(DeliverySettings()) as svc:
                res = await svc.deliver("july", "2017/18", actor="test")
                again = await svc.deliver("july", "2017/18", actor="test")
        assert res.counts == {"flu": expected} and again.already_sent and again.batch_id == res.batch_id

        # The SAIS mailbox got one message, which stock openssl decrypts and verifies.
        received = [p for p in infra.maildir.glob("*.eml") if res.message_id.encode() in p.read_bytes()]
        assert len(received) == 1
        head = received[0].read_bytes().split(b"\r\n\r\n", 1)[0].decode()
        assert "X-Local-Smtpd-Tls: TLSv1.3" in head or "X-Local-Smtpd-Tls: TLSv1.2" in head
        assert "application/pkcs7-mime" in head or "application/x-pkcs7-mime" in head
        inner = email.message_from_bytes(openssl_open(received[0], infra.pki))
        files = {p.get_filename(): p.get_payload(decode=True) for p in inner.walk() if p.get_filename()}
        assert set(files) == {
            "flu-2017-18.csv",
            "mavis-cohort-flu-2017-18.csv",
            "field-definitions.csv",
            "manifest.json",
        }
        rows = list(csv.DictReader(files["flu-2017-18.csv"].decode("utf-8-sig").splitlines()))
        assert len(rows) == expected
        woodloes = sum(r["School DfE number"] == "9372006" for r in rows)
        not_known = sum(r["School name"] == "School not yet known" for r in rows)
        assert woodloes  # (every infant Year 2 of the sample has a Year 3 place: not_known is 0 here)

        # The Mavis file passes Mavis's rules, with the register's URNs; Woodloes is reported, not written.
        # (check_mavis_files in openssl_open read it as Mavis would on the manifest's first upload day)
        manifest = json.loads(files["manifest.json"])
        year = rules.import_academic_year(date.fromisoformat(manifest["mavis_cohort_import"]["upload_from"]))
        team = rules.Team(known_urns=frozenset(s.urn for s in parse_register(register.read_bytes())))
        check = rules.check_file(files["mavis-cohort-flu-2017-18.csv"], academic_year=year, team=team)
        assert check.ok and check.rows == expected - woodloes, check.problems
        assert manifest["mavis_cohort_import"]["upload_from"] == "2017-08-01"  # sent in July, for 2017/18
        mavis_rows = list(csv.DictReader(files["mavis-cohort-flu-2017-18.csv"].decode().splitlines()))
        assert sum(r["CHILD_SCHOOL_URN"] == "888888" for r in mavis_rows) == not_known
        manifest = json.loads(files["manifest.json"])
        assert manifest["counts"] == {"flu": expected} and manifest["delete_by"] == "2017-10-10"
        assert manifest["cohort_complete"] is True and manifest["cohort_gaps"] == []
        assert manifest["mavis_cohort_import"]["left_out"] == [
            {"programme": "flu", "school_dfe": "9372006", "reason": "school not in the schools register (no URN)",
             "rows": woodloes}
        ]  # fmt: skip
        warning, upload = res.warnings
        assert "the Mavis files are for 2017/18: upload them on or after 2017-08-01" in upload
        assert f"{woodloes} flu row(s) of school 9372006 left out of the Mavis file" in warning

        # Retention scheduled the transfer at transfer date + 3 months, once.
        await wait_until(
            lambda: fetchval(dsn, "SELECT due_on FROM retention.schedule WHERE subject=$1", f"batch:{res.batch_id}"),
            what="deletion scheduled",
        )
        assert await fetchval(
            dsn, "SELECT due_on FROM retention.schedule WHERE subject=$1", f"batch:{res.batch_id}"
        ) == date(2017, 10, 10)


async def _cohort_events(infra, topics):
    return await cohort_member_events(infra.kafka, topics.cohort)


async def _republish(infra, topic, recs):
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(**infra.kafka, enable_idempotence=True)
    await p.start()
    try:
        for r in recs:
            await p.send(topic, r.value, key=r.key)
        await p.flush()
    finally:
        await p.stop()


async def _caught_up(kafka: dict, group: str, topic: str) -> bool:
    return not any((await group_lag(kafka, group, [topic])).values())
