"""retention on the real database and broker: idempotent scheduling, undelivered extracts, party-leaves
purge, subject access requests across extracts and batches, and the audit trail."""

import asyncio
import json
import os
import subprocess
import uuid
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest
from faststream import TestApp
from sais_delivery.app import build_app as build_delivery
from sais_delivery.app import delivery_session
from sais_delivery.config import DeliverySettings
from sais_eligibility.app import build_app as build_eligibility
from sais_eligibility.config import EligibilitySettings
from sais_ingest.app import build_app as build_ingest
from sais_ingest.config import IngestSettings
from sais_retention.app import build_app as build_retention
from sais_retention.app import retention_session
from sais_retention.config import RetentionSettings
from sais_shared.errors import ConfigurationError
from sais_shared.events import DeliveryCompleted, ExtractCompleted, stable_id
from sais_shared.settings import CommonSettings

from tests.conftest import wait_until
from tests.helpers import REPO
from tests.integration.test_pipeline_services import fetchrow, fetchval, ingest

pytestmark = pytest.mark.integration
SAMPLES = REPO / "data" / "samples"


async def sais(env, *args, as_of=None):
    """The CLI, in a thread: services running in-process on this event loop go on while it runs."""
    e = {**os.environ, **env, **({"SAIS_AS_OF": as_of} if as_of else {})}
    cmd = [str(REPO / ".venv" / "bin" / "sais"), *args]
    return await asyncio.to_thread(subprocess.run, cmd, env=e, capture_output=True, text=True)


@asynccontextmanager
async def owners_and_retention():
    """The services that own rows (they delete on request and confirm) and retention (it certifies)."""
    async with (
        TestApp(build_ingest(IngestSettings())),
        TestApp(build_eligibility(EligibilitySettings())),
        TestApp(build_delivery(DeliverySettings())),
        TestApp(build_retention(RetentionSettings())),
    ):
        yield


async def certified(dsn, subject_like: str) -> asyncpg.Record:
    """Wait for the certificate of a deletion (written when every owner has confirmed)."""
    return await wait_until(
        lambda: fetchrow(dsn, "SELECT * FROM retention.certificates WHERE subject LIKE $1", subject_like),
        what=f"certificate for {subject_like}",
    )


def Retention():
    return retention_session(RetentionSettings())


def delivery_event(batch_id, transferred: datetime, event_id=None):
    return DeliveryCompleted(
        event_id=event_id or stable_id("delivery-completed", batch_id),
        occurred_at=transferred,
        batch_id=batch_id,
        window="december",
        academic_year="2017/18",
        programmes={"hpv": 1},
        recipient="x@nhs.net",
        message_id="<m>",
        transferred_at=transferred,
        delete_by=date(2018, 2, 28),
        files=[],
        extract_ids=[uuid.uuid4()],
        key_ids=[uuid.uuid4()],
        protocol_version="0.2",
    )


async def test_repeated_delivery_events_schedule_once_at_three_calendar_months(settings_env):
    batch = uuid.uuid4()
    ev = delivery_event(batch, datetime(2017, 11, 30, 10, tzinfo=UTC))
    async with Retention() as svc:
        await svc.handle_deliveries([ev])
        await svc.handle_deliveries([ev])
        await svc.handle_deliveries([delivery_event(batch, ev.transferred_at, event_id=uuid.uuid4())])
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    rows = await conn.fetch("SELECT subject, due_on FROM retention.schedule")
    await conn.close()
    assert [(r["subject"], r["due_on"]) for r in rows] == [(f"batch:{batch}", date(2018, 2, 28))]


async def test_an_extract_never_delivered_is_deleted_three_months_after_ingest(settings_env, monkeypatch):
    monkeypatch.setenv("SAIS_AS_OF", "2017-06-01")
    rep = await ingest("may-census-2017.csv", "summer-census", "2017-05-18")
    dsn = settings_env["SAIS_DATABASE_URL"]
    key_id = await fetchval(dsn, "SELECT key_id FROM ingest.extracts")
    async with owners_and_retention(), Retention() as svc:
        await svc.handle_extracts(
            [
                ExtractCompleted(
                    event_id=uuid.uuid4(),
                    occurred_at=datetime(2017, 6, 1, 9, tzinfo=UTC),
                    extract_id=rep.extract_id,
                    source="summer-census",
                    reference_date=date(2017, 5, 18),
                    target_academic_year="2017/18",
                    content_sha256=rep.sha256,
                    rows_in=52,
                    accepted=49,
                    rejected=2,
                    out_of_scope=1,
                    warnings=0,
                    key_id=key_id,
                    originator="x",
                    protocol_version="0.2",
                    ingested_by="t",
                )
            ]
        )
        assert [r.subject for r in await svc.run_due(date(2017, 8, 31))] == ["inbound-staging:2017-08-31"]
        [req] = [r for r in await svc.run_due(date(2017, 9, 1)) if r.subject.startswith("extract:")]
        assert req.key_ids == [key_id]
        cert = await certified(dsn, "extract:%")
    assert cert["rule"].startswith("undelivered") and cert["key_ids_destroyed"] == [key_id]
    assert json.loads(cert["rows_deleted"])["ingest.row_problems"] == 3  # 2 rejected, 1 out of scope
    assert await fetchval(dsn, "SELECT count(*) FROM ingest.row_problems") == 0
    assert await fetchval(dsn, "SELECT wrapped IS NULL FROM shared.data_keys WHERE key_id=$1", key_id)


async def _july_flow(settings_env, monkeypatch):
    """May census + Y3 transfers through eligibility and delivery (in-process apps), delivered in July."""
    dsn = settings_env["SAIS_DATABASE_URL"]
    monkeypatch.setenv("SAIS_AS_OF", "2017-07-10")
    async with (
        TestApp(build_eligibility(EligibilitySettings())),
        TestApp(build_delivery(DeliverySettings())),
        TestApp(build_retention(RetentionSettings())),
    ):
        await ingest("may-census-2017.csv", "summer-census", "2017-05-18")
        await ingest("admissions-year3-transfer-2017.csv", "admissions-year3-transfer", "2017-04-18")
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 2 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            what="reconciled",
        )
        await wait_until(
            lambda: fetchval(
                dsn,
                "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active')"
                " = (SELECT count(*) FROM delivery.members WHERE status='active')",
            ),
            what="delivery caught up",
        )
        async with delivery_session(DeliverySettings()) as svc:
            res = await svc.deliver("july", "2017/18", actor="test")
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) FROM retention.schedule WHERE subject=$1", f"batch:{res.batch_id}"),
            what="deletion scheduled",
        )
        return res


async def test_subject_access_request_finds_a_child_across_two_extracts_and_a_batch(
    settings_env, monkeypatch, tmp_path
):
    res = await _july_flow(settings_env, monkeypatch)
    transfer = (SAMPLES / "admissions-year3-transfer-2017.csv").read_text().splitlines()[1].split(",")
    surname, forename, dob = transfer[0], transfer[1], transfer[2]
    out = tmp_path / "sar.json"
    r = await sais(
        settings_env,
        "sar",
        "find",
        "--forename",
        forename.upper(),
        "--surname",
        surname,
        "--date-of-birth",
        dob,
        "--out",
        str(out),
        "--json",
    )
    assert r.returncode == 0, r.stderr
    answer = json.loads(out.read_text())
    assert {x["source"] for x in answer["records"]} == {"summer-census", "admissions-year3-transfer"}
    assert all(x["details"]["surname"] == surname for x in answer["records"])
    assert len(answer["extracts"]) == 2 and [b["batch_id"] for b in answer["batches"]] == [str(res.batch_id)]
    assert answer["batches"][0]["delete_by"] == "2017-10-10"
    assert any(c["programme"] == "flu" and c["status"] == "active" for c in answer["cohorts"])
    assert {"subject": f"batch:{res.batch_id}", "delete_on": "2017-10-10", "deleted_at": None} in answer["deletion"]
    text_out = tmp_path / "sar.txt"
    assert (
        await sais(
            settings_env,
            "sar",
            "find",
            "--forename",
            forename,
            "--surname",
            surname,
            "--date-of-birth",
            dob,
            "--out",
            str(text_out),
        )
    ).returncode == 0
    assert surname in text_out.read_text() and "to be deleted by 2017-10-10" in text_out.read_text()

    audit = await sais(settings_env, "audit", "list", "--action", "sar.answered", "--json")
    entries = json.loads(audit.stdout)
    assert len(entries) == 2 and surname not in audit.stdout and forename not in audit.stdout


async def test_party_leaving_purges_everything_after_explicit_confirmation(settings_env, monkeypatch):
    await _july_flow(settings_env, monkeypatch)
    dsn = settings_env["SAIS_DATABASE_URL"]
    refused = await sais(settings_env, "retention", "purge", "--party", "cwpt", "--confirm", "wcc")
    assert refused.returncode == 2 and await fetchval(dsn, "SELECT count(*) FROM eligibility.records") > 0
    assert (
        await sais(settings_env, "retention", "purge", "--party", "nhs-other", "--confirm", "nhs-other")
    ).returncode == 2
    async with owners_and_retention():
        ok = await sais(settings_env, "retention", "purge", "--party", "cwpt", "--confirm", "cwpt")
        assert ok.returncode == 0, ok.stderr
        await certified(dsn, "party:cwpt:%")
    for table in ("eligibility.records", "eligibility.cohort", "delivery.members", "ingest.row_problems"):
        assert await fetchval(dsn, f"SELECT count(*) FROM {table}") == 0, table
    assert await fetchval(dsn, "SELECT count(*) FROM shared.data_keys WHERE wrapped IS NOT NULL") == 0
    assert await fetchval(dsn, "SELECT rule FROM retention.certificates") == "isp-11.3-party-left"
    actions = json.loads((await sais(settings_env, "audit", "list", "--json")).stdout)
    assert {"data.purged", "batch.sent", "extract.ingested"} <= {a["action"] for a in actions}


async def test_audit_trail_is_append_only(settings_env):
    async with Retention():
        pass
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        await conn.execute("INSERT INTO shared.audit_log(actor, action, subject) VALUES ('t', 'x', 'y')")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("DELETE FROM shared.audit_log")
        with pytest.raises(asyncpg.RaiseError, match="append-only"):
            await conn.execute("UPDATE shared.audit_log SET actor='z'")
    finally:
        await conn.close()


async def test_kek_rotation_while_the_services_run_loses_no_key_and_keeps_matching_stable(
    settings_env, tmp_path, monkeypatch
):
    import base64

    old_env = dict(settings_env)
    assert (await sais(old_env, "keys", "rotate-kek")).returncode == 2  # the blind-index key must be pinned first
    assert (await sais(old_env, "keys", "export-index-key", str(tmp_path / "index.b64"))).returncode == 0
    old_env["SAIS_INDEX_KEY_FILE"] = str(tmp_path / "index.b64")
    retired = tmp_path / "retired"
    retired.mkdir()
    (retired / "kek-1.b64").write_text(Path(settings_env["SAIS_KEK_FILE"]).read_text())
    (tmp_path / "kek-2.b64").write_text(base64.b64encode(os.urandom(32)).decode())
    for key in (retired / "kek-1.b64", tmp_path / "kek-2.b64", tmp_path / "index.b64"):
        key.chmod(0o600)
    new_env = old_env | {
        "SAIS_KEK_FILE": str(tmp_path / "kek-2.b64"),
        "SAIS_KEK_ID": "kek-2",
        "SAIS_KEK_RETIRED_DIR": str(retired),
    }
    dsn = settings_env["SAIS_DATABASE_URL"]

    def use(env):
        for k in ("SAIS_KEK_ID", "SAIS_KEK_RETIRED_DIR"):
            monkeypatch.delenv(k, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)

    use(old_env)
    may = await ingest("may-census-2017.csv", "summer-census", "2017-05-18")  # wrapped by kek-1
    use(new_env)  # eligibility restarted with kek-2 in force and kek-1 retired
    async with TestApp(build_eligibility(EligibilitySettings())):
        await wait_until(lambda: fetchval(dsn, f"SELECT count(*) = {may.accepted} FROM eligibility.records"))
        use(old_env)  # ingest not yet restarted: it still wraps with kek-1
        october = await ingest("october-census-2017.csv", "autumn-census", "2017-10-05")
        use(new_env)
        status = await sais(new_env, "keys", "status", "--json")
        assert status.returncode == 0 and json.loads(status.stdout)["live_keys_by_kek"] == {"kek-1": 2}
        rotated = await sais(new_env, "keys", "rotate-kek")
        assert rotated.returncode == 0 and "2 data key(s) re-wrapped with kek-2" in rotated.stdout, rotated.stderr
        total = may.accepted + october.accepted
        await wait_until(lambda: fetchval(dsn, f"SELECT count(*) = {total} FROM eligibility.records"), timeout=60)
    assert json.loads((await sais(new_env, "keys", "status", "--json")).stdout)["live_keys_by_kek"] == {"kek-2": 2}
    no_retired = {k: v for k, v in new_env.items() if k != "SAIS_KEK_RETIRED_DIR"}
    use(no_retired)
    assert (await sais(no_retired, "keys", "status")).returncode == 0  # the old KEK can go now
    ring_new = CommonSettings().key_ring()
    use(old_env)
    unheld = await sais(old_env, "keys", "status")  # a configuration still on kek-1 alone would open nothing
    assert unheld.returncode == 3 and "NOT HELD" in unheld.stdout
    ring_old = CommonSettings().key_ring()
    assert ring_new.blind_index("Zoë", "Smith", "2012-01-01") == ring_old.blind_index("Zoë", "Smith", "2012-01-01")
    audited = await fetchval(dsn, "SELECT count(*) FROM shared.audit_log WHERE action='kek.rotated'")
    assert audited == 1


async def test_a_kek_rotation_goes_by_the_keys_themselves_not_by_their_labels(settings_env, tmp_path, monkeypatch):
    """A new KEK left under the old id, a retired copy under the id in force, and a key row planted under
    a foreign label: each is refused with what to do, instead of "0 re-wrapped, the old KEK can be removed"
    (after which no data key would open) or an internal error."""
    import base64

    dsn = settings_env["SAIS_DATABASE_URL"]
    may = await ingest("may-census-2017.csv", "summer-census", "2017-05-18")  # a data key under kek-1
    old_kek = Path(settings_env["SAIS_KEK_FILE"])
    index = tmp_path / "index.b64"
    assert (await sais(settings_env, "keys", "export-index-key", str(index))).returncode == 0
    new_kek = tmp_path / "new.b64"
    new_kek.write_text(base64.b64encode(os.urandom(32)).decode())
    retired = tmp_path / "retired"
    retired.mkdir()
    (retired / "kek-1.b64").write_text(old_kek.read_text())
    for key in (new_kek, retired / "kek-1.b64"):
        key.chmod(0o600)
    pinned = settings_env | {"SAIS_INDEX_KEY_FILE": str(index)}

    # The new KEK in force under the old id, the old one retired under that same id: refused at once.
    same_id = pinned | {"SAIS_KEK_FILE": str(new_kek), "SAIS_KEK_RETIRED_DIR": str(retired)}
    for command in (("keys", "status"), ("keys", "rotate-kek")):
        refused = await sais(same_id, *command)
        assert refused.returncode == 7 and "has the id of the KEK in force (kek-1)" in refused.stderr, refused
    # The old KEK retired under a new id while it is also the one in force: refused too.
    (retired / "kek-1.b64").rename(retired / "kek-0.b64")
    twin = pinned | {"SAIS_KEK_RETIRED_DIR": str(retired)}
    refused = await sais(twin, "keys", "status")
    assert refused.returncode == 7 and "is the KEK in force (kek-1) under another id" in refused.stderr, refused

    # The new KEK swapped in under the old id with nothing retired: the label still says kek-1, but no
    # live key opens; rotation refuses and names the key, and the status exits 3.
    swapped = pinned | {"SAIS_KEK_FILE": str(new_kek)}
    key_id = await fetchval(dsn, "SELECT key_id FROM shared.data_keys")
    rotated = await sais(swapped, "keys", "rotate-kek", "--json")
    assert rotated.returncode == 3, rotated
    assert json.loads(rotated.stdout)["unopenable"] == [str(key_id)]
    assert json.loads(rotated.stdout)["retired_can_be_removed"] is False
    assert "Do not remove any KEK" in rotated.stderr
    status = await sais(swapped, "keys", "status", "--json")
    assert status.returncode == 3 and json.loads(status.stdout)["live_keys_by_kek"] == {"NOT HELD": 1}
    # ... and a writer holding it cannot wrap new keys under a label the store knows as another key.
    monkeypatch.setenv("SAIS_KEK_FILE", str(new_kek))
    with pytest.raises(ConfigurationError, match="contradicts the key store"):
        await ingest("october-census-2017.csv", "autumn-census", "2017-10-05")
    monkeypatch.setenv("SAIS_KEK_FILE", str(old_kek))

    # A key row planted by ingest's role under a foreign label: the genuine key is re-wrapped, the planted
    # one is named, and the exit is 3, not an internal error.
    conn = await asyncpg.connect(**CommonSettings().database_login("ingest"))
    try:
        planted = await conn.fetchval(
            "SELECT k FROM gen_random_uuid() k, shared.create_data_key(k, gen_random_uuid(), 'kek-9', $1, $2)",
            "0" * 32,
            os.urandom(60),
        )
    finally:
        await conn.close()
    (retired / "kek-0.b64").rename(retired / "kek-1.b64")
    (tmp_path / "kek-2.b64").write_text(new_kek.read_text())
    (tmp_path / "kek-2.b64").chmod(0o600)
    rotating = pinned | {"SAIS_KEK_FILE": str(tmp_path / "kek-2.b64"), "SAIS_KEK_ID": "kek-2",
                         "SAIS_KEK_RETIRED_DIR": str(retired)}  # fmt: skip
    rotated = await sais(rotating, "keys", "rotate-kek", "--json")
    assert rotated.returncode == 3, rotated
    out = json.loads(rotated.stdout)
    assert out["rewrapped"] == 1 and out["unopenable"] == [str(planted)]
    assert out["live_keys_by_kek"] == {"NOT HELD": 1, "kek-2": 1}
    assert await fetchval(dsn, "SELECT kek_id FROM shared.data_keys WHERE key_id=$1", key_id) == "kek-2"
    monkeypatch.setenv("SAIS_KEK_FILE", str(tmp_path / "kek-2.b64"))
    monkeypatch.setenv("SAIS_KEK_ID", "kek-2")
    monkeypatch.setenv("SAIS_INDEX_KEY_FILE", str(index))
    async with TestApp(build_eligibility(EligibilitySettings())):  # the re-wrapped key opens with kek-2
        await wait_until(lambda: fetchval(dsn, f"SELECT count(*) = {may.accepted} FROM eligibility.records"))


async def test_events_replayed_after_deletion_are_skipped_not_retried(settings_env, monkeypatch):
    """A consumer rebuilt from scratch replays the topics from the start and meets shredded events: it skips
    them instead of retrying them forever, and goes on to new data."""
    res = await _july_flow(settings_env, monkeypatch)
    dsn = settings_env["SAIS_DATABASE_URL"]
    async with Retention() as svc:
        [req] = [r for r in await svc.run_due(date(2017, 10, 11)) if r.subject == f"batch:{res.batch_id}"]
    assert req.key_ids
    conn = await asyncpg.connect(dsn)
    await conn.execute("TRUNCATE eligibility.processed")  # consumer state rebuilt (delivery keeps none)
    await conn.close()
    monkeypatch.setenv("SAIS_ELIGIBILITY_GROUP_ID", settings_env["SAIS_TOPIC_PREFIX"] + "-eligibility-replay")
    monkeypatch.setenv("SAIS_DELIVERY_GROUP_ID", settings_env["SAIS_TOPIC_PREFIX"] + "-delivery-replay")
    monkeypatch.setenv("SAIS_AS_OF", "2017-10-12")  # the October census is ingested after its census day
    async with TestApp(build_eligibility(EligibilitySettings())), TestApp(build_delivery(DeliverySettings())):
        await ingest("october-census-2017.csv", "autumn-census", "2017-10-05")  # new data, a live key
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 17 FROM eligibility.records"),
            timeout=60,
            what="new extract processed after the shredded replay",
        )
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 34 FROM delivery.members WHERE status='active'"),
            timeout=60,
            what="delivery caught up",
        )
    assert await fetchval(dsn, "SELECT count(*) FROM eligibility.records WHERE source <> 'autumn-census'") == 0


async def test_the_retention_service_runs_due_deletions_by_itself(settings_env, monkeypatch):
    monkeypatch.setenv("SAIS_AS_OF", "2017-06-01")  # ingested on 1 June 2017: due on 1 September
    rep = await ingest("may-census-2017.csv", "summer-census", "2017-05-18")
    dsn = settings_env["SAIS_DATABASE_URL"]
    key_id = await fetchval(dsn, "SELECT key_id FROM ingest.extracts")
    async with owners_and_retention():  # retention learns of the ingest that day (its own clock)
        due = await wait_until(
            lambda: fetchval(
                dsn, "SELECT due_on FROM retention.schedule WHERE subject=$1", f"extract:{rep.extract_id}"
            ),
            what="scheduled from extract-completed",
        )
    assert due == date(2017, 9, 1)
    monkeypatch.setenv("SAIS_AS_OF", "2017-09-02")  # the extract's 3 months are up
    monkeypatch.setenv("SAIS_RETENTION_INTERVAL_S", "0.5")
    async with owners_and_retention():
        await wait_until(
            lambda: fetchval(dsn, "SELECT wrapped IS NULL FROM shared.data_keys WHERE key_id=$1", key_id),
            what="the timer deleted it",
        )
        await certified(dsn, f"extract:{rep.extract_id}")
    assert await fetchval(dsn, "SELECT rule FROM retention.certificates") == "undelivered-extract-ingest-plus-retention"


async def test_a_restored_backup_has_its_certified_deletions_applied_again(settings_env, monkeypatch, infra):
    from sais_shared.events import DeletionRequested
    from sais_shared.topics import Topics

    from tests.helpers import read_topic

    res = await _july_flow(settings_env, monkeypatch)
    dsn, subject = settings_env["SAIS_DATABASE_URL"], f"batch:{res.batch_id}"
    db = dsn.split("?")[0].rsplit("/", 1)[1]
    backup = f"{db}_backup"
    admin = await asyncpg.connect(infra.pg_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{backup}" TEMPLATE "{db}"')  # the backup, taken before the deletion
        async with owners_and_retention():
            done = await sais(settings_env, "retention", "run", "--now", "2017-10-11", "--wait", "60", "--json")
            assert done.returncode == 0, done.stderr
            await certified(dsn, subject)
        restored = infra.dsn(backup)
        live = "SELECT count(*) FROM shared.data_keys WHERE wrapped IS NOT NULL"
        assert await fetchval(restored, live) == 2  # restored as it was: the keys the certificate destroyed are back
        # after the restore, before the services start (docs/runbook.md, Backups and deletion)
        env = settings_env | {"SAIS_DATABASE_URL": restored}
        again = await sais(env, "retention", "reapply", "--json")
        assert again.returncode == 0, again.stderr
        [req] = json.loads(again.stdout)
        assert req["subject"] == f"{subject}:reapplied:2017-07-10" and len(req["key_ids"]) == 2
        assert await fetchval(restored, live) == 0  # crypto-shredded again, at once
        requested = [
            DeletionRequested.model_validate_json(r.value)
            for r in await read_topic(infra.kafka, Topics(settings_env["SAIS_TOPIC_PREFIX"]).deletion_requested)
        ]
        [asked] = [r for r in requested if r.subject == req["subject"]]  # the owners are asked to delete the rows
        assert asked.batch_ids == [res.batch_id] and len(asked.extract_ids) == 2 and asked.scope == "transfer"
        assert set(asked.owners) == {"ingest", "eligibility", "delivery"}
        audited = await fetchval(restored, "SELECT count(*) FROM shared.audit_log WHERE action='deletion.reapplied'")
        assert audited == 1
        twice = await sais(env, "retention", "reapply")
        assert twice.returncode == 0 and "none undone" in twice.stdout  # nothing left to undo
        untouched = await sais(settings_env, "retention", "reapply")  # the live database was never restored
        assert untouched.returncode == 0 and "none undone" in untouched.stdout
    finally:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=$1 AND pid <> pg_backend_pid()",
            backup,
        )
        await admin.execute(f'DROP DATABASE IF EXISTS "{backup}"')
        await admin.close()


async def test_audit_list_shows_values_as_text_never_as_markup(settings_env):
    """A subject or actor that looks like rich markup ("[/]", "[bold]") is shown as it is (issue 26, 10)."""
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        await conn.execute(
            "INSERT INTO shared.audit_log(actor, action, subject) VALUES ('[bold]Jo[/]', 'test.markup', '[/]')"
        )
    finally:
        await conn.close()
    r = await sais(settings_env | {"COLUMNS": "200"}, "audit", "list", "--action", "test.markup")
    assert r.returncode == 0, r.stderr
    assert "[/]" in r.stdout and "[bold]Jo[/]" in r.stdout
