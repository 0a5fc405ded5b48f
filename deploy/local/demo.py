"""`make demo`: the whole pipeline on the bundled synthetic extracts, with real Kafka, PostgreSQL
and SMTP, then the delivered messages decrypted and verified with the stock openssl CLI.

Business dates follow the ISP's 2017 cycle (SAIS_AS_OF per step): the May census and admissions
are ingested in June and delivered in July; the October census in October, delivered in December.
Exit code 0 only if every step really happened and the numbers agree.
"""

from __future__ import annotations

import csv
import email
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import asyncpg  # noqa: F401  (the venv is required)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import stack

SAMPLES = REPO / "data" / "samples"
REGISTER = REPO / "data" / "reference" / "gias-establishments-sample.csv"  # fictional, GIAS's columns
EXTRACTS = [
    ("may-census-2017.csv", "summer-census", "2017-05-18", "2017-06-01"),
    ("admissions-reception-2017.csv", "admissions-reception", "2017-04-18", "2017-06-01"),
]
TRANSFERS = ("admissions-year3-transfer-2017.csv", "admissions-year3-transfer", "2017-04-18")
OCTOBER = ("october-census-2017.csv", "autumn-census", "2017-10-05", "2017-10-12")


def http_port(service: str, env: dict[str, str]) -> int:
    """Where a service's /metrics is: the first of its port settings' names set in ``env``, else its
    default (the names and their order as its settings class declares them)."""
    import importlib

    config = importlib.import_module(f"sais_{service}.config")
    cls = next(c for n, c in vars(config).items() if n.endswith("Settings") and n != "CommonSettings")
    field = cls.model_fields["http_port"]
    names = field.validation_alias.choices if field.validation_alias else ["SAIS_HTTP_PORT"]
    return int(next((env[n] for n in names if env.get(n)), field.default))


def step(msg: str) -> None:
    print(f"\n\033[1m==> {msg}\033[0m", flush=True)


def fail(msg: str) -> None:
    print(f"\n\033[31mDEMO FAILED: {msg}\033[0m", flush=True)
    raise SystemExit(1)


class Demo:
    def __init__(self) -> None:
        self.lay = stack.layout()
        self.run_id = time.strftime("%Y%m%d%H%M%S")
        self.db = os.environ.get("SAIS_DEMO_DATABASE", "sais_demo")  # a test gives its own
        self.logs = self.lay.state / "demo" / self.run_id
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **self.lay.env(),
            "SAIS_DATABASE_URL": self.lay.admin_dsn(self.db),
            "SAIS_TOPIC_PREFIX": os.environ.get("SAIS_DEMO_TOPIC_PREFIX", f"demo-{self.run_id}"),  # groups follow it
            "SAIS_LOG_FORMAT": "json",
            "SAIS_ACTOR": "Demo Operator (make demo)",  # every command that changes something names its person
            "SAIS_DELIVERY_SMTP_BACKOFF_S": "0.5",
            "SAIS_RETENTION_INTERVAL_S": "2",
            "COLUMNS": "120",
        }
        self.services: dict[str, subprocess.Popen] = {}
        self.started_stack = False

    def sais(self, *args: str, as_of: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**self.env, "SAIS_AS_OF": as_of}
        with open(self.logs / "cli.log", "a") as log:
            p = subprocess.run(
                [str(REPO / ".venv" / "bin" / "sais"), *args], env=env, stdout=subprocess.PIPE, stderr=log, text=True
            )
        if check and p.returncode != 0:
            fail(f"`sais {' '.join(args)}` exited {p.returncode}; see {self.logs / 'cli.log'}\n{p.stdout}")
        return p

    def psql(self, sql: str) -> str:
        return stack.psql(self.lay, sql, self.db)

    def start(self) -> None:
        step("Starting Apache Kafka, PostgreSQL and the SMTP server (local runner)")
        self.started_stack = stack.status(self.lay) != 0
        stack.start(self.lay)
        stack.fresh_database(self.lay, self.db)
        stack.setup_kafka(self.env)
        step("Starting the four services: ingest (inbound topic), eligibility, delivery, retention")
        for name in ("ingest", "eligibility", "delivery", "retention"):
            out = open(self.logs / f"{name}.log", "w")  # noqa: SIM115 - a child process's log, open as long as it runs
            self.services[name] = subprocess.Popen(
                [str(REPO / ".venv" / "bin" / "python"), "-m", f"sais_{name}"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**self.env, "SAIS_AS_OF": "2017-07-10"},
                start_new_session=True,
            )
            port = http_port(name, self.env) or "(a port the kernel chose)"
            print(f"    sais-{name} pid {self.services[name].pid}, :{port}/metrics, log {self.logs / (name + '.log')}")

    def wait_for(self, what: str, sql: str, expected: str, timeout: float = 90, shown: str | None = None) -> None:
        """Poll ``sql`` until it returns ``expected``; then print ``what`` with the result of ``shown``
        (a query of the real count) or of ``sql`` itself."""
        deadline = time.monotonic() + timeout
        got = ""
        while time.monotonic() < deadline:
            for name, p in self.services.items():
                if p.poll() is not None:
                    fail(f"sais-{name} exited with {p.returncode}; see {self.logs / (name + '.log')}")
            try:
                got = self.psql(sql)
            except subprocess.CalledProcessError:
                got = "(not ready)"
            if got == expected:
                print(f"    {what}: {self.psql(shown) if shown else got}")
                return
            time.sleep(0.5)
        fail(f"timed out waiting for {what}: got {got!r}, expected {expected!r}")

    def ingest(self, name: str, source: str, ref: str, as_of: str) -> dict:
        p = self.sais(
            "ingest", "file", str(SAMPLES / name), "--source", source, "--reference-date", ref, "--json", as_of=as_of
        )
        rep = json.loads(p.stdout)
        if not rep["balanced"]:
            fail(f"{name}: rows do not add up")
        if rep["duplicate"]:
            print(f"    {name:38} same content as extract {rep['extract_id']}: 0 rows published")
            return rep
        print(
            f"    {name:38} rows {rep['rows_in']:3} = accepted {rep['accepted']:3} + rejected {rep['rejected']} "
            f"+ out of scope {rep['out_of_scope']}; dropped columns: {', '.join(rep['dropped_columns']) or '-'}"
        )
        for r in rep["rejections"]:
            print(f"        row {r['row_number']}: {r['field']}: {r['reason']}")
        return rep

    def publish_inbound(self, name: str, source: str, ref: str) -> None:
        """As an upstream admissions system would: the extract as sealed events on the inbound topic."""
        rows = list(csv.DictReader((SAMPLES / name).read_text(encoding="utf-8").splitlines()))
        n = stack.publish_inbound(self.env, rows, extract_ref=f"adm-{name}", source=source, reference_date=ref,
                                  originator="Admissions system (demo)")  # fmt: skip
        print(
            f"    published {name} as {n} sealed events (extract-started, {len(rows)} records, "
            "extract-completed with count and checksum)"
        )
        self.wait_for(
            "rows the ingest service accepted from the complete extract",
            f"SELECT status FROM ingest.inbound_extracts WHERE extract_ref='adm-{name}'",
            "ingested",
            shown="SELECT e.accepted FROM ingest.inbound_extracts i JOIN ingest.extracts e "
            f"USING (extract_id) WHERE i.extract_ref='adm-{name}'",
        )

    def settle(self) -> None:
        """Eligibility has recorded every accepted row and delivery holds every cohort record."""
        accepted = self.psql("SELECT coalesce(sum(accepted),0) FROM ingest.extracts WHERE purged_at IS NULL")
        self.wait_for("pupil records in eligibility", "SELECT count(*) FROM eligibility.records", accepted)
        self.wait_for(  # all or nothing: a record counts once its whole extract is released
            "every completed extract released by eligibility",
            "SELECT NOT EXISTS (SELECT FROM ingest.extracts i WHERE i.status='completed' AND i.purged_at IS NULL "
            "AND NOT EXISTS (SELECT FROM eligibility.extracts e WHERE e.extract_id=i.extract_id "
            "AND e.reconciled_at IS NOT NULL))",
            "t",
            shown="SELECT count(*) FROM ingest.extracts WHERE status='completed' AND purged_at IS NULL",
        )
        self.wait_for(
            "cohort records held by delivery (all of eligibility's, none still in its outbox)",
            "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active') "
            "AND (SELECT count(*) FROM eligibility.outbox) = 0",
            "t",
            shown="SELECT count(*) FROM delivery.members WHERE status='active'",
        )

    def deliver(self, window: str, as_of: str) -> dict:
        p = self.sais("delivery", "send", "--window", window, "--academic-year", "2017/18", "--json", as_of=as_of)
        res = json.loads(p.stdout)
        print(f"    batch {res['batch_id']} → {res['recipient']}  counts {res['counts']}  delete by {res['delete_by']}")
        return res

    def open_message(self, message_id: str) -> tuple[dict[str, bytes], str]:
        """Find the message in the SMTP server's store, decrypt and verify it with openssl."""
        path = next((p for p in sorted(self.lay.maildir.glob("*.eml")) if message_id.encode() in p.read_bytes()), None)
        if path is None:
            fail(f"no message {message_id} reached the SMTP server")
        raw = path.read_bytes()
        tls = raw.split(b"\r\n", 1)[0].decode()
        pki = self.lay.pki
        dec = subprocess.run(
            [
                "openssl",
                "cms",
                "-decrypt",
                "-in",
                str(path),
                "-recip",
                str(pki / "recipient.pem"),
                "-inkey",
                str(pki / "recipient.key"),
            ],
            capture_output=True,
        )
        if dec.returncode:
            fail(f"openssl could not decrypt {path}: {dec.stderr.decode()}")
        ver = subprocess.run(
            ["openssl", "cms", "-verify", "-CAfile", str(pki / "ca.pem")], input=dec.stdout, capture_output=True
        )
        if ver.returncode:
            fail(f"openssl could not verify the signature: {ver.stderr.decode()}")
        print(f"    {path.name}: {tls}; openssl: decrypted, {ver.stderr.decode().strip()}")
        msg = email.message_from_bytes(ver.stdout)
        files = {part.get_filename(): part.get_payload(decode=True) for part in msg.walk() if part.get_filename()}
        return files, tls

    def check_batch(self, res: dict) -> dict[str, list[dict]]:
        files, _ = self.open_message(res["message_id"])
        manifest = json.loads(files["manifest.json"])
        import hashlib

        out: dict[str, list[dict]] = {}
        for f in manifest["files"]:
            if hashlib.sha256(files[f["name"]]).hexdigest() != f["sha256"]:
                fail(f"{f['name']}: sha256 does not match the manifest")
        for key, n in res["counts"].items():
            name = next(n_ for n_ in files if n_.startswith(key + "-"))
            rows = list(csv.DictReader(io.StringIO(files[name].decode("utf-8-sig"))))
            if len(rows) != n:
                fail(f"{name} has {len(rows)} rows, the batch says {n}")
            out[key] = rows
        print(
            f"    manifest: marking '{manifest['protective_marking']}', originator '{manifest['originator']}', "
            f"protocol v{manifest['protocol']['version']}, {len(manifest['files'])} files, hashes match"
        )
        self.check_mavis(files, manifest)
        return out

    def check_mavis(self, files: dict[str, bytes], manifest: dict) -> None:
        """The Mavis cohort-import files, as the SAIS team would load them: counted, and checked with
        Mavis's import rules (and the register's URNs)."""
        names = sorted(n for n in files if n.startswith("mavis-"))
        if not names:
            fail("no Mavis cohort-import file in the message")
        folder = self.logs / "mavis"
        folder.mkdir(exist_ok=True)
        for n in names:
            (folder / n).write_bytes(files[n])
        (folder / "manifest.json").write_bytes(files["manifest.json"])
        meta = manifest["mavis_cohort_import"]
        print(
            f"    Mavis files for {meta['academic_year']}: upload from {meta['upload_from']} (year groups are read "
            "against the academic year of the upload day)"
        )
        p = self.sais("delivery", "check-mavis", *(str(folder / n) for n in names), "--manifest",
                      str(folder / "manifest.json"), "--register", str(REGISTER), "--json", as_of="2017-07-10",
                      check=False)  # fmt: skip
        checked = json.loads(p.stdout)
        for n in names:
            c = checked[str(folder / n)]
            print(f"    {n}: {c['rows']} rows; Mavis's import rules: {'pass' if c['ok'] else 'REFUSED'}")
        if p.returncode != 0:
            fail(f"a Mavis file would be refused: {p.stdout}")
        for r in manifest["mavis_cohort_import"]["left_out"]:
            print(
                f"    left out of the Mavis file: {r['rows']} {r['programme']} row(s) of {r['school_dfe']}: {r['reason']}"
            )

    def held(self, when: str, expect: int) -> None:
        """The cohort records and destroyed data keys at this point of the calendar; fails if the
        records held are not what the schedule says."""
        left = int(self.psql("SELECT count(*) FROM delivery.members WHERE status='active'"))
        destroyed = self.psql("SELECT count(*) FROM shared.data_keys WHERE wrapped IS NULL")
        print(f"    {when}: cohort records held {left}; data keys destroyed so far {destroyed}")
        if left != expect:
            fail(f"{when}: {left} cohort records held, expected {expect}")

    def summary(self, cohorts: dict[str, list[dict]]) -> None:
        step("Pupils per programme and school (read back from the decrypted files)")
        for key, rows in sorted(cohorts.items()):
            per = Counter((r["School name"], r["Year group"]) for r in rows)
            print(f"  {key}: {len(rows)} pupils")
            for (school, yg), n in sorted(per.items()):
                label = "Reception" if yg == "R" else f"Year {yg}"
                print(f"      {school:40} {label:9} {n:3}")

    def stop(self) -> None:
        stack.stop_processes(self.services.values(), timeout=20)
        import asyncio

        # its topics go with it (the database stays until the next run, to look at): a broker that kept
        # every run's topics would answer metadata requests ever slower
        asyncio.run(stack.delete_topics(self.env, prefix=self.env["SAIS_TOPIC_PREFIX"]))
        if self.started_stack:
            stack.stop(self.lay)
        else:
            print("[stack] left running: it was running before the demo")

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            self.start()
            step("Loading the schools register from a GIAS establishment export (a fictional sample)")
            print(self.sais("schools", "load", str(REGISTER), as_of="2017-06-01").stdout)
            step("Ingesting the May census and the reception admissions file with the CLI (as of 1 June 2017)")
            for e in EXTRACTS:
                self.ingest(*e)
            step("The Year 3 transfers arrive as events from the admissions system (the ingest service)")
            self.publish_inbound(*TRANSFERS)
            step("Ingesting the same May census again: recognised by content hash, nothing published")
            again = self.ingest(*EXTRACTS[0])
            if not again["duplicate"]:
                fail("a re-ingested file was not recognised")
            step("Waiting for eligibility (roll-forward, matching, 2017/18 rules) and delivery to catch up")
            self.settle()
            print(self.sais("eligibility", "quality", "2017/18", as_of="2017-07-10").stdout)
            step("Delivering the July window (S/MIME over SMTP with STARTTLS), as of 10 July 2017")
            july = self.deliver("july", "2017-07-10")
            step("Opening what the SAIS mailbox received with the stock openssl CLI")
            cohorts = self.check_batch(july)
            self.wait_for("the July transfer scheduled for deletion",
                          "SELECT count(*) FROM retention.schedule WHERE subject LIKE 'batch:%'", "1")  # fmt: skip
            step("Running retention as of 11 October 2017: the July transfer is due (10 July + 3 months)")
            print(
                "    (data keys destroyed at once; ingest, eligibility and delivery each delete their own rows and "
                "confirm; the certificate follows)"
            )
            print(self.sais("retention", "run", "--now", "2017-10-11", "--wait", "60", as_of="2017-10-11").stdout)
            self.held("after the July transfer's deletion", expect=0)
            step("Ingesting the October census (as of 12 October 2017)")
            self.ingest(*OCTOBER)
            self.settle()
            step("Delivering the December window, as of 4 December 2017")
            december = self.deliver("december", "2017-12-04")
            step("Opening what the SAIS mailbox received with the stock openssl CLI")
            cohorts.update(self.check_batch(december))
            self.summary(cohorts)
            self.wait_for("the December transfer scheduled for deletion",
                          "SELECT count(*) FROM retention.schedule WHERE subject LIKE 'batch:%'", "2")  # fmt: skip
            step("Retention schedule on 4 December 2017 (ISP §11.1: transfer date + 3 months)")
            print(self.sais("retention", "schedule", as_of="2017-12-04").stdout)
            self.held("while December's transfer is held", expect=sum(december["counts"].values()))
            step("Pipeline status (`sais status`, as of 4 December 2017)")
            print(self.sais("status", as_of="2017-12-04", check=False).stdout)
            step("Running retention as of 5 March 2018: the December transfer is due (4 December + 3 months)")
            print(self.sais("retention", "run", "--now", "2018-03-05", "--wait", "60", as_of="2018-03-05").stdout)
            print(self.sais("retention", "requests", as_of="2018-03-05").stdout)
            self.held("after the December transfer's deletion", expect=0)
            step(f"Done in {time.monotonic() - t0:.0f}s: every step happened and the numbers agree. Logs: {self.logs}")
        finally:
            self.stop()


if __name__ == "__main__":
    Demo().run()
