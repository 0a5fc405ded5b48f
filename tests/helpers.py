"""Helpers for integration tests: read topics from the beginning, scan for personal data."""

from __future__ import annotations

import asyncio
import csv
import socket
import subprocess
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from sais_shared.crypto import DataKey
from sais_shared.events import ExtractCompleted, stable_id

REPO = Path(__file__).resolve().parents[1]


def readme_block(heading: str, first: str) -> list[str]:
    """The lines of the first ```bash block under README heading ``heading`` that starts with ``first``."""
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text[text.index(heading) :]
    block = re.search(rf"```bash\n({re.escape(first)}.*?)```", section, re.S)
    assert block, f"the README's {heading!r} section has no ```bash block starting with {first}"
    return block.group(1).strip().splitlines()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing holds now, chosen by the kernel (never a fixed number)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def private_smtpd(infra, maildir: Path, *options: str, tls: bool = True):
    """A test's own SMTP server process (STARTTLS with the dev certificate, unless ``tls`` is off) on a
    free port, with extra smtpd.py options (``--user``/``--password``, ``--max-size``, ``--no-tls``);
    yields its port, stops it after."""
    import sys

    port = free_port()
    cert = ["--cert", str(infra.pki / "smtp-server.pem"), "--key", str(infra.pki / "smtp-server.key")] if tls else []
    server = subprocess.Popen(
        [sys.executable, str(REPO / "deploy" / "local" / "smtpd.py"), "--port", str(port), "--maildir", str(maildir),
         *cert, *options],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert b"listening" in server.stdout.readline()  # it says so once it accepts connections
        yield port
    finally:
        server.terminate()
        server.wait()


async def create_topic(kafka: dict, topic: str, partitions: int = 1) -> str:
    """A topic for one test, made by the administrator (the broker never creates topics itself)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
    finally:
        await admin.close()
    return topic


@dataclass(frozen=True)
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


async def read_topic(kafka: dict, topic: str, timeout: float = 10.0) -> list[Rec]:
    """Every record currently in a topic (all partitions), from the beginning; ``kafka`` holds the
    client's connection arguments (``infra.kafka``: the administrator)."""
    consumer = AIOKafkaConsumer(**kafka, enable_auto_commit=False, isolation_level="read_committed")
    await consumer.start()
    try:
        parts = (await consumer._client.fetch_all_metadata()).partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        out: list[Rec] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout

        async def behind() -> bool:
            for tp in tps:
                if await consumer.position(tp) < end[tp]:
                    return True
            return False

        while await behind():
            if loop.time() > deadline:
                raise AssertionError(f"could not read {topic} to its end")
            batch = await consumer.getmany(timeout_ms=500, max_records=5000)
            for recs in batch.values():
                out += [Rec(r.topic, r.partition, r.offset, r.key, r.value) for r in recs]
        return out
    finally:
        await consumer.stop()


async def cohort_member_events(kafka: dict, topic: str, timeout: float = 10.0) -> list:
    """The cohort topic's member events (adds, updates, withdrawals), without eligibility's coverage checks."""
    from sais_shared.events import CoverageChecked, cohort_event_adapter

    events = [cohort_event_adapter.validate_json(r.value) for r in await read_topic(kafka, topic, timeout)]
    return [e for e in events if not isinstance(e, CoverageChecked)]


def personal_values(csv_path: Path) -> set[str]:
    """Names, dates of birth (as written and ISO), first address lines and postcodes in an input file.
    Town and county are left out: alone they identify nobody (and "Warwickshire" is in the originator)."""
    values: set[str] = set()
    enc = "utf-8-sig"
    try:
        text = csv_path.read_text(encoding=enc)
    except UnicodeDecodeError:
        text = csv_path.read_text(encoding="cp1252")
    for row in csv.DictReader(text.splitlines()):
        for k, v in row.items():
            k = (k or "").lower()
            v = (v or "").strip()
            if len(v) < 4:
                continue
            if any(
                w in k
                for w in (
                    "surname",
                    "forename",
                    "first name",
                    "address line 1",
                    "address 1",
                    "street",
                    "post",
                    "dob",
                    "birth",
                )
            ):
                values.add(v)
                if "dob" in k or "birth" in k:
                    try:
                        d, m, y = v.split("/")
                        values.add(date(int(y), int(m), int(d)).isoformat())
                    except ValueError:
                        pass
    return values


async def all_table_text(
    dsn: str, schemas: tuple[str, ...] = ("ingest", "eligibility", "delivery", "retention", "shared")
) -> str:
    """Every row of every table in these schemas, as text."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = ANY($1) "
            "AND table_type='BASE TABLE'",
            list(schemas),
        )
        parts = []
        for t in tables:
            rows = await conn.fetch(f'SELECT t::text AS x FROM "{t["table_schema"]}"."{t["table_name"]}" t')
            parts += [r["x"] for r in rows]
        return "\n".join(parts)
    finally:
        await conn.close()


def mail_to(maildir: Path, address: str) -> list[Path]:
    """The messages the test SMTP server took for ``address`` (its X-Local-Smtpd-Rcpt header)."""
    out = []
    for m in maildir.glob("*.eml"):
        raw = m.read_bytes()
        if b"X-Local-Smtpd-Rcpt: " in raw:
            rcpts = raw.split(b"X-Local-Smtpd-Rcpt: ", 1)[1].split(b"\r\n", 1)[0].decode().split(",")
            if address in rcpts:
                out.append(m)
    return out


def openssl_open(message: Path, pki: Path) -> bytes:
    """Decrypt with the recipient key and verify the signature against the CA, with stock openssl."""
    dec = subprocess.run(
        [
            "openssl",
            "cms",
            "-decrypt",
            "-in",
            str(message),
            "-recip",
            str(pki / "recipient.pem"),
            "-inkey",
            str(pki / "recipient.key"),
        ],
        capture_output=True,
        check=True,
    )
    ver = subprocess.run(
        ["openssl", "cms", "-verify", "-CAfile", str(pki / "ca.pem")], input=dec.stdout, capture_output=True
    )
    assert ver.returncode == 0, ver.stderr.decode()
    assert b"Verification successful" in ver.stderr
    check_mavis_files(ver.stdout)
    return ver.stdout


def check_mavis_files(mime: bytes, known_urns: set[str] | None = None) -> int:
    """Every Mavis cohort-import file of a delivered message passes Mavis's import rules on the first
    day the manifest says it may be uploaded, for the team it names (so every test that opens a message
    checks them); how many there were."""
    import email
    import json
    from datetime import date

    from sais_delivery.domain import mavis_rules as rules
    from sais_shared.schoolyear import academic_year_label

    parts = {p.get_filename(): p.get_payload(decode=True) for p in email.message_from_bytes(mime).walk()
             if p.get_filename()}  # fmt: skip
    names = [n for n in parts if n.startswith("mavis-")]
    if not names:
        return 0
    meta = json.loads(parts["manifest.json"])["mavis_cohort_import"]
    year = rules.import_academic_year(date.fromisoformat(meta["upload_from"]))
    assert academic_year_label(year) == meta["academic_year"], meta  # read as the year it was written for
    team = rules.Team(
        schools=frozenset(meta["team"]["schools"]) if meta["team"]["schools"] is not None else None,
        year_groups=frozenset(meta["team"]["year_groups"]),
        known_urns=frozenset(known_urns) if known_urns is not None else None,
    )
    for name in names:
        result = rules.check_file(parts[name], academic_year=year, team=team)
        assert result.ok, (name, result.problems)
        assert result.rows <= meta["max_rows_per_file"]
    return len(names)


def oracle(source_files: dict[str, Path]) -> dict[str, int]:
    """Children per programme, counted straight from the input files (simple rules of the ISP)."""
    children: dict[str, set] = {
        "flu": set(),
        "hpv-dose-1": set(),
        "hpv-dose-2": set(),
        "td-ipv": set(),
        "menacwy": set(),
    }
    for source, path in source_files.items():
        raw = path.read_bytes()
        text = raw.decode("utf-8-sig") if source != "admissions-reception" else raw.decode("cp1252")
        for row in csv.DictReader(text.splitlines()):
            r = {k.lower(): v.strip() for k, v in row.items()}
            dob = r.get("dob") or r.get("date of birth")
            if "/" in dob and len(dob.split("/")[-1]) != 4:
                continue
            if (r.get("postcode") or r.get("post code", "")).upper().endswith("ZZZ"):
                continue
            who = (
                (r.get("legal forename") or r.get("forename") or r.get("first name")).lower(),
                (r.get("legal surname") or r.get("surname")).lower(),
                dob,
            )
            yg = (r.get("ncyearactual") or r.get("year group") or r.get("nc year")).lower()
            yg = yg.replace("year", "").replace("y", "").strip()
            sex = (r.get("gender") or r.get("sex"))[0].upper()
            if (source == "summer-census" and yg in {"r", "reception", "1", "2", "3"}) or source.startswith(
                "admissions"
            ):
                children["flu"].add(who)
            elif source == "autumn-census":
                if yg == "8" and sex == "F":
                    children["hpv-dose-1"].add(who)
                if yg == "9":
                    children["td-ipv"].add(who)
                    children["menacwy"].add(who)
                    if sex == "F":
                        children["hpv-dose-2"].add(who)

    # A transfer child appears in the May census too, with the DOB written differently: normalise.
    def norm(w):
        f, s, d = w
        if "/" in d:
            dd, mm, yy = d.split("/")
            d = f"{yy}-{int(mm):02d}-{int(dd):02d}"
        return (f, s, d)

    return {k: len({norm(w) for w in v}) for k, v in children.items() if v}


def after_background_build(tool: str) -> None:
    """`make test` builds kustomize and fetches the AsyncAPI parser in the background while the tests start
    (deploy/local/run-tests.sh): each job holds a lock on its file until it has finished; taking that lock
    here waits for it (at once when the job is done, or when the tests run without make test)."""
    import fcntl
    import os

    lock = os.environ.get(f"SAIS_TEST_{tool.upper()}_LOCK")
    if lock and Path(lock).exists():
        with open(lock) as f:
            fcntl.flock(f, fcntl.LOCK_SH)


@asynccontextmanager
async def service_pool(migrations):
    """A pool on the session's database with the service's migrations applied (the settings of the
    ``settings_env`` fixture), for a contract test of its PostgreSQL adapter."""
    from sais_shared.runtime import open_runtime
    from sais_shared.settings import CommonSettings

    rt = await open_runtime(CommonSettings(), *migrations)
    try:
        yield rt.pool
    finally:
        await rt.close()


def extract_completed(
    extract_id: UUID,
    key: DataKey | UUID,
    accepted: int,
    supersedes: UUID | None = None,
    *,
    source: str = "summer-census",
    ref: date = date(2017, 5, 18),
    year: str = "2017/18",
    digest: str | None = None,
) -> ExtractCompleted:
    """The extract-completed event ingest sends for an extract of ``accepted`` rows, sealed under ``key``."""
    return ExtractCompleted(
        event_id=stable_id("extract-completed", extract_id),
        occurred_at=datetime(2017, 6, 1, tzinfo=UTC),
        extract_id=extract_id,
        source=source,
        reference_date=ref,
        target_academic_year=year,
        content_sha256="0" * 64,
        rows_in=accepted,
        accepted=accepted,
        rejected=0,
        out_of_scope=0,
        warnings=0,
        supersedes=supersedes,
        key_id=key if isinstance(key, UUID) else key.key_id,
        originator="LA",
        protocol_version="0.2",
        ingested_by="test",
        records_digest=digest,
    )
