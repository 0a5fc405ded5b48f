"""Breach workflow through the real SMTP server; statistics export from a real cohort."""

import csv
import json
import os
import subprocess
from datetime import UTC, datetime

import asyncpg
import pytest
from sais_delivery.domain.errors import SharingSuspendedError
from sais_shared.protocol import load_protocol

from tests.helpers import REPO
from tests.integration.test_delivery import deliver, seed_cohort

pytestmark = pytest.mark.integration


def sais(env, *args):
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "sais"), *args], env={**os.environ, **env}, capture_output=True, text=True
    )


async def test_a_breach_whose_notices_fail_is_recorded_once_and_says_not_to_report_it_again(settings_env):
    env = {
        **settings_env,
        "SAIS_AS_OF": "2017-07-10",
        "SAIS_DELIVERY_SMTP_PORT": "1",
        "SAIS_DELIVERY_SMTP_ATTEMPTS": "1",
    }
    r = sais(env, "breach", "report", "--what", "export e-mailed to the wrong team", "--discovered-at",
             "2017-07-10T09:30", "--by", "duty officer", "--json")  # fmt: skip
    assert r.returncode == 3, r.stderr  # needs attention, not "transient": a retry would file it twice
    answer = json.loads(r.stdout)
    assert answer["sharing_suspended"] and answer["notified"] == [] and len(answer["not_notified"]) == 4
    assert answer["ico_decision_due"].startswith("2017-07-13T09:30")  # 72 h from 09:30 Europe/London
    assert "do not report it again" in r.stderr and answer["breach_id"] in r.stderr
    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM delivery.breaches") == 1
        assert await conn.fetchval("SELECT suspended FROM delivery.control")
    finally:
        await conn.close()


async def test_breach_suspends_notifies_both_parties_and_resumes_only_by_decision(settings_env, infra, monkeypatch):
    monkeypatch.setenv("SAIS_AS_OF", "2017-07-10")
    env = {**settings_env, "SAIS_AS_OF": "2017-07-10"}
    await seed_cohort(2)
    started = datetime.now(UTC).timestamp()
    r = sais(
        env,
        "breach",
        "report",
        "--what",
        "laptop with an export left on a train",
        "--discovered-at",
        "2017-07-10T09:30:00",
        "--by",
        "Insight Service duty officer",
    )
    assert r.returncode == 0, r.stderr
    assert "2017-07-13 09:30 BST" in r.stdout  # 72 hours for the ICO decision, as a person reads it

    with pytest.raises(SharingSuspendedError):
        await deliver()
    st = sais(env, "status", "--json")
    assert st.returncode == 3 and '"sharing_suspended": true' in st.stdout and "open breach" in st.stdout

    contacts = {c.email for p in load_protocol().parties for c in p.contacts}
    notices = [m.read_bytes() for m in infra.maildir.glob("*.eml") if m.stat().st_mtime >= started - 1]
    notices = [n for n in notices if b"ISP =C2=A716" in n or "ISP §16".encode() in n or b"security incident" in n]
    rcpts = {n.split(b"X-Local-Smtpd-Rcpt: ", 1)[1].split(b"\r\n", 1)[0].decode() for n in notices}
    assert contacts <= rcpts
    assert all(b"X-Local-Smtpd-Tls: TLSv1" in n for n in notices)

    conn = await asyncpg.connect(settings_env["SAIS_DATABASE_URL"])
    breach_id = await conn.fetchval("SELECT breach_id FROM delivery.breaches")
    r = sais(
        env,
        "breach",
        "close",
        str(breach_id),
        "--outcome",
        "device recovered, encrypted",
        "--ico-not-notified",
        "--keep-suspended",
    )
    assert r.returncode == 0 and await conn.fetchval("SELECT suspended FROM delivery.control")
    r = sais(env, "delivery", "resume", "--reason", "post-incident review agreed", "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {
        "suspended": False,
        "reason": "post-incident review agreed",
        "actor": "Test Operator",
    }
    assert not await conn.fetchval("SELECT suspended FROM delivery.control")
    actions = [x["action"] for x in await conn.fetch("SELECT action FROM shared.audit_log ORDER BY id")]
    await conn.close()
    for a in (
        "breach.reported",
        "sharing.suspended",
        "breach.parties_notified",
        "delivery.refused",
        "breach.closed",
        "sharing.resumed",
    ):
        assert a in actions
    assert (await deliver()).status == "sent"


async def test_statistics_export_suppresses_small_numbers(settings_env, infra, tmp_path):
    # Cohort rows as eligibility keeps them (no personal data in this table), written directly.
    from sais_shared.runtime import open_runtime
    from sais_shared.settings import CommonSettings

    rt = await open_runtime(CommonSettings(), ("eligibility", "sais_eligibility"))
    rows = []
    import uuid

    for school, yg, sex, n in [
        ("9372001", "R", "F", 12),
        ("9372001", "R", "M", 3),
        ("9372002", "1", "F", 8),
        ("9372002", "1", "M", 9),
    ]:
        for _ in range(n):
            rows.append(("2017/18", "flu", uuid.uuid4(), None, "active", "fp", 1, uuid.uuid4(), school, yg, sex))
    await rt.pool.executemany(
        "INSERT INTO eligibility.cohort(academic_year, programme, pupil_id, dose, status, fingerprint, revision, "
        "record_id, school_dfe, year_group, gender) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
        rows,
    )
    await rt.close()
    r = sais(settings_env, "eligibility", "statistics", "2017/18")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "NO personal data" in lines[1]
    data = list(csv.DictReader(lines[2:]))
    first = next(d for d in data if d["school_dfe"] == "9372001")
    assert first["M"] == "c"  # 3 boys: primary suppression
    assert sum(first[c] == "c" for c in ("F", "M", "U", "total")) >= 2  # secondary: the total cannot reveal it
    assert "3" not in [first[c] for c in ("F", "M", "U")]
    # --out writes a new, owner-only file, and never follows a symbolic link (issue 26, finding 8)
    out = tmp_path / "stats.csv"
    assert sais(settings_env, "eligibility", "statistics", "2017/18", "--out", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600 and "NO personal data" in out.read_text()
    link = tmp_path / "link.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    refused = sais(settings_env, "eligibility", "statistics", "2017/18", "--out", str(link))
    assert refused.returncode == 2 and not (tmp_path / "elsewhere.csv").exists()
