"""Extracts published by upstream systems on the inbound topic, through real Kafka and PostgreSQL."""

import csv
import json
from datetime import UTC, date, datetime
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer
from faststream import TestApp
from sais_ingest.app import build_app
from sais_ingest.config import IngestSettings
from sais_retention.app import build_app as build_retention
from sais_retention.config import RetentionSettings
from sais_shared.devpki import DEV_PUBLISHER
from sais_shared.inbound import InboundExtractWriter
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import REPO, personal_values, read_topic
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.integration
MAY = REPO / "data" / "samples" / "may-census-2017.csv"


def may_rows() -> list[dict[str, str]]:
    return list(csv.DictReader(MAY.read_text(encoding="utf-8-sig").splitlines()))


async def publish(infra, topic, messages):
    p = AIOKafkaProducer(**infra.kafka, enable_idempotence=True)
    await p.start()
    try:
        for m in messages:
            await p.send(topic, m.model_dump_json().encode(), key=m.extract_ref.encode())
        await p.flush()
    finally:
        await p.stop()


def writer(infra, ref, public_pem: bytes | None = None, key_id: str = "inbound-1", on: date = date(2017, 5, 18)):
    """An upstream system's writer for one extract, sealed to ingest's inbound key (the dev one by default)."""
    return InboundExtractWriter(
        public_pem or (infra.pki / "inbound.pub.pem").read_bytes(),
        key_id,
        ref,
        "summer-census",
        on,
        "SIMS (test)",
        publisher=DEV_PUBLISHER,
        signing_key_pem=(infra.pki / "publisher.key").read_bytes(),
    )


async def status(dsn, ref):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT status, problem FROM ingest.inbound_extracts WHERE extract_ref=$1", ref)
    finally:
        await conn.close()


async def test_a_complete_inbound_extract_is_ingested_like_a_file(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "sims-937-may-2017-001")
    msgs = [w.started, *[w.record(r) for r in may_rows()], w.completed()]
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        await wait_until(lambda: status(dsn, "sims-937-may-2017-001"), what="staged")
        row = await wait_until(lambda: _ingested(dsn, "sims-937-may-2017-001"), what="ingested")
        # The same rows again, re-encrypted under another reference: recognised, nothing new published.
        w2 = writer(infra, "sims-937-may-2017-001-resend")
        await publish(infra, topics.inbound, [w2.started, *[w2.record(r) for r in may_rows()], w2.completed()])
        await wait_until(lambda: _ingested(dsn, "sims-937-may-2017-001-resend"), what="resend handled")
    assert row["accepted"] == 49 and row["rejected"] == 2 and row["out_of_scope"] == 1
    pupils = await read_topic(infra.kafka, topics.pupil_recorded)
    assert len(pupils) == 49
    inbound = await read_topic(infra.kafka, topics.inbound)
    assert not PersonalDataScan(personal_values(MAY)).in_events(r.value for r in inbound)  # nothing readable there
    conn = await asyncpg.connect(dsn)
    assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0  # staging emptied
    assert await conn.fetchval("SELECT count(*) FROM ingest.extracts") == 1
    await conn.close()


async def test_a_re_sent_extract_stages_nothing_and_keeps_no_key(settings_env, infra):
    """A publisher re-sends an extract already ingested (or Kafka redelivers it): nothing is staged again,
    and the wrapped extract key is not kept once the extract is ingested, so nothing of it can outlive the
    extract's deletion; the transfer's deletion takes the inbound rows too."""
    from sais_shared.lag import group_lag

    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "sims-resent-1")
    msgs = [w.started, *[w.record(r) for r in may_rows()], w.completed()]
    group = settings_env["SAIS_INGEST_GROUP_ID"]

    async def settled():  # the ingest service has committed past every inbound message
        return not any((await group_lag(infra.kafka, group, [topics.inbound])).values())

    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        row = await wait_until(lambda: _ingested(dsn, "sims-resent-1"), what="ingested")
        await publish(infra, topics.inbound, msgs)  # the same extract again, every message
        await wait_until(settled, timeout=60, what="the re-send consumed")
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0
        started = json.loads(await conn.fetchval("SELECT started FROM ingest.inbound_extracts"))
        assert "encryption" not in started  # the wrapped extract key is gone once it is ingested
        from sais_ingest.adapters.deletion import delete_rows
        from sais_shared.events import DeletionRequested

        async with conn.transaction():
            counts = await delete_rows(conn, DeletionRequested(
                event_id=uuid4(), occurred_at=datetime.now(UTC), request_id=uuid4(), subject="batch:x",
                rule="isp-11.1-transfer-plus-retention", scope="transfer", extract_ids=[row["extract_id"]],
                owners=["ingest"],
            ))  # fmt: skip
        assert counts["ingest.inbound_extracts"] == 1
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_extracts") == 0
    finally:
        await conn.close()


async def _ingested(dsn, ref):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow(
            "SELECT e.* FROM ingest.inbound_extracts i JOIN ingest.extracts e "
            "USING (extract_id) WHERE i.extract_ref=$1 AND i.status='ingested'",
            ref,
        )
    finally:
        await conn.close()


async def test_a_partial_extract_is_never_treated_as_complete(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "adm-partial-1")
    records = [w.record(r) for r in may_rows()[:6]]
    done = w.completed()
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, *records[:3], *records[4:], done])  # seq 4 lost
        st = await wait_until(lambda: _status_is(dsn, "adm-partial-1", "incomplete"), what="incomplete")
        assert "received 5 of 6" in st["problem"] and "missing seq [4]" in st["problem"]
        assert await read_topic(infra.kafka, topics.pupil_recorded) == []
        await publish(infra, topics.inbound, [records[3], done])  # the publisher re-sends what was missing
        await wait_until(lambda: _ingested(dsn, "adm-partial-1"), what="completed after re-send")
    assert len(await read_topic(infra.kafka, topics.pupil_recorded)) == 6


async def test_a_checksum_mismatch_is_refused(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "bad-sum-1")
    records = [w.record(r) for r in may_rows()[:3]]
    forged = w.completed().model_copy(update={"checksum": "0" * 64})
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, *records, forged])
        st = await wait_until(lambda: _status_is(dsn, "bad-sum-1", "refused"), what="refused")
    assert "checksum" in st["problem"]
    assert await read_topic(infra.kafka, topics.pupil_recorded) == []


async def _status_is(dsn, ref, wanted):
    row = await status(dsn, ref)
    return row if row is not None and row["status"] == wanted else None


async def test_a_protocol_version_loaded_while_running_takes_effect_without_restart(settings_env, infra, monkeypatch):
    import os
    import subprocess

    from sais_shared.protocol import bundled_protocol_path

    monkeypatch.setenv("SAIS_PROTOCOL_REFRESH_S", "0.3")
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]

    def load(version):
        r = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "sais"),
                "protocol",
                "load",
                str(bundled_protocol_path().parent / f"warwickshire-cwpt-v{version}.yaml"),
            ],
            env={**os.environ, **settings_env},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr

    load("0.1")  # before the Admissions Service's data was added
    w = InboundExtractWriter(
        (infra.pki / "inbound.pub.pem").read_bytes(),
        "inbound-1",
        "adm-2017-reception",
        "admissions-reception",
        date(2017, 4, 18),
        "Admissions (test)",
        publisher=DEV_PUBLISHER,
        signing_key_pem=(infra.pki / "publisher.key").read_bytes(),
    )
    rows = list(
        csv.DictReader(
            (REPO / "data" / "samples" / "admissions-reception-2017.csv").read_text(encoding="cp1252").splitlines()
        )
    )
    msgs = [w.started, *[w.record(r) for r in rows], w.completed()]
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        st = await wait_until(lambda: _status_is(dsn, "adm-2017-reception", "refused"), what="refused under v0.1")
        assert "not covered" in st["problem"] and "v0.1" in st["problem"]
        load("0.2")

        async def resent_until_ingested():
            # The publisher re-sends the extract (a refused one keeps nothing: it is sent again whole)
            # until the running service, which re-reads the protocol in force every 0.3 s, takes it.
            if row := await _ingested(dsn, "adm-2017-reception"):
                return row
            await publish(infra, topics.inbound, msgs)
            return None

        row = await wait_until(resent_until_ingested, interval=0.5, what="ingested under v0.2")
    assert row["accepted"] == 24 and row["protocol_version"] == "0.2"


async def test_inbound_rows_missing_a_required_column_are_reported_not_retried(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "no-postcode-1")
    msgs = [w.started, w.record({"Surname": "Hall", "Forename": "Robin"}), w.completed()]
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        st = await wait_until(lambda: _status_is(dsn, "no-postcode-1", "refused"), what="refused")
    assert "required column(s) missing" in st["problem"]


async def test_a_tampered_record_is_reported_not_retried_forever(settings_env, infra):
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "tampered-1")
    records = [w.record(r) for r in may_rows()[:3]]
    done = w.completed()
    bad = records[1].model_copy(update={"ciphertext": records[0].ciphertext})  # swapped: AAD (seq) no longer fits
    import base64

    from cryptography.hazmat.primitives import serialization
    from sais_shared.inbound import checksum, signed_content

    digest = checksum([records[0].ciphertext, bad.ciphertext, records[2].ciphertext])
    key = serialization.load_pem_private_key((infra.pki / "publisher.key").read_bytes(), None)
    done = done.model_copy(
        update={  # a registered publisher's own bug: signed, but a record does not open
            "checksum": digest,
            "signature": base64.b64encode(key.sign(signed_content(w.started, 3, digest))).decode(),
        }
    )
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, records[0], bad, records[2], done])
        st = await wait_until(lambda: _status_is(dsn, "tampered-1", "refused"), what="refused")
    assert "record 2 cannot be opened" in st["problem"]
    assert await read_topic(infra.kafka, topics.pupil_recorded) == []


async def test_an_extract_that_never_completes_is_deleted_days_later(settings_env, infra):
    import json as _json
    import os
    import subprocess
    import uuid
    from datetime import timedelta

    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    w = writer(infra, "never-completed-1")
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [w.started, *[w.record(r) for r in may_rows()[:3]]])

        async def staged():
            conn = await asyncpg.connect(dsn)
            try:
                return await conn.fetchval("SELECT count(*) = 3 FROM ingest.inbound_records")
            finally:
                await conn.close()

        await wait_until(staged, what="records staged")

    def retention_run(on: date):
        r = subprocess.run(
            [str(REPO / ".venv" / "bin" / "sais"), "retention", "run", "--now", on.isoformat(), "--json"],
            env={**os.environ, **settings_env, "SAIS_AS_OF": on.isoformat()},
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0, r.stderr
        return _json.loads(r.stdout)

    async def completed(req) -> bool:
        conn = await asyncpg.connect(dsn)
        try:
            return await conn.fetchval(
                "SELECT completed_at IS NOT NULL FROM retention.requests WHERE request_id=$1",
                uuid.UUID(req["request_id"]),
            )
        finally:
            await conn.close()

    async def certificates():
        conn = await asyncpg.connect(dsn)
        try:
            return [
                (c["rule"], _json.loads(c["rows_deleted"]))
                for c in await conn.fetch("SELECT rule, rows_deleted FROM retention.certificates")
            ]
        finally:
            await conn.close()

    today = date.today()
    # ingest deletes on retention's request; retention certifies once ingest has confirmed.
    async with TestApp(build_app(IngestSettings())), TestApp(build_retention(RetentionSettings())):
        [early] = retention_run(today + timedelta(days=7))  # 7 days (SAIS_RETENTION_UNFINISHED_INBOUND_DAYS)
        await wait_until(lambda: completed(early), what="ingest answered the early request")
        assert await certificates() == []  # not yet: nothing was deleted, no certificate
        [req] = retention_run(today + timedelta(days=8))
        assert req["rule"] == "unfinished-inbound-after-days"
        await wait_until(lambda: completed(req), what="ingest deleted and confirmed")
    assert await certificates() == [
        ("unfinished-inbound-after-days", {"ingest.inbound_extracts": 1, "ingest.inbound_records": 3})
    ]
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_extracts") == 0
    finally:
        await conn.close()


def _other_signer(tmp_path, publisher_id="dev-upstream"):
    """A signing key nobody registered: what an insider with broker access but no publisher key has."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@pytest.mark.parametrize("forgery", ["unsigned", "wrong-key", "unknown-publisher", "source-not-allowed"])
async def test_an_extract_not_signed_by_a_registered_publisher_for_its_source_is_refused(
    settings_env, infra, tmp_path, monkeypatch, forgery
):
    import yaml

    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    ref = f"forged-{forgery}"
    if forgery == "source-not-allowed":  # a registry where the dev publisher may only send admissions
        reg = yaml.safe_load((infra.pki / "publishers.yaml").read_text())
        reg["publishers"][0]["sources"] = ["admissions-reception"]
        (tmp_path / "publishers.yaml").write_text(yaml.safe_dump(reg))
        monkeypatch.setenv("SAIS_INGEST_PUBLISHERS_FILE", str(tmp_path / "publishers.yaml"))
    key = _other_signer(tmp_path) if forgery == "wrong-key" else (infra.pki / "publisher.key").read_bytes()
    w = InboundExtractWriter(
        (infra.pki / "inbound.pub.pem").read_bytes(),
        "inbound-1",
        ref,
        "summer-census",
        date(2017, 5, 18),
        "SIMS (forged)",
        signing_key_pem=key,
        publisher="someone-else" if forgery == "unknown-publisher" else DEV_PUBLISHER,
    )
    # A one-row "replacement dataset" would withdraw every real child if it were believed.
    msgs = [w.started, w.record(may_rows()[0]), w.completed()]
    if forgery == "unsigned":
        msgs[0] = msgs[0].model_copy(update={"publisher": None})
        msgs[2] = msgs[2].model_copy(update={"signature": None})
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, msgs)
        # Refused on arrival (its start), audited once; the completion then finds no extract to complete.
        problem = await wait_until(lambda: _audited(dsn, "inbound.refused", ref), what="refused")
        await wait_until(lambda: _audited(dsn, "inbound.incomplete", ref), what="its completion handled")
    assert "extract-started not authenticated" in problem and "nothing was staged" in problem
    assert await read_topic(infra.kafka, topics.pupil_recorded) == []
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval(
            "SELECT count(*) FROM shared.audit_log WHERE action='inbound.refused' AND subject=$1", f"inbound:{ref}"
        ) == 1  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_extracts") == 0  # nothing kept of it
        assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0
        assert await conn.fetchval("SELECT count(*) FROM ingest.extracts") == 0
    finally:
        await conn.close()


async def _audited(dsn, action, ref):
    """The problem of the audit entry for this inbound extract and action, once there is one."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT details->>'problem' FROM shared.audit_log WHERE action=$1 AND subject=$2", action, f"inbound:{ref}"
        )
    finally:
        await conn.close()


async def test_an_unsigned_start_can_neither_squat_a_reference_nor_stage_a_flood(settings_env, infra, monkeypatch):
    """Finding 6: an unsigned extract-started for a reference was stored first and blocked the genuine signed
    extract, and 2,000 unsigned records under it staged 51 MB. Now a start must be signed by a registered
    publisher to be kept, records are staged only under a kept start, and each extract has a size limit."""
    from sais_shared.lag import group_lag

    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    genuine = writer(infra, "sims-squatted-1")
    squatter = genuine.started.model_copy(update={"publisher": None, "signature": None, "originator_system": "X"})
    junk = [genuine.record({"Surname": f"Junk{i}", "Forename": "Flood"}) for i in range(2000)]
    group = settings_env["SAIS_INGEST_GROUP_ID"]

    async def settled():
        return not any((await group_lag(infra.kafka, group, [topics.inbound])).values())

    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [squatter, *junk])
        await wait_until(settled, timeout=60, what="the flood consumed")
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_extracts") == 0
            assert await conn.fetchval("SELECT count(*) FROM ingest.inbound_records") == 0
        finally:
            await conn.close()
        # The genuine extract, signed, under the same reference: ingested.
        real = writer(infra, "sims-squatted-1")
        await publish(infra, topics.inbound, [real.started, *[real.record(r) for r in may_rows()], real.completed()])
        row = await wait_until(lambda: _ingested(dsn, "sims-squatted-1"), what="the genuine extract ingested")
    assert row["accepted"] == 49

    # A signed extract larger than the limit: records beyond it are not staged, and it completes as incomplete.
    monkeypatch.setenv("SAIS_INGEST_INBOUND_MAX_EXTRACT_BYTES", "2000")
    big = writer(infra, "sims-too-big-1")
    records = [big.record(r) for r in may_rows()]
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [big.started, *records, big.completed()])
        st = await wait_until(lambda: _status_is(dsn, "sims-too-big-1", "incomplete"), what="incomplete")
    conn = await asyncpg.connect(dsn)
    try:
        staged, size = await conn.fetchrow(
            "SELECT count(*), coalesce(sum(length(nonce) + length(ciphertext)), 0) FROM ingest.inbound_records "
            "WHERE extract_ref='sims-too-big-1'"
        )
    finally:
        await conn.close()
    assert 0 < staged < len(records) and size <= 2000
    assert f"received {staged} of {len(records)} records" in st["problem"]


async def test_during_an_inbound_key_rotation_extracts_sealed_to_either_key_are_ingested(
    settings_env, infra, tmp_path, monkeypatch
):
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    keys = tmp_path / "inbound-keys"
    keys.mkdir()
    (keys / "inbound-1.key").write_bytes((infra.pki / "inbound.key").read_bytes())  # the key in use until now
    (keys / "inbound-2.key").write_bytes(
        new.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    os.utime(keys / "inbound-1.key", (1, 1))  # older: the new key is tried first
    monkeypatch.setenv("SAIS_INGEST_INBOUND_PRIVATE_KEY", str(keys))
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    dsn = settings_env["SAIS_DATABASE_URL"]
    old = writer(infra, "sims-old-key")
    moved = writer(
        infra,
        "sims-new-key",
        new.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "inbound-2",
        on=date(2017, 5, 17),  # another extract, not a replacement of the first (which would withdraw 39 of 49)
    )
    rows = may_rows()
    async with TestApp(build_app(IngestSettings())):
        await publish(infra, topics.inbound, [old.started, *[old.record(r) for r in rows], old.completed()])
        await publish(infra, topics.inbound, [moved.started, *[moved.record(r) for r in rows[:10]], moved.completed()])
        a = await wait_until(lambda: _ingested(dsn, "sims-old-key"), what="the extract sealed to the old key")
        b = await wait_until(lambda: _ingested(dsn, "sims-new-key"), what="the extract sealed to the new key")
    assert a["accepted"] == 49 and b["rows_in"] == 10
