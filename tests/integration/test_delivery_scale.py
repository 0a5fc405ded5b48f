"""A county-sized window (150,000 children) through delivery against an SMTP server with NHSmail's
35 MB limit: it goes as several self-contained parts, each opened and verified with stock openssl,
and together they hold exactly the cohort, each child once."""

import csv
import email
import hashlib
import json
import uuid
from datetime import UTC, date, datetime

import asyncpg
import pytest
from sais_delivery.app import MIGRATIONS, delivery_session
from sais_delivery.config import DeliverySettings
from sais_delivery.domain.parts import NHSMAIL_LIMIT_BYTES
from sais_shared.events import DeliveryCompleted, PupilPersonal, cohort_aad
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings
from sais_shared.topics import Topics

from tests.helpers import openssl_open, read_topic
from tests.integration.test_delivery import _cli

pytestmark = pytest.mark.integration
CHILDREN = 150_000
SCHOOLS = 240  # about 625 children each, as in a large county


async def seed_county(n: int) -> set[str]:
    """n flu children across SCHOOLS schools, written with COPY as delivery's consumer would hold them.
    Each surname is unique, so the delivered files can be checked child by child."""
    rt = await open_runtime(CommonSettings(), *MIGRATIONS)
    try:
        extract_id = uuid.uuid4()
        key = await rt.keys.key_for_extract(extract_id)
        at = datetime(2017, 6, 1, 9, tzinfo=UTC)
        records, surnames = [], set()
        for i in range(n):
            pid = uuid.uuid4()
            surname = f"Surname{i:06d}"
            surnames.add(surname)
            p = PupilPersonal(
                surname=surname,
                forename="Alex",
                date_of_birth=date(2010, 1 + i % 12, 1 + i % 28),
                address_lines=[f"{1 + i % 200} Long Lane", "Nuneaton"],
                postcode="CV11 4AA",
            )
            school = i % SCHOOLS
            records.append(
                (
                    "2017/18",
                    "flu",
                    None,
                    pid,
                    "active",
                    1,
                    f"937{2000 + school}",
                    f"School number {school}",
                    str(1 + i % 6),
                    "F" if i % 2 else "M",
                    "summer-census",
                    at.date(),
                    at,
                    [extract_id],
                    key.key_id,
                    key.seal_model(
                        p,
                        cohort_aad(
                            "2017/18",
                            pid,
                            programme="flu",
                            dose=None,
                            revision=1,
                            school_dfe=f"937{2000 + school}",
                            school_name=f"School number {school}",
                            year_group=str(1 + i % 6),
                            gender="F" if i % 2 else "M",
                            source="summer-census",
                            reference_date=at.date(),
                            received_at=at,
                            extract_ids=[extract_id],
                        ),
                    ).model_dump_json(),
                    "summer-census",  # the window the child came in through (as delivery's consumer records it)
                )
            )
        async with rt.pool.acquire() as conn:
            await conn.copy_records_to_table(
                "members",
                schema_name="delivery",
                records=records,
                columns=[
                    "academic_year",
                    "programme",
                    "dose",
                    "pupil_id",
                    "status",
                    "revision",
                    "school_dfe",
                    "school_name",
                    "year_group",
                    "gender",
                    "source",
                    "reference_date",
                    "received_at",
                    "extract_ids",
                    "key_id",
                    "personal",
                    "window_source",
                ],
            )
        return surnames
    finally:
        await rt.close()


async def test_a_county_window_goes_as_parts_under_nhsmails_limit_and_adds_up_to_the_cohort(
    settings_env, infra, monkeypatch
):
    monkeypatch.setenv("SAIS_AS_OF", "2017-07-10")
    expected = await seed_county(CHILDREN)
    async with delivery_session(DeliverySettings()) as svc:
        res = await svc.deliver("july", "2017/18", actor="test")
    assert res.status == "sent" and res.counts == {"flu": CHILDREN}
    assert len(res.parts) >= 2, "150,000 children cannot fit one NHSmail message"

    seen: list[str] = []
    schools_by_part: list[set[str]] = []
    for i, part in enumerate(res.parts, 1):
        [path] = [p for p in infra.maildir.glob("*.eml") if part["message_id"].encode() in p.read_bytes()[:4096]]
        wire = path.read_bytes().split(b"\r\n", 3)[3]  # less the three X-Local-Smtpd-* lines the server adds
        assert len(wire) <= DeliverySettings().delivery_max_message_bytes < NHSMAIL_LIMIT_BYTES
        assert len(wire) == part["size_bytes"]
        inner = email.message_from_bytes(openssl_open(path, infra.pki))  # decrypts and verifies, stock openssl
        files = {p.get_filename(): p.get_payload(decode=True) for p in inner.walk() if p.get_filename()}
        manifest = json.loads(files["manifest.json"])
        assert manifest["part"]["number"] == i and manifest["part"]["of"] == len(res.parts)
        assert manifest["batch_id"] == str(res.batch_id) and manifest["part"]["batch_counts"] == {"flu": CHILDREN}
        for f in manifest["files"]:
            assert hashlib.sha256(files[f["name"]]).hexdigest() == f["sha256"]
        assert "field-definitions.csv" in files
        name = f"flu-2017-18-part-{i}-of-{len(res.parts)}.csv"
        rows = list(csv.DictReader(files[name].decode("utf-8-sig").splitlines()))
        assert len(rows) == manifest["counts"]["flu"] == part["counts"]["flu"]
        seen += [r["Surname"] for r in rows]
        schools_by_part.append({r["School DfE number"] for r in rows})

    assert len(seen) == len(set(seen)) == CHILDREN and set(seen) == expected  # each child once, none missing
    for a in range(len(schools_by_part)):  # no school is split across parts
        for b in range(a + 1, len(schools_by_part)):
            assert not schools_by_part[a] & schools_by_part[b]

    # One delivery-completed event for the whole batch, listing every part; the batch is sent once.
    events = await read_topic(infra.kafka, Topics(settings_env["SAIS_TOPIC_PREFIX"]).delivery_completed)
    [done] = [DeliveryCompleted.model_validate_json(e.value) for e in events]
    assert [p.message_id for p in done.parts] == [p["message_id"] for p in res.parts]
    assert sum(p.programmes["flu"] for p in done.parts) == CHILDREN
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM delivery.batches WHERE message IS NOT NULL") == 0
    finally:
        await conn.close()


async def _parts(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(
            "SELECT part_no, status, message_id, attempts FROM delivery.batch_parts ORDER BY part_no"
        )
    finally:
        await conn.close()


async def test_a_crash_mid_batch_resends_only_the_parts_not_yet_accepted(settings_env, infra):
    env = {**settings_env, "SAIS_DELIVERY_MAX_MESSAGE_BYTES": "1000000"}
    await seed_county(6000)
    args = ("send", "--window", "july", "--academic-year", "2017/18")
    assert _cli(env, *args, crash="after-send").returncode == 70  # part 1 went; the process died before noting it
    parts = await _parts(env["SAIS_DATABASE_URL"])
    assert len(parts) >= 3 and [p["status"] for p in parts] == ["sending"] + ["prepared"] * (len(parts) - 1)

    def copies(p):
        return len([m for m in infra.maildir.glob("*.eml") if p["message_id"].encode() in m.read_bytes()[:4096]])

    assert copies(parts[0]) == 1
    blocked = _cli(env, *args)
    assert blocked.returncode == 4 and "part 1" in blocked.stderr and parts[0]["message_id"] in blocked.stderr
    conn = await asyncpg.connect(env["SAIS_DATABASE_URL"])
    batch_id = await conn.fetchval("SELECT batch_id FROM delivery.batches")
    await conn.close()
    resolved = _cli(env, "resolve", str(batch_id), "--part", "1", "--sent")
    assert resolved.returncode == 0, resolved.stderr
    done = _cli(env, *args, "--json")
    assert done.returncode == 0, done.stderr
    assert all(copies(p) == 1 for p in parts)  # every part exactly once, part 1 not again
    assert [p["status"] for p in await _parts(env["SAIS_DATABASE_URL"])] == ["sent"] * len(parts)
    assert sum(p["counts"]["flu"] for p in json.loads(done.stdout)["parts"]) == 6000


async def test_a_permanent_refusal_fails_at_once_naming_the_size_and_the_limit(settings_env, infra, tmp_path):
    from tests.helpers import private_smtpd

    with private_smtpd(infra, tmp_path / "mail", "--max-size", "1000000") as port:
        env = {
            **settings_env,
            "SAIS_DELIVERY_SMTP_PORT": str(port),
            "SAIS_DELIVERY_MAX_MESSAGE_BYTES": "3000000",
            "SAIS_DELIVERY_SMTP_ATTEMPTS": "4",
        }
        await seed_county(5000)
        r = _cli(env, "send", "--window", "july", "--academic-year", "2017/18")
    assert r.returncode == 7, r.stderr  # permanent, not "transient" (5): a retry cannot succeed
    message = " ".join(r.stderr.split())
    assert "1000000" in message and "3000000" in message and "bytes" in message
    [part] = await _parts(env["SAIS_DATABASE_URL"])
    assert part["status"] == "failed" and part["attempts"] == 1  # tried once, never again
    assert not list((tmp_path / "mail").glob("*.eml"))
