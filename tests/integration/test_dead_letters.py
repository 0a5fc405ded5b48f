"""Poison messages go to the dead-letter topic with a reason and no copy of their content; the rest of
the batch is processed."""

import json
import os
import subprocess

import pytest
from aiokafka import AIOKafkaProducer
from faststream import TestApp
from sais_eligibility.app import build_app
from sais_eligibility.config import EligibilitySettings
from sais_shared.events import DeadLetter
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import read_topic
from tests.integration.test_pipeline_services import fetchval, ingest
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.integration


async def _ingested_may_census(settings_env, infra):
    """Topics, database and the genuine pupil events of the May census sample, to forge from."""
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    await ingest("may-census-2017.csv", "summer-census", "2017-05-18")
    return topics, settings_env["SAIS_DATABASE_URL"], await read_topic(infra.kafka, topics.pupil_recorded)


async def test_poison_messages_are_dead_lettered_without_their_content(settings_env, infra):
    topics, dsn, good = await _ingested_may_census(settings_env, infra)
    forged = json.loads(good[0].value)
    forged["surname_in_clear"] = "Siobhán Ó Súilleabháin"  # a producer bug that leaks a name
    p = AIOKafkaProducer(**infra.kafka)
    await p.start()
    try:
        await p.send_and_wait(topics.pupil_recorded, b"\xff\x00 not json at all", key=good[0].key)
        await p.send_and_wait(topics.pupil_recorded, json.dumps(forged).encode(), key=good[0].key)
    finally:
        await p.stop()
    async with TestApp(build_app(EligibilitySettings())):
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 49 FROM eligibility.records"), what="valid rows")
        dead = await wait_until(lambda: _dead(infra, topics), what="dead letters")
    assert {d.original_topic for d in dead} == {topics.pupil_recorded}
    reasons = " ".join(d.reason for d in dead)
    assert "surname_in_clear" in reasons and "extra_forbidden" in reasons  # the field and the error type only
    letters = [r.value for r in await read_topic(infra.kafka, topics.dead_letter)]
    assert not PersonalDataScan({"Siobhán", "Ó Súilleabháin", "not json"}).in_events(letters)


async def _dead(infra, topics):
    recs = await read_topic(infra.kafka, topics.dead_letter)
    return [DeadLetter.model_validate_json(r.value) for r in recs] if len(recs) >= 2 else None


async def test_data_the_database_refuses_is_dead_lettered_by_position_not_retried_forever(settings_env, infra):
    topics, dsn, good = await _ingested_may_census(settings_env, infra)
    forged = json.loads(good[0].value)
    forged["event_id"] = "00000000-0000-4000-8000-000000000001"
    forged["school_name"] = "Bad\u0000School"  # valid JSON and a valid str; PostgreSQL text cannot hold NUL
    moved = {
        **json.loads(good[1].value),
        "event_id": "00000000-0000-4000-8000-000000000002",
        "record_id": "00000000-0000-4000-8000-000000000003",
    }  # its sealed fields are another record's
    p = AIOKafkaProducer(**infra.kafka)
    await p.start()
    try:
        sent = [
            await p.send_and_wait(topics.pupil_recorded, json.dumps(m).encode(), key=good[0].key)
            for m in (forged, moved)
        ]
    finally:
        await p.stop()
    async with TestApp(build_app(EligibilitySettings())):
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 49 FROM eligibility.records"), what="valid rows")

        dead = sorted(
            await wait_until(lambda: _dead(infra, topics), what="the refused records dead-lettered"),
            key=lambda d: d.offset,
        )
    assert [(d.partition, d.offset) for d in dead] == [(s.partition, s.offset) for s in sent]
    assert "refused as data" in dead[0].reason and "Bad" not in dead[0].reason
    assert "SealedValueError" in dead[1].reason


async def test_an_integer_no_database_can_hold_is_refused_when_parsed():
    from pydantic import ValidationError
    from sais_shared.inbound import inbound_adapter

    for field in ("seq", "record_count"):
        msg = (
            {"type": "record", "extract_ref": "x", "seq": 1, "nonce": "", "ciphertext": ""}
            if field == "seq"
            else {"type": "extract-completed", "extract_ref": "x", "record_count": 1, "checksum": "0" * 64}
        )
        msg[field] = 2**40
        with pytest.raises(ValidationError):
            inbound_adapter.validate_python(msg)


async def test_a_record_its_handler_keeps_failing_on_is_set_aside_after_bounded_retries(
    settings_env, infra, monkeypatch
):
    from sais_eligibility.service_layer.handlers import EligibilityService
    from sais_shared import kafka as kafka_module

    from tests.helpers import REPO

    topics, dsn, good = await _ingested_may_census(settings_env, infra)
    doomed = json.loads(good[7].value)["event_id"]
    attempts: list[int] = []
    original = EligibilityService.handle_pupils

    async def a_defect_met_by_one_record(self, events):
        if any(str(e.event_id) == doomed for e in events):
            attempts.append(len(events))
            raise KeyError("a defect")  # parses, yet its handler fails every time: not the servers' fault
        return await original(self, events)

    monkeypatch.setattr(EligibilityService, "handle_pupils", a_defect_met_by_one_record)
    monkeypatch.setattr(kafka_module, "TRANSIENT_RETRY_PAUSE_S", 0.05)
    async with TestApp(build_app(EligibilitySettings())):
        others = f"SELECT count(*) = {len(good) - 1} FROM eligibility.records"
        await wait_until(lambda: fetchval(dsn, others), what="every other record")
        dead = await wait_until(lambda: _dead_one(infra, topics), what="the failing record set aside")
    n = kafka_module.HANDLER_ATTEMPTS
    whole = attempts[0]
    assert whole > 1 and attempts[: n + 1] == [whole] * n + [1], str(attempts)  # n tries, then on its own
    # a batch redelivered after that (its commit lost in a rebalance) fails once, then goes one at a time
    assert all(attempts[i + 1] == 1 for i in range(n + 1, len(attempts) - 1) if attempts[i] == whole), str(attempts)
    assert len({(d.event_id, d.original_topic, d.partition, d.offset) for d in dead}) == 1  # one message, one id
    letter = dead[0]
    offset = next(r.offset for r in good if json.loads(r.value)["event_id"] == doomed)
    assert (letter.original_topic, letter.offset) == (topics.pupil_recorded, offset)
    assert "KeyError" in letter.reason and "5 times" in letter.reason

    def sais(*args):
        return subprocess.run(
            [str(REPO / ".venv" / "bin" / "sais"), "dead-letters", *args],
            env={**os.environ, **settings_env},
            capture_output=True,
            text=True,
        )

    listed = sais("list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(d["original_topic"], d["offset"]) for d in json.loads(listed.stdout)] == [(topics.pupil_recorded, offset)]
    shown = sais("show", str(letter.event_id))
    assert shown.returncode == 0 and f"offset {offset}" in shown.stdout and "KeyError" in shown.stdout


async def _dead_one(infra, topics):
    recs = await read_topic(infra.kafka, topics.dead_letter)
    return [DeadLetter.model_validate_json(r.value) for r in recs] if recs else None
