"""delivery against the real SMTP server process, PostgreSQL and Kafka; openssl reads the result."""

import csv
import email
import json
import os
import subprocess
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from sais_delivery.adapters.store import PgDeliveryUnitOfWork
from sais_delivery.app import MIGRATIONS, delivery_session
from sais_delivery.config import DeliverySettings
from sais_delivery.domain.errors import (
    CertificateError,
    RecipientNotAllowedError,
    ReviewOverdueError,
    SharingSuspendedError,
    StaleDataError,
    TransferMethodNotAllowedError,
)
from sais_delivery.service_layer.members import apply_cohort_events
from sais_shared.crypto import Sealed
from sais_shared.devpki import RECIPIENT_EMAIL, issue_email_cert
from sais_shared.events import CohortMemberAdded, DeliveryCompleted, PupilPersonal
from sais_shared.runtime import open_runtime
from sais_shared.settings import CommonSettings
from sais_shared.topics import Topics

from tests.helpers import REPO, free_port, mail_to, openssl_open, private_smtpd, read_topic
from tests.pii import PersonalDataScan

pytestmark = pytest.mark.integration
EVIL = '=HYPERLINK("http://evil.example","click")'


async def seed_cohort(n=5, received_at=datetime(2017, 6, 1, 9, tzinfo=UTC), surname_of=None) -> uuid.UUID:
    """Cohort records as eligibility would publish them, applied by delivery's real consumer function."""
    rt = await open_runtime(CommonSettings(), *MIGRATIONS)
    try:
        extract_id = uuid.uuid4()
        key = await rt.keys.key_for_extract(extract_id)
        events = []
        for i in range(n):
            pid = uuid.uuid4()
            p = PupilPersonal(
                surname=(surname_of or (lambda i: f"Núñez{chr(65 + i)}"))(i),
                forename="Zoë",
                date_of_birth=datetime(2012, 1, 1 + i).date(),
                address_lines=["1 High St", "Warwick"],
                postcode="CV34 4RL",
            )
            event = CohortMemberAdded(
                event_id=uuid.uuid4(),
                occurred_at=received_at,
                academic_year="2017/18",
                programme="flu",
                pupil_id=pid,
                school_dfe="9372001",
                school_name="Emscote Infant School",
                year_group="R",
                gender="F",
                source="summer-census",
                reference_date=received_at.date(),
                received_at=received_at,
                extract_ids=[extract_id],
                revision=1,
                personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
            )
            events.append(event.model_copy(update={"personal": key.seal_model(p, event.aad())}))
        await apply_cohort_events(PgDeliveryUnitOfWork(rt.pool), rt.keys, events)
        return extract_id
    finally:
        await rt.close()


async def deliver(**kw):
    async with delivery_session(DeliverySettings()) as svc:
        return await svc.deliver("july", "2017/18", actor="test", **kw)


def messages_with(maildir, message_id: str):
    return [p for p in maildir.glob("*.eml") if message_id.encode() in p.read_bytes()]


async def audit_actions(dsn):
    conn = await asyncpg.connect(dsn)
    try:
        return [r["action"] for r in await conn.fetch("SELECT action FROM shared.audit_log ORDER BY id")]
    finally:
        await conn.close()


@pytest.fixture
def july(settings_env, monkeypatch):
    monkeypatch.setenv("SAIS_AS_OF", "2017-07-10")
    return settings_env


async def test_delivered_message_decrypts_verifies_and_keeps_formulas_as_text(july, infra):
    await seed_cohort(3, surname_of=lambda i: [EVIL, "@SUM(A1:A9)", "O'Brien"][i])
    res = await deliver()
    [msg] = messages_with(infra.maildir, res.message_id)
    raw = msg.read_bytes()
    assert not PersonalDataScan({"O'Brien", "HYPERLINK"}).in_text(raw.decode())  # encrypted on the wire and at rest
    subject = next(line for line in raw.decode().splitlines() if line.startswith("Subject:"))
    assert "OFFICIAL-SENSITIVE" in subject and "Zo" not in subject
    printed = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-in", str(msg)], capture_output=True, text=True)
    assert "aes-256-cbc" in printed.stdout.lower()
    inner = email.message_from_bytes(openssl_open(msg, infra.pki))
    files = {p.get_filename(): p.get_payload(decode=True) for p in inner.walk() if p.get_filename()}
    rows = list(csv.DictReader(files["flu-2017-18.csv"].decode("utf-8-sig").splitlines()))
    assert sorted(r["Surname"] for r in rows) == sorted(["'" + EVIL, "'@SUM(A1:A9)", "O'Brien"])
    body = next(p for p in inner.walk() if p.get_content_type() == "text/plain").get_payload(decode=True).decode()
    assert "O'Brien" not in body and "flu: 3" in body

    events = await read_topic(infra.kafka, Topics(july["SAIS_TOPIC_PREFIX"]).delivery_completed)
    [done] = [DeliveryCompleted.model_validate_json(e.value) for e in events]
    assert done.batch_id == res.batch_id and done.programmes == {"flu": 3} and str(done.delete_by) == "2017-10-10"


async def test_a_child_that_changes_between_planning_and_sending_goes_as_it_is_now_and_its_key_with_the_batch(
    july, infra, monkeypatch
):
    """A batch is planned, the send fails (SMTP away), and meanwhile a newer revision of a child arrives,
    sealed under another extract's key. The retried send rendered it with the batch's keys only and failed
    with a KeyError for good (seen on the testcontainers path, where the cohort was still settling). Now the
    child goes as it is now, and the batch records that key and extract, so the transfer's deletion covers it."""
    first = await seed_cohort(1)
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(free_port()))  # nothing listens there
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_ATTEMPTS", "1")
    from sais_delivery.adapters.mailer import SmtpTransientError

    with pytest.raises(SmtpTransientError):
        await deliver()  # planned and prepared, not sent
    conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
    try:
        pid, old_key = await conn.fetchrow("SELECT pupil_id, key_id FROM delivery.members")
        planned = await conn.fetchval("SELECT key_ids FROM delivery.batches")
    finally:
        await conn.close()
    assert planned == [old_key]
    rt = await open_runtime(CommonSettings(), *MIGRATIONS)
    try:
        second = uuid.uuid4()
        key = await rt.keys.key_for_extract(second)
        at = datetime(2017, 6, 20, 9, tzinfo=UTC)
        event = CohortMemberAdded(
            event_id=uuid.uuid4(), occurred_at=at, academic_year="2017/18", programme="flu", pupil_id=pid,
            school_dfe="9372001", school_name="Emscote Infant School", year_group="R", gender="F",
            source="summer-census", reference_date=at.date(), received_at=at, extract_ids=[first, second],
            revision=2, personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
        )  # fmt: skip
        personal = PupilPersonal(surname="Renamed", forename="Zoë", date_of_birth=datetime(2012, 1, 1).date(),
                                 address_lines=["2 High St", "Warwick"], postcode="CV34 4RL")  # fmt: skip
        await apply_cohort_events(
            PgDeliveryUnitOfWork(rt.pool),
            rt.keys,
            [event.model_copy(update={"personal": key.seal_model(personal, event.aad())})],
        )
    finally:
        await rt.close()
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(infra.smtp_port))
    res = await deliver()
    assert res.status == "sent"
    [msg] = messages_with(infra.maildir, res.message_id)
    inner = email.message_from_bytes(openssl_open(msg, infra.pki))
    files = {p.get_filename(): p.get_payload(decode=True) for p in inner.walk() if p.get_filename()}
    [row] = list(csv.DictReader(files["flu-2017-18.csv"].decode("utf-8-sig").splitlines()))
    assert row["Surname"] == "Renamed"
    events = await read_topic(infra.kafka, Topics(july["SAIS_TOPIC_PREFIX"]).delivery_completed)
    [done] = [DeliveryCompleted.model_validate_json(e.value) for e in events]
    assert set(done.key_ids) == {old_key, key.key_id} and set(done.extract_ids) >= {first, second}


async def test_recipient_outside_the_allow_list_is_refused_and_audited(july, infra):
    await seed_cohort(1)
    with pytest.raises(RecipientNotAllowedError, match="allow-listed"):
        await deliver(recipient="ann.curzons@gmail.com")
    assert not mail_to(infra.maildir, "ann.curzons@gmail.com")  # (the maildir is shared: ask by recipient)
    assert "delivery.refused" in await audit_actions(july["SAIS_DATABASE_URL"])


async def test_plaintext_only_smtp_server_is_refused(july, infra, tmp_path, monkeypatch):
    await seed_cohort(1)
    with private_smtpd(infra, tmp_path / "mail", "--no-tls", tls=False) as port:
        monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(port))
        with pytest.raises(TransferMethodNotAllowedError, match="STARTTLS"):
            await deliver()
        assert list((tmp_path / "mail").glob("*.eml")) == []


async def test_stale_extract_is_refused_naming_it(july, infra):
    extract = await seed_cohort(2, received_at=datetime(2017, 3, 1, tzinfo=UTC))
    with pytest.raises(StaleDataError) as exc:
        await deliver()
    assert str(extract) in str(exc.value) and "refreshed" in str(exc.value)


async def test_suspended_sharing_refuses_until_resumed(july, infra):
    await seed_cohort(2)
    async with delivery_session(DeliverySettings()) as svc:
        await svc.set_suspended(True, "suspected breach INC-1", "ig-lead")
    with pytest.raises(SharingSuspendedError, match="INC-1"):
        await deliver()
    async with delivery_session(DeliverySettings()) as svc:
        await svc.set_suspended(False, "investigation closed", "ig-lead")
    res = await deliver()
    assert res.status == "sent"
    actions = await audit_actions(july["SAIS_DATABASE_URL"])
    assert actions.index("sharing.suspended") < actions.index("delivery.refused") < actions.index("sharing.resumed")


async def test_expired_or_wrong_recipient_certificate_is_refused(july, infra, tmp_path, monkeypatch):
    await seed_cohort(1)
    issue_email_cert(
        infra.pki / "ca.pem",
        infra.pki / "ca.key",
        RECIPIENT_EMAIL,
        tmp_path / "old.pem",
        tmp_path / "old.key",
        days=30,
        not_before=datetime.now(UTC) - timedelta(days=400),
    )
    monkeypatch.setenv("SAIS_DELIVERY_RECIPIENT_CERT", str(tmp_path / "old.pem"))
    with pytest.raises(CertificateError, match="expired"):
        await deliver()
    issue_email_cert(
        infra.pki / "ca.pem",
        infra.pki / "ca.key",
        "someone.else@nhs.net",
        tmp_path / "other.pem",
        tmp_path / "other.key",
    )
    monkeypatch.setenv("SAIS_DELIVERY_RECIPIENT_CERT", str(tmp_path / "other.pem"))
    with pytest.raises(CertificateError, match=r"someone\.else@nhs\.net"):
        await deliver()


async def test_past_the_review_date_needs_an_audited_override(settings_env, infra, monkeypatch):
    monkeypatch.setenv("SAIS_AS_OF", "2018-06-01")
    await seed_cohort(1, received_at=datetime(2018, 5, 20, tzinfo=UTC))
    with pytest.raises(ReviewOverdueError, match="review"):
        await deliver()
    res = await deliver(override_review="review meeting 2018-06-15 agreed to continue")
    assert res.status == "sent"
    assert "protocol.review_overridden" in await audit_actions(settings_env["SAIS_DATABASE_URL"])


async def test_smtp_outage_is_retried_then_delivered(july, infra, monkeypatch):
    await seed_cohort(1)
    closed = free_port()  # nothing listens there
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(closed))
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_ATTEMPTS", "2")
    from sais_delivery.adapters.mailer import SmtpTransientError

    with pytest.raises(SmtpTransientError):
        await deliver()
    conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
    row = await conn.fetchrow("SELECT status, attempts, last_error FROM delivery.batches")
    await conn.close()
    assert row["status"] == "prepared" and row["attempts"] == 2 and "failed" in row["last_error"]
    monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(infra.smtp_port))
    res = await deliver()
    assert res.status == "sent" and len(messages_with(infra.maildir, res.message_id)) == 1


def _cli(env, *args, crash=None):
    """`sais delivery …` in its own process; with ``crash``, the process dies at that point of the send
    (the test seam in tests/crash_cli.py)."""
    e = {**os.environ, **env, "SAIS_AS_OF": "2017-07-10"}
    argv = (
        [str(REPO / ".venv" / "bin" / "python"), "-m", "tests.crash_cli", crash]
        if crash
        else [str(REPO / ".venv" / "bin" / "sais")]
    )
    return subprocess.run([*argv, "delivery", *args], env=e, capture_output=True, text=True, cwd=REPO)


async def test_crash_between_recording_and_sending_then_retry_sends_once(july, infra):
    await seed_cohort(2)
    crashed = _cli(july, "send", "--window", "july", "--academic-year", "2017/18", crash="after-prepare")
    assert crashed.returncode == 70
    conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
    b = await conn.fetchrow("SELECT batch_id, status, message_id FROM delivery.batches")
    await conn.close()
    assert b["status"] == "prepared" and messages_with(infra.maildir, b["message_id"]) == []
    ok = _cli(july, "send", "--window", "july", "--academic-year", "2017/18")
    assert ok.returncode == 0, ok.stderr
    assert len(messages_with(infra.maildir, b["message_id"])) == 1


async def test_crash_between_sending_and_marking_sent_never_sends_twice(july, infra):
    await seed_cohort(2)
    args = ("send", "--window", "july", "--academic-year", "2017/18")
    assert _cli(july, *args, crash="after-send").returncode == 70
    conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
    b = await conn.fetchrow("SELECT batch_id, status, message_id, recipient FROM delivery.batches")
    assert b["status"] == "sending" and len(messages_with(infra.maildir, b["message_id"])) == 1
    retry = _cli(july, *args)
    assert retry.returncode == 4 and "resolve" in retry.stderr  # uncertain: reported, not resent
    assert len(messages_with(infra.maildir, b["message_id"])) == 1
    status = _cli(july, "status")
    assert str(b["batch_id"]) in status.stdout and b["message_id"] in status.stdout  # whole ids, as the runbook needs
    assert b["recipient"] in status.stdout and "interrupted" in status.stdout
    attempted = await conn.fetchval("SELECT attempted_at FROM delivery.batch_parts WHERE batch_id=$1", b["batch_id"])
    assert _cli(july, "resolve", str(b["batch_id"]), "--sent").returncode == 0
    row = await conn.fetchrow("SELECT status, sent_at FROM delivery.batches")
    assert row["status"] == "sent" and row["sent_at"] == attempted  # transferred when it was sent, not when resolved
    for decided in ("--sent", "--not-sent"):  # nothing left to resolve: refused, not reported as done
        twice = _cli(july, "resolve", str(b["batch_id"]), decided)
        assert twice.returncode == 3 and "no interrupted part" in twice.stderr, twice.stderr
    await conn.close()
    again = _cli(july, *args)
    assert again.returncode == 0 and len(messages_with(infra.maildir, b["message_id"])) == 1
    events = await read_topic(infra.kafka, Topics(july["SAIS_TOPIC_PREFIX"]).delivery_completed)
    assert [DeliveryCompleted.model_validate_json(e.value).batch_id for e in events] == [b["batch_id"]]


async def test_a_changed_cohort_goes_as_a_new_batch_that_replaces_the_last(july, infra):
    import json as _json

    await seed_cohort(2)
    first = await deliver()
    await seed_cohort(1)  # a replacement dataset added a child
    second = await deliver()
    assert second.batch_id != first.batch_id and second.replaces_batch == first.batch_id
    assert second.counts == {"flu": 3}
    [msg] = messages_with(infra.maildir, second.message_id)
    inner = email.message_from_bytes(openssl_open(msg, infra.pki))
    manifest = next(p for p in inner.walk() if p.get_filename() == "manifest.json").get_payload(decode=True)
    assert _json.loads(manifest)["replaces_batch"] == str(first.batch_id)


async def test_smtp_authentication_when_configured(july, infra, tmp_path, monkeypatch):
    await seed_cohort(1)
    with private_smtpd(infra, tmp_path / "mail", "--user", "la-sender", "--password", "s3cret") as port:
        monkeypatch.setenv("SAIS_DELIVERY_SMTP_PORT", str(port))
        monkeypatch.setenv("SAIS_DELIVERY_SMTP_ATTEMPTS", "1")
        monkeypatch.setenv("SAIS_DELIVERY_SMTP_USERNAME", "la-sender")
        (tmp_path / "pw").write_text("wrong\n")
        monkeypatch.setenv("SAIS_DELIVERY_SMTP_PASSWORD_FILE", str(tmp_path / "pw"))
        from sais_delivery.adapters.mailer import SmtpRejectedError

        with pytest.raises(SmtpRejectedError, match="authentication"):
            await deliver()
        (tmp_path / "pw").write_text("s3cret\n")
        res = await deliver()
        [msg] = list((tmp_path / "mail").glob("*.eml"))
        assert b"X-Local-Smtpd-Auth: True" in msg.read_bytes() and res.status == "sent"


async def test_the_service_delivers_a_window_by_itself_in_its_month(july, infra, monkeypatch):
    from faststream import TestApp
    from sais_delivery.app import build_app

    from tests.conftest import wait_until

    await seed_cohort(2)
    monkeypatch.setenv("SAIS_DELIVERY_SCHEDULE", "true")
    monkeypatch.setenv("SAIS_DELIVERY_SCHEDULE_INTERVAL_S", "0.5")

    async def sent():
        conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
        try:
            return await conn.fetch(
                "SELECT window_name, academic_year, message_id FROM delivery.batches WHERE status='sent'"
            )
        finally:
            await conn.close()

    from prometheus_client import REGISTRY

    def timer_runs() -> float:
        return REGISTRY.get_sample_value("sais_timer_runs_total", {"service": "sais-delivery"}) or 0.0

    async with TestApp(build_app(DeliverySettings())):
        rows = await wait_until(sent, what="scheduled July delivery")
        after_send = timer_runs()

        async def two_more_runs() -> bool:  # the timer ran twice more: unchanged content is not sent again
            return timer_runs() >= after_send + 2

        await wait_until(two_more_runs, what="two more runs of the delivery timer")
    assert [(r["window_name"], r["academic_year"]) for r in await sent()] == [("july", "2017/18")]
    assert len(messages_with(infra.maildir, rows[0]["message_id"])) == 1


async def test_a_folder_of_certificates_picks_each_recipients_own(july, infra, tmp_path, monkeypatch):
    import shutil as _shutil

    await seed_cohort(1)
    certs = tmp_path / "recipients"
    certs.mkdir()
    _shutil.copy(infra.pki / "recipient.pem", certs / f"{RECIPIENT_EMAIL}.pem")
    monkeypatch.setenv("SAIS_DELIVERY_RECIPIENT_CERT", str(certs))
    with pytest.raises(CertificateError, match="cannot load the recipient certificate"):
        await deliver(recipient="someone.else@nhs.net")  # allowed domain, but no certificate for them
    res = await deliver()
    [msg] = messages_with(infra.maildir, res.message_id)
    assert openssl_open(msg, infra.pki)


@pytest.mark.parametrize("how", ["--recipient", "environment"])
async def test_an_address_trick_from_the_command_line_or_environment_is_refused(july, infra, how):
    await seed_cohort(1)
    trick = "evil@evil.com,x.nhs.net"
    args = ["send", "--window", "july", "--academic-year", "2017/18"]
    env = dict(july)
    if how == "--recipient":
        args += ["--recipient", trick]
    else:
        env["SAIS_DELIVERY_RECIPIENT"] = trick
    r = _cli(env, *args)
    assert r.returncode == 3 and "allow-listed" in r.stderr
    assert not mail_to(infra.maildir, "evil@evil.com") and not mail_to(infra.maildir, "x.nhs.net")
    assert "delivery.refused" in await audit_actions(july["SAIS_DATABASE_URL"])


async def test_a_protocol_file_in_the_environment_is_not_the_protocol_in_force(july, infra, tmp_path):
    """Finding 3: a copy of v0.2 that allows example.org, named in SAIS_PROTOCOL_FILE, changes nothing: the
    services and commands enforce the registry's version, and each batch's audit names its exact text."""
    from sais_shared.protocol import bundled_protocol_path

    await seed_cohort(1)
    text = bundled_protocol_path().read_text()
    assert "allowed_recipient_domains: [nhs.net]" in text
    looser = tmp_path / "looser.yaml"
    looser.write_text(
        text.replace("allowed_recipient_domains: [nhs.net]", "allowed_recipient_domains: [nhs.net, example.org]")
    )
    env = {**july, "SAIS_PROTOCOL_FILE": str(looser)}
    args = ["send", "--window", "july", "--academic-year", "2017/18"]
    refused = _cli(env, *args, "--recipient", "outsider@example.org")
    assert refused.returncode == 3 and "allow-listed" in refused.stderr, refused.stderr
    assert not mail_to(infra.maildir, "outsider@example.org")
    sent = _cli(env, *args)
    assert sent.returncode == 0, sent.stderr
    conn = await asyncpg.connect(july["SAIS_DATABASE_URL"])
    try:
        in_force = await conn.fetchval("SELECT sha256 FROM shared.protocols ORDER BY seq DESC LIMIT 1")
        entries = await conn.fetch(
            "SELECT action, details FROM shared.audit_log WHERE action IN ('batch.prepared', 'batch.sent') ORDER BY id"
        )
    finally:
        await conn.close()
    assert [e["action"] for e in entries] == ["batch.prepared", "batch.sent"]
    assert {json.loads(e["details"])["protocol_sha256"] for e in entries} == {in_force}


async def test_a_recipient_certificate_is_looked_up_only_inside_its_folder(july, infra, tmp_path, monkeypatch):
    import shutil as _shutil

    await seed_cohort(1)
    certs = tmp_path / "recipients"
    (certs / "a").mkdir(parents=True)
    _shutil.copy(infra.pki / "recipient.pem", certs / "a" / "b@nhs.net.pem")  # would match a/b@nhs.net
    monkeypatch.setenv("SAIS_DELIVERY_RECIPIENT_CERT", str(certs))
    with pytest.raises(CertificateError, match="not a plain file name"):
        await deliver(recipient="a/b@nhs.net")


async def test_rsa_oaep_key_transport_when_asked_and_stock_openssl_opens_it(july, infra, monkeypatch):
    await seed_cohort(2)
    monkeypatch.setenv("SAIS_DELIVERY_KEY_TRANSPORT", "rsa-oaep")
    res = await deliver()
    [msg] = messages_with(infra.maildir, res.message_id)
    printed = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-in", str(msg)], capture_output=True, text=True)
    assert (
        "rsaesOaep" in printed.stdout and "rsaEncryption" not in printed.stdout.split("keyEncryptionAlgorithm")[1][:80]
    )
    inner = email.message_from_bytes(openssl_open(msg, infra.pki))  # decrypts and verifies
    assert any(p.get_filename() == "flu-2017-18.csv" for p in inner.walk())


async def test_a_later_source_updates_a_child_in_its_window_and_never_moves_it(settings_env):
    """A flu child first known from the May census stays in the July window when the October census
    becomes its best record: July is re-sent as an update; December never carries it."""
    rt = await open_runtime(CommonSettings(), *MIGRATIONS)
    try:
        extract_id, pupil = uuid.uuid4(), uuid.uuid4()
        key = await rt.keys.key_for_extract(extract_id)
        personal = PupilPersonal(surname="Lovelace", forename="Ada", date_of_birth=datetime(2010, 3, 4).date(),
                                 address_lines=["1 High St"], postcode="CV34 4RL")  # fmt: skip

        def revision(n: int, source: str, year_group: str) -> CohortMemberAdded:
            at = datetime(2020, 6 if n == 1 else 10, 1, 9, tzinfo=UTC)
            e = CohortMemberAdded(
                event_id=uuid.uuid4(), occurred_at=at, academic_year="2020/21", programme="flu", pupil_id=pupil,
                school_dfe="9372001", school_name="Castle School", year_group=year_group, gender="F",
                source=source, reference_date=at.date(), received_at=at, extract_ids=[extract_id], revision=n,
                change="added" if n == 1 else "updated", personal=Sealed(key_id=key.key_id, nonce="", ciphertext=""),
            )  # fmt: skip
            return e.model_copy(update={"personal": key.seal_model(personal, e.aad())})

        uow = PgDeliveryUnitOfWork(rt.pool)

        async def window_content(year: str, sources: list[str]) -> tuple[int, str]:
            async with uow() as tx:
                s = await tx.members.summary(year, sources)
                return sum(s.counts.values()), s.content_sha256

        july, december = rt.protocol.transfer.window("july").sources, rt.protocol.transfer.window("december").sources
        await apply_cohort_events(PgDeliveryUnitOfWork(rt.pool), rt.keys, [revision(1, "summer-census", "7")])
        n_july, first = await window_content("2020/21", july)
        assert (n_july, (await window_content("2020/21", december))[0]) == (1, 0)
        await apply_cohort_events(
            PgDeliveryUnitOfWork(rt.pool), rt.keys, [revision(2, "autumn-census", "7")]
        )  # October census wins the match
        n_july, updated = await window_content("2020/21", july)
        assert (n_july, (await window_content("2020/21", december))[0]) == (1, 0)
        assert updated != first  # so the July window is sent again, as an update batch
    finally:
        await rt.close()
