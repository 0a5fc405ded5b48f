"""An extract is all or nothing, through the real CLI and the four running services: a file that fails
anywhere (a cell over the cap mid-file, a workbook with a 20 MB address, a reader error mid-file, the CLI
killed mid-file) leaves none of its children in any cohort, delivery member or message; `sais status`
shows it refused or failed with its reason; retention deletes what it left at once, with a certificate."""

import csv
import email
import json
import os
import signal
import subprocess

import pytest

from tests.e2e.test_pipeline import SAIS, Pipeline, wait_sql
from tests.helpers import REPO, openssl_open, oracle
from tests.integration.test_pipeline_services import fetchrow, fetchval
from tests.synthetic import write_samples

pytestmark = pytest.mark.e2e
REF = "2017-05-18"


def letters(n: int) -> str:
    out = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        out = chr(97 + r) + out
    return out


def marked(rows: list[list[str]], header: list[str], tag: str) -> list[list[str]]:
    """The same children under surnames that say which bad file they came from (Badx + letters)."""
    col = header.index("Legal Surname")
    return [[*r[:col], f"Bad{tag}{letters(i)}", *r[col + 1 :]] for i, r in enumerate(rows)]


def grow_cell(path, old: str, new: str) -> None:
    """Rewrite a workbook with one cell's text replaced (the sheet part rewritten, the rest copied)."""
    import zipfile

    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.startswith("xl/worksheets/"):
                data = data.replace(old.encode(), new.encode())
            dst.writestr(info.filename, data)
    tmp.replace(path)


def write_csv(path, header, rows) -> None:
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def sais(env, *args, as_of="2017-06-01") -> subprocess.CompletedProcess:
    return subprocess.run(
        [SAIS, *args], env={**env, "SAIS_AS_OF": as_of}, capture_output=True, text=True, stdin=subprocess.DEVNULL
    )


def ingest_args(path) -> list[str]:
    return ["ingest", "file", str(path), "--source", "summer-census", "--reference-date", REF]


async def test_a_file_that_fails_anywhere_sends_none_of_its_children(env, infra, tmp_path):
    import openpyxl

    dsn = env["SAIS_DATABASE_URL"]
    samples = write_samples(tmp_path / "data", seed=24, per_year=625)  # 2,501 rows: R, 1, 2, 3 and one Year 4
    may = samples["summer-census"]
    with open(may, encoding="utf-8-sig", newline="") as f:
        header, *rows = list(csv.reader(f))
    addr = header.index("Address Line 1")
    assert len(rows) >= 2_500

    files = {}
    # 1. a cell longer than the cap (32,767 characters) after 2,500 good rows: refused mid-file
    files["long"] = tmp_path / "long-cell.csv"
    bad = marked(rows, header, "l")
    write_csv(files["long"], header, [*bad, [*bad[0][:addr], "x" * 40_000, *bad[0][addr + 1 :]]])
    # 2. a workbook of 2,500 good rows and one 20 MB address (it once made the broker refuse a message)
    files["xlsx"] = tmp_path / "huge-address.xlsx"
    wb = openpyxl.Workbook(write_only=True)
    ws = wb.create_sheet()
    ws.append(header)
    bad = marked(rows, header, "x")
    for r in bad:
        ws.append(r)
    ws.append([*bad[0][:addr], "y" * 32_767, *bad[0][addr + 1 :]])  # openpyxl writes at most Excel's 32,767
    wb.save(files["xlsx"])
    grow_cell(files["xlsx"], "y" * 32_767, "y" * 20_000_000)  # as a program that ignores the limit writes it
    # 3. a reader error after 2,300 good rows (a line of 1.2 million characters: "a," over and over)
    files["line"] = tmp_path / "endless-line.csv"
    bad = marked(rows, header, "n")
    write_csv(files["line"], header, [*bad[:2_300], ["a"] * 600_000, *bad[2_300:]])
    # 4. the CLI killed mid-file (a larger file, so the kill lands while it reads)
    big = write_samples(tmp_path / "big", seed=25, per_year=5_000)["summer-census"]
    with open(big, encoding="utf-8-sig", newline="") as f:
        big_header, *big_rows = list(csv.reader(f))
    files["kill"] = tmp_path / "killed.csv"
    write_csv(files["kill"], big_header, marked(big_rows, big_header, "k"))

    env = {**env, "SAIS_INGEST_SWEEP_INTERVAL_S": "0.5"}
    p = Pipeline(env, tmp_path)
    p.start()
    try:
        for name, code, says in (
            ("long", "file.field-too-long", "longer than 32,767 characters"),
            ("xlsx", None, ""),
            ("line", "file.line-too-long", "longer than 1,000,000 characters"),
        ):
            r = sais(p.env, *ingest_args(files[name]), "--json")
            assert r.returncode == 2, (name, r.returncode, r.stdout, r.stderr[-2000:])
            doc = json.loads(r.stdout)  # the documented shape, naming the cause
            assert set(doc) == {"error", "exit_code", "message"} and doc["exit_code"] == 2, doc
            assert says in doc["message"] and ("workbook" in doc["message"] or "longer than" in doc["message"]), doc
            row = await fetchrow(dsn, "SELECT status, failure_code, failure, published FROM ingest.extracts "
                "WHERE file_name=$1", files[name].name,
            )  # fmt: skip
            assert row["status"] == "refused" and (code is None or row["failure_code"] == code), (name, dict(row))
            if name != "xlsx":
                assert row["published"] >= 2_000, "the failure must come after rows were published"

        killed = subprocess.Popen(
            [SAIS, *ingest_args(files["kill"])],
            env={**p.env, "SAIS_AS_OF": "2017-06-01"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        await wait_sql(
            dsn,
            "SELECT count(*) >= 2000 FROM ingest.row_index i JOIN ingest.extracts e USING (extract_id) "
            "WHERE e.file_name = 'killed.csv'",
        )
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait()
        published = await fetchval(dsn, "SELECT count(*) FROM ingest.row_index i JOIN ingest.extracts e "
                                "USING (extract_id) WHERE e.file_name='killed.csv'")  # fmt: skip
        assert published < len(big_rows), "the kill must land mid-file for this test to mean anything"
        # the ingest service sees that no process holds it any more, and ends it
        await wait_sql(dsn, "SELECT status = 'failed' FROM ingest.extracts WHERE file_name='killed.csv'")

        # retention deletes what each of the four left, at once: data key destroyed, owners' rows, certificate
        await wait_sql(
            dsn, "SELECT count(*) = 4 FROM retention.certificates WHERE rule='extract-refused-or-failed-at-once'", 120
        )
        keys = await fetchval(dsn, "SELECT count(*) FROM shared.data_keys k JOIN ingest.extracts e USING (key_id) "
            "WHERE e.status IN ('refused', 'failed') AND k.wrapped IS NOT NULL",
        )  # fmt: skip
        assert keys == 0

        # `sais status` says what happened to each, in words
        r = sais(p.env, "status", "--json", as_of="2017-07-10")
        view = json.loads(r.stdout)
        ended = {e["file_name"]: e for e in view["extracts"]}
        for name in files.values():
            assert ended[name.name]["status"] in ("refused", "failed") and ended[name.name]["failure"], ended
        assert "abandoned" in ended["killed.csv"]["failure_code"]

        # a good extract after them goes through, and the message holds none of the bad files' children;
        # its one row repeated exactly is one child, and twins (another forename) stay two
        fore = header.index("Legal Forename")
        twin = [*rows[1][:fore], "Zebedee", *rows[1][fore + 1 :]]
        good_file = tmp_path / "may-good.csv"
        write_csv(good_file, header, [*rows, rows[0], twin])
        r = sais(p.env, *ingest_args(good_file), "--json")
        assert r.returncode == 0, r.stdout + r.stderr[-2000:]
        report = json.loads(r.stdout)
        good = report["extract_id"]
        assert report["repeated"] == 1 and report["accepted"] == report["rows_in"] - 1 - report["rejected"] - report[
            "out_of_scope"]  # fmt: skip
        await wait_sql(dsn, f"SELECT reconciled_at IS NOT NULL FROM eligibility.extracts WHERE extract_id='{good}'")
        await wait_sql(
            dsn,
            "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active') AND "
            "(SELECT count(*) FROM eligibility.outbox) = 0",
        )
        assert await fetchval(dsn, "SELECT count(*) FROM eligibility.records WHERE extract_id <> $1",
                           good) == 0  # fmt: skip
        before = await fetchval(dsn, "SELECT count(*) FROM delivery.members WHERE status='active'")

        # an extract ingested by mistake is taken back: its children leave the cohort before the next batch
        r = sais(p.env, "ingest", "file", str(samples["admissions-reception"]), "--source", "admissions-reception",
                 "--reference-date", "2017-04-18", "--json")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        wrong = json.loads(r.stdout)["extract_id"]
        await wait_sql(dsn, f"SELECT reconciled_at IS NOT NULL FROM eligibility.extracts WHERE extract_id='{wrong}'")
        await wait_sql(dsn, f"SELECT count(*) > {before} FROM delivery.members WHERE status='active'")
        r = sais(p.env, "ingest", "withdraw", wrong, "--reason", "not ours to send: the wrong LA's file")
        assert r.returncode == 0, r.stdout + r.stderr[-2000:]
        await wait_sql(dsn, f"SELECT count(*) = {before} FROM delivery.members WHERE status='active'")
        audited = await fetchval(dsn, "SELECT count(*) FROM shared.audit_log WHERE action='extract.withdrawn'")
        assert audited == 1
        p.cli(
            "schools", "load", str(REPO / "data" / "reference" / "gias-establishments-sample.csv"), as_of="2017-07-10"
        )
        sent = json.loads(p.cli("delivery", "send", "--window", "july", "--academic-year", "2017/18", "--json",
                                as_of="2017-07-10"))  # fmt: skip
    finally:
        p.stop()

    delivered: dict[str, int] = {}
    names: list[str] = []
    d, m, y = rows[0][header.index("DOB")].split("/")
    repeated = (rows[0][header.index("Legal Forename")], rows[0][header.index("Legal Surname")])
    born = {rows[0][header.index("DOB")], f"{y}-{m}-{d}"}  # as the source wrote it, or ISO
    seen: dict[str, int] = {}  # file → rows of the child whose row was repeated
    [msg] = [m for m in infra.maildir.glob("*.eml") if sent["message_id"].encode() in m.read_bytes()]
    inner = email.message_from_bytes(openssl_open(msg, infra.pki))
    for part in inner.walk():
        name = part.get_filename()
        if name and name.endswith("-2017-18.csv"):
            got = list(csv.DictReader(part.get_payload(decode=True).decode("utf-8-sig").splitlines()))
            seen[name] = sum(set(repeated) <= set(r.values()) and bool(born & set(r.values())) for r in got)
            if not name.startswith("mavis"):
                delivered[name.removesuffix("-2017-18.csv")] = len(got)
            names += [v for r in got for v in r.values()]
    assert delivered == oracle({"summer-census": good_file})  # exactly the good extract's children, once each
    assert not [v for v in names if v.startswith("Bad")]  # none of the failed files' children
    assert seen and set(seen.values()) == {1}, seen  # the repeated row's child: once in every file
