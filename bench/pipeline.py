"""Benchmark: the whole pipeline at county scale, side by side with a raw baseline in the same run.

    .venv/bin/python bench/pipeline.py [--pupils 100000] [--faults] [--no-baseline] [--keep]

It generates fictional extracts for N pupils (a May census of N rows, N/2 reception admissions,
the Year 3 transfers and an October census of N rows), starts the four services as processes on
the local stack (started here when it is not up), ingests with the CLI as an operator would (the
Year 3 transfers arrive as sealed events on the inbound topic, through the ingest service), waits
until the pipeline has settled, and delivers the July and December windows with the CLI. Then it
opens every delivered message with stock openssl and checks the files against an independent
count of the input files.

It prints the time of each stage, rows/s end to end, the peak RSS of every service and CLI run,
and the number and sizes of the messages. The baseline is what a pipeline of this shape costs on
this machine with no work in it: plain aiokafka produce → consume → PostgreSQL COPY → produce →
consume → COPY of ~1 KB messages, N = the rows ingested, run once just before the pipeline and once
just after it; the ratio is against their mean, because this machine's speed drifts by a third over an
hour (the same baseline took 10.5-19.5 s at 100,000 pupils in one day). At the end it drops the run's database, deletes its topics and
its input files (``--keep`` leaves them, to look at).

``--faults`` SIGKILLs each service and the broker once, mid-run, and restarts them; the run then
passes only when the delivered parts equal the cohort exactly and no part was sent twice.
Prints numbers; exits 1 only when the pipeline did not deliver exactly the cohort.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import email
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "deploy" / "local")]
import contextlib

import stack

PY = str(REPO / ".venv" / "bin" / "python")
SAIS = str(REPO / ".venv" / "bin" / "sais")
SERVICES = ("ingest", "eligibility", "delivery", "retention")
MESSAGE = 1000  # bytes per baseline message


# --- baseline -------------------------------------------------------------------------------------


def raw_consumer(topic: str, login: dict):
    """A plain aiokafka consumer of ``topic`` in a group of its own, from the start, read-committed,
    committing by hand: what the baselines consume with."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(
        topic,
        **login,
        group_id=f"g-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


async def _baseline(n: int, kafka: dict, dsn: str) -> dict:
    """produce → consume → COPY → produce → consume → COPY, n messages of ~1 KB; seconds per stage."""
    import asyncpg
    from aiokafka import AIOKafkaProducer

    tag = uuid.uuid4().hex[:8]
    a, b = f"bench-raw-a-{tag}", f"bench-raw-b-{tag}"
    conn = await asyncpg.connect(dsn)
    await conn.execute(f"CREATE TABLE raw_a_{tag} (k int, v bytea); CREATE TABLE raw_b_{tag} (k int, v bytea)")
    await stack.create_topics(dict(os.environ), a, b)
    producer = AIOKafkaProducer(**kafka, enable_idempotence=True, acks="all", linger_ms=5, max_batch_size=256 * 1024)
    await producer.start()

    async def produce(topic: str, values) -> None:
        futs = []
        for i, v in values:
            futs.append(await producer.send(topic, v, key=str(i % 997).encode()))
            if len(futs) >= 5000:
                await asyncio.gather(*futs)
                futs.clear()
        await asyncio.gather(*futs)

    async def consume(topic: str, table: str, forward: str | None) -> None:
        c = raw_consumer(topic, kafka)
        await c.start()
        seen = 0
        try:
            while seen < n:
                batch = await c.getmany(timeout_ms=500, max_records=5000)
                recs = [r for rs in batch.values() for r in rs]
                if not recs:
                    continue
                await conn.copy_records_to_table(table, records=[(seen + i, r.value) for i, r in enumerate(recs)])
                if forward:
                    await produce(forward, ((seen + i, r.value) for i, r in enumerate(recs)))
                await c.commit()
                seen += len(recs)
        finally:
            await c.stop()

    payload = b"x" * MESSAGE
    t = [time.perf_counter()]
    await produce(a, ((i, payload) for i in range(n)))
    t.append(time.perf_counter())
    await consume(a, f"raw_a_{tag}", b)
    t.append(time.perf_counter())
    await consume(b, f"raw_b_{tag}", None)
    t.append(time.perf_counter())
    await producer.stop()
    await conn.close()
    await stack.delete_topics(dict(os.environ), names=(a, b))  # 2 × n KB on the broker's disk otherwise
    return {
        "produce": t[1] - t[0],
        "consume+copy+produce": t[2] - t[1],
        "consume+copy": t[3] - t[2],
        "total": t[3] - t[0],
        "peak_rss_mb": _vm_hwm_mb(),
    }


def _vm_hwm_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the pipeline ---------------------------------------------------------------------------------


CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and of its children it has waited for."""
    f = _stat(pid)
    return sum(int(x) for x in f[11:15]) / CLOCK_TICK if f else 0.0


def tree_cpu_s(root: int) -> float:
    """A process and every live descendant (each with the children it waited for)."""
    parents: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and (f := _stat(int(d.name))):
            parents.setdefault(int(f[1]), []).append(int(d.name))
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        total += cpu_s(pid)
        todo += parents.get(pid, [])
    return total


def children_cpu_s() -> float:
    """CPU seconds of this process's children it has waited for (a CLI run, the baseline)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def server_pids(lay) -> dict[str, int]:
    """The PostgreSQL postmaster (its backends are its children) and the Kafka broker."""
    pids = {}
    for name, f in (("PostgreSQL", lay.pgdata / "postmaster.pid"), ("broker", lay.pidfile("kafka"))):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids[name] = int(f.read_text().split()[0])
    return pids


class PgRoles:
    """PostgreSQL's CPU seconds by what its processes serve: the backends of each login role (a service's,
    the CLIs' under it), autovacuum, and the server's own background processes. A thread reads each of the
    postmaster's children every ``every_s`` and keeps the last reading of each: a backend that ended between
    two readings loses what it spent since the last one, which the bench prints as unattributed."""

    def __init__(self, postmaster: int, every_s: float = 0.25) -> None:
        self.postmaster, self.every_s = postmaster, every_s
        self.start = {pid: cpu for pid, (_, cpu) in self._read().items()}
        self.seen: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _read(self) -> dict[int, tuple[str, float]]:
        out = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and (f := _stat(int(d.name))) and int(f[1]) == self.postmaster:
                with contextlib.suppress(OSError):
                    title = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                    out[int(d.name)] = (pg_role(title), sum(int(x) for x in f[11:13]) / CLOCK_TICK)
        return out

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.seen |= self._read()

    def stop(self) -> dict[str, float]:
        """CPU seconds by role since the sampler started."""
        self._stop.set()
        self._thread.join()
        self.seen |= self._read()
        out: dict[str, float] = {}
        for pid, (role, cpu) in self.seen.items():
            out[role] = out.get(role, 0.0) + cpu - self.start.get(pid, 0.0)
        return out


def pg_role(title: str) -> str:
    """What a PostgreSQL process serves, from its title: ``postgres: sais_eligibility bench_x 127.0.0.1(5) idle``
    is the role's backend; ``postgres: autovacuum worker bench_x`` autovacuum; the rest the server's own."""
    words = title.removeprefix("postgres: ").split()
    if not words:
        return "server"
    if words[0] == "autovacuum":
        return "autovacuum"
    if len(words) >= 3 and (words[2] == "[local]" or words[2].endswith(")")):  # role, database, client (port)
        return words[0]
    return "server"


def busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores: user, nice, system, irq, softirq, steal)."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return (int(f[0]) + int(f[1]) + int(f[2]) + sum(int(x) for x in f[5:8])) / CLOCK_TICK


def data_rows(path: Path, encoding: str) -> int:
    """Rows of a CSV file, less its header."""
    with open(path, encoding=encoding) as f:
        return sum(1 for _ in f) - 1


class Run:
    def __init__(self, n: int, faults: bool, eligibility_instances: int = 1) -> None:
        self.n, self.faults, self.instances = n, faults, eligibility_instances
        self.lay = stack.layout()
        tag = time.strftime("%H%M%S") + uuid.uuid4().hex[:4]
        self.db = f"bench_{tag}"
        self.env = {
            **os.environ,
            **self.lay.env(),
            "SAIS_TOPIC_PREFIX": f"bench-{tag}",
            "SAIS_LOG_LEVEL": "WARNING",
            "SAIS_ACTOR": "Benchmark Operator",
            "SAIS_HTTP_PORT": "0",
            "SAIS_DELIVERY_SMTP_BACKOFF_S": "0.5",
            "SAIS_RETENTION_INTERVAL_S": "3600",
            "SAIS_DATABASE_URL": self.lay.admin_dsn(self.db),
        }
        self.logs = Path(tempfile.mkdtemp(prefix="sais-bench-"))
        self.procs: dict[str, subprocess.Popen] = {}
        self.server_start: dict[str, float] = {}  # CPU seconds of each server when the run began
        self.server_carry: dict[str, float] = {}  # CPU seconds of a server process killed during the run
        self.peak_mb: dict[str, float] = {}
        self.stages: list[tuple[str, float]] = []
        self.busy: list[float] = []  # cores busy on average in each stage (the whole machine)
        self.stage_cores: list[dict[str, float]] = []  # cores each process kept busy in each stage
        self.killed: list[str] = []
        self.cpu: dict[str, float] = {}  # CPU seconds by process (services, CLI runs)
        self._conn = None  # the run's one database connection for polls (query)
        self._loop: asyncio.AbstractEventLoop | None = None

    # processes
    def start(self, name: str) -> None:
        out = open(self.logs / f"{name}.log", "a")  # noqa: SIM115 - a child process's log, open as long as it runs
        self.procs[name] = subprocess.Popen(
            [PY, "-m", f"sais_{name.split('#')[0]}"],
            env={**self.env, "SAIS_AS_OF": "2017-07-10"},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _note_peak(self, name: str, pid: int) -> None:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self.peak_mb[name] = max(self.peak_mb.get(name, 0.0), int(line.split()[1]) / 1024)
        except OSError:
            pass

    def _note_cpu(self, name: str, pid: int) -> None:
        self.cpu[name] = self.cpu.get(name, 0.0) + tree_cpu_s(pid)

    def kill(self, name: str) -> None:
        """SIGKILL a service (no graceful shutdown) and start it again."""
        p = self.procs[name]
        self._note_peak(name, p.pid)
        self._note_cpu(name, p.pid)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        self.killed.append(name)
        self.start(name)

    def stop(self) -> None:
        for name, p in self.procs.items():
            self._note_peak(name, p.pid)
            self._note_cpu(name, p.pid)
        stack.stop_processes(self.procs.values())

    def cli(self, label: str, *args: str, as_of: str) -> str:
        """Run `sais`; its peak RSS is VmHWM read while it runs (ru_maxrss would count this big parent's
        pages the child had between fork and exec)."""
        import threading

        before = children_cpu_s()
        with open(self.logs / "cli.log", "a") as log:
            p = subprocess.Popen(
                [SAIS, *args], env={**self.env, "SAIS_AS_OF": as_of}, stdout=subprocess.PIPE, stderr=log, text=True
            )

            def watch() -> None:
                while p.poll() is None:
                    self._note_peak(f"cli {label}", p.pid)
                    time.sleep(0.05)

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            out = p.stdout.read()
            p.wait()
            watcher.join()
        self.cpu[f"cli {label}"] = self.cpu.get(f"cli {label}", 0.0) + children_cpu_s() - before
        if p.returncode:
            raise SystemExit(f"sais {' '.join(args)} exited {p.returncode}; see {self.logs / 'cli.log'}")
        return out

    def query(self, sql: str):
        """The first column of the first row, or None when the query fails (a schema not made yet), over one
        connection kept for the run. A poll is then one query: a `psql` process for each took 30-40 ms of CPU
        (its start, a TLS handshake and a SCRAM login on both sides), four times a second in every wait, taken
        from the pipeline it measures."""
        import asyncpg

        if self._conn is None:
            self._loop = asyncio.new_event_loop()
            self._conn = self._loop.run_until_complete(asyncpg.connect(self.lay.admin_dsn(self.db)))
        try:
            return self._loop.run_until_complete(self._conn.fetchval(sql))
        except asyncpg.PostgresError:
            return None

    def close(self) -> None:
        if self._conn is not None:
            self._loop.run_until_complete(self._conn.close())
            self._loop.close()
            self._conn = None

    def wait(self, sql: str, on_progress=None, timeout: float = 3600) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SystemExit(f"sais-{name} exited {p.returncode}; see {self.logs / (name + '.log')}")
            if on_progress:  # before the check, so that a fault is injected even into a quick stage
                on_progress()
            if self.query(sql) is True:
                return
            time.sleep(0.25)
        raise SystemExit(f"timed out: {sql}")

    def timed(self, label: str, fn) -> None:
        t0, b0, c0 = time.perf_counter(), busy_s(), self.cpu_now()
        fn()
        self.stages.append((label, time.perf_counter() - t0))
        self.busy.append((busy_s() - b0) / self.stages[-1][1])
        c1 = self.cpu_now()
        self.stage_cores.append(
            {k: max(0.0, c1[k] - c0.get(k, c1[k])) / self.stages[-1][1] for k in c1}  # a restarted one: from 0
        )
        print(f"  {label:52} {self.stages[-1][1]:8.1f} s  {self.busy[-1]:4.2f} cores busy", flush=True)

    def cpu_now(self) -> dict[str, float]:
        """CPU seconds so far of each service, the CLI runs, PostgreSQL and the broker: what a stage's cores
        went to (a service killed in the stage counts from its restart)."""
        out = {name.split("#")[0]: 0.0 for name in self.procs}
        for name, p in self.procs.items():
            out[name.split("#")[0]] += tree_cpu_s(p.pid)
        out["cli"] = children_cpu_s()
        for name, pid in server_pids(self.lay).items():
            out[name] = tree_cpu_s(pid)
        return out

    # steps
    def settled(self, extracts: int) -> str:
        """True once every extract is reconciled, the outbox is empty and delivery holds the active cohort. The
        two counts of the whole cohort run only once the cheap checks hold (CASE keeps the order)."""
        return (
            f"SELECT CASE WHEN (SELECT count(*) FROM eligibility.extracts WHERE reconciled_at IS NOT NULL) = {extracts} "
            "AND NOT EXISTS (SELECT FROM eligibility.outbox) THEN "
            "(SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
            "(SELECT count(*) FROM delivery.members WHERE status='active') ELSE false END"
        )

    def publish_inbound(self, path: Path, source: str, ref: str, on_progress=None) -> None:
        with path.open(encoding="utf-8", newline="") as f:
            stack.publish_inbound(self.env, csv.DictReader(f), extract_ref=f"bench-{path.stem}", source=source,
                                  reference_date=ref, originator="Admissions system (bench)")  # fmt: skip
        self.wait(
            f"SELECT status = 'ingested' FROM ingest.inbound_extracts WHERE extract_ref='bench-{path.stem}'",
            on_progress=on_progress,
        )

    def fault(self, name: str, sql_progress: str):
        """A progress hook that kills ``name`` once, the first time ``sql_progress`` is true."""

        def hook() -> None:
            if self.faults and name not in self.killed and self.query(sql_progress) is True:
                if name == "kafka":
                    if (pid := server_pids(self.lay).get("broker")) and "broker" in self.server_start:
                        # the killed broker's CPU so far is kept; all of the new one's counts
                        self.server_carry["broker"] = tree_cpu_s(pid) - self.server_start["broker"]
                        self.server_start["broker"] = 0.0
                    stack.kill(self.lay, "kafka")
                    self.killed.append("kafka")
                    stack.start_kafka(self.lay)
                else:
                    self.kill(name)
                print(f"    killed {name} (SIGKILL) and restarted it", flush=True)

        return hook

    def run(self, before=None) -> dict:
        """The pipeline; ``before(rows)`` runs first, once the input is written and the database is fresh
        (the baseline's first run), and the servers' CPU is counted from its end."""
        from tests.synthetic import REFERENCE_DATES, write_samples

        files = write_samples(self.logs / "data", seed=2017, per_year=max(1, self.n // 4))
        rows = {s: data_rows(p, "cp1252" if s == "admissions-reception" else "utf-8-sig") for s, p in files.items()}
        ref = {s: d.isoformat() for s, d in REFERENCE_DATES.items()}
        stack.fresh_database(self.lay, self.db)
        stack.setup_kafka(self.env)
        print(f"  extracts: {rows}", flush=True)
        if before is not None:
            before(sum(rows.values()))
        self.server_start = {k: tree_cpu_s(pid) for k, pid in server_pids(self.lay).items()}
        self.pg_roles = PgRoles(server_pids(self.lay)["PostgreSQL"])
        names = [*SERVICES, *(f"eligibility#{i}" for i in range(2, self.instances + 1))]
        self.timed(
            "start the four services",
            lambda: (
                [self.start(s) for s in names]
                and self.wait(
                    "SELECT count(*) = 4 FROM information_schema.schemata WHERE schema_name IN "
                    "('ingest', 'eligibility', 'delivery', 'retention')",
                    timeout=120,
                )
            ),
        )
        t0 = time.perf_counter()
        results: dict = {}

        def ingest(source: str, as_of: str) -> None:
            rep = json.loads(
                self.cli(
                    source,
                    "ingest",
                    "file",
                    str(files[source]),
                    "--source",
                    source,
                    "--reference-date",
                    ref[source],
                    "--json",
                    as_of=as_of,
                )
            )
            assert rep["balanced"], source

        mid = max(1, self.n // 10)
        kill_eligibility = self.fault("eligibility", f"SELECT count(*) > {mid} FROM eligibility.records")
        kill_delivery = self.fault("delivery", f"SELECT count(*) > {mid} FROM delivery.members")
        self.timed("ingest May census (CLI)", lambda: ingest("summer-census", "2017-06-01"))
        self.timed("ingest reception admissions (CLI)", lambda: ingest("admissions-reception", "2017-06-01"))
        self.timed(
            "Year 3 transfers via the inbound topic (ingest service)",
            lambda: self.publish_inbound(
                files["admissions-year3-transfer"],
                "admissions-year3-transfer",
                ref["admissions-year3-transfer"],
                on_progress=self.fault("ingest", "SELECT count(*) > 0 FROM ingest.inbound_records"),
            ),
        )
        self.timed(
            "eligibility + delivery catch up (July sources)",
            lambda: self.wait(self.settled(3), on_progress=lambda: (kill_eligibility(), kill_delivery())),
        )
        self.timed(
            "deliver July (CLI)",
            lambda: results.__setitem__(
                "july",
                json.loads(
                    self.cli(
                        "send july",
                        "delivery",
                        "send",
                        "--window",
                        "july",
                        "--academic-year",
                        "2017/18",
                        "--json",
                        as_of="2017-07-10",
                    )
                ),
            ),
        )
        self.fault("retention", "SELECT true")()
        self.timed("ingest October census (CLI)", lambda: ingest("autumn-census", "2017-10-12"))
        self.timed(
            "eligibility + delivery catch up (October census)",
            lambda: self.wait(self.settled(4), on_progress=self.fault("kafka", "SELECT true")),
        )
        self.timed(
            "deliver December (CLI)",
            lambda: results.__setitem__(
                "december",
                json.loads(
                    self.cli(
                        "send december",
                        "delivery",
                        "send",
                        "--window",
                        "december",
                        "--academic-year",
                        "2017/18",
                        "--json",
                        as_of="2017-12-04",
                    )
                ),
            ),
        )
        total = time.perf_counter() - t0
        walks = self.walks(time.time() - total)
        self.wait("SELECT count(*) = 2 FROM retention.schedule WHERE subject LIKE 'batch:%'", timeout=120)
        self.stop()
        return {"files": files, "rows": rows, "total_s": total, "batches": results, "walks": walks}

    def walks(self, t0: float) -> list[tuple[str, float, float]]:
        """Each extract's release walk, in seconds from the first file: (source, released, reconciled). One
        releaser walks one extract at a time, so a walk can wait for the one before it; together they are most
        of the run's critical path."""
        rows = self.query(
            "SELECT coalesce(json_agg(json_build_array(source, extract(epoch FROM released_at), "
            "extract(epoch FROM reconciled_at)) ORDER BY released_at), '[]')::text "
            "FROM eligibility.extracts WHERE released_at IS NOT NULL AND reconciled_at IS NOT NULL"
        )
        return [(src, r - t0, e - t0) for src, r, e in json.loads(rows or "[]")]

    def check(self, files: dict, batches: dict) -> tuple[dict, list[int], bool]:
        """Open every part with openssl; count each programme's rows; every Message-ID exactly once."""
        from tests.helpers import openssl_open, oracle

        delivered: dict[str, int] = {}
        sizes, once = [], True
        mail = list(self.lay.maildir.glob("*.eml"))
        heads = {m: m.read_bytes()[:4096] for m in mail}
        for res in batches.values():
            for part in res["parts"]:
                found = [m for m, h in heads.items() if part["message_id"].encode() in h]
                once &= len(found) == 1
                sizes.append(part["size_bytes"])
                inner = email.message_from_bytes(openssl_open(found[0], self.lay.pki))
                for p in inner.walk():
                    name = p.get_filename() or ""
                    if name.endswith(".csv") and name != "field-definitions.csv":
                        key = name.split("-2017-18")[0]
                        n = sum(1 for _ in csv.reader(p.get_payload(decode=True).decode("utf-8-sig").splitlines()))
                        delivered[key] = delivered.get(key, 0) + n - 1
        expected = oracle(files)
        return delivered, sizes, once and delivered == expected


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pupils", type=int, default=100_000, help="rows of the May census (default 100,000)")
    ap.add_argument("--faults", action="store_true", help="SIGKILL each service and the broker once, mid-run")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the run's database and input files to look at")
    ap.add_argument("--eligibility-instances", type=int, default=1, help="run several eligibility processes")
    ap.add_argument("--baseline-child", type=int, help=argparse.SUPPRESS)  # the baseline, in its own process
    a = ap.parse_args()
    if a.baseline_child:
        print(
            json.dumps(
                asyncio.run(
                    _baseline(a.baseline_child, stack.kafka_client(dict(os.environ)), os.environ["SAIS_DATABASE_URL"])
                )
            )
        )
        return
    lay = stack.layout()
    started = stack.status(lay) != 0
    stack.start(lay)
    try:
        r = Run(a.pupils, a.faults, a.eligibility_instances)
        print(
            f"pipeline, {a.pupils:,} pupils{' with faults' if a.faults else ''}, "
            f"{a.eligibility_instances} eligibility instance(s) (logs {r.logs})",
            flush=True,
        )
        if tuning := {k: v for k, v in sorted(os.environ.items()) if k.startswith("SAIS_KAFKA_")}:
            print(f"  Kafka settings: {tuning}", flush=True)  # what a tuning run changed (docs/performance.md)
        bases: list[tuple[dict, dict]] = []  # the baseline just before the pipeline and just after it

        def baseline(n: int) -> None:
            print(f"baseline ({'after' if bases else 'before'} the pipeline): {n:,} messages of ~1 KB", flush=True)
            servers = server_pids(lay)
            at_start = {k: tree_cpu_s(pid) for k, pid in servers.items()} | {"client": children_cpu_s()}
            done = subprocess.run([PY, __file__, "--baseline-child", str(n)], env=r.env, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(done.stderr[-3000:])
            cpu = {k: tree_cpu_s(pid) - at_start[k] for k, pid in servers.items()}
            bases.append(
                (
                    json.loads(done.stdout.strip().splitlines()[-1]),
                    cpu | {"client": children_cpu_s() - at_start["client"]},
                )
            )
            print(f"  baseline {bases[-1][0]['total']:.1f} s", flush=True)

        out = r.run(before=None if a.no_baseline else baseline)
        servers = server_pids(lay)  # (the broker's pid is another after --faults restarted it)
        r.cpu |= {k: r.server_carry.get(k, 0.0) + tree_cpu_s(pid) - r.server_start[k] for k, pid in servers.items()}
        pg_roles = r.pg_roles.stop()
        delivered, sizes, exact = r.check(out["files"], out["batches"])
        ingested = sum(out["rows"].values())
        if not a.no_baseline:
            baseline(ingested)
    finally:
        if "r" in locals():
            r.close()
        if not a.keep and "r" in locals():  # a run's database and files are tens of GB at 1,000,000 pupils
            with contextlib.suppress(subprocess.CalledProcessError):
                stack.psql(lay, f"DROP DATABASE IF EXISTS {r.db} WITH (FORCE)", "postgres")
            asyncio.run(stack.delete_topics(r.env, prefix=r.env["SAIS_TOPIC_PREFIX"]))  # ~20 GB at 1,000,000
            shutil.rmtree(r.logs / "data", ignore_errors=True)
        if started:
            stack.stop(lay)

    print("\n== results ==")
    print(
        f"rows ingested {ingested:,}; first file → both windows delivered {out['total_s']:.1f} s = "
        f"{ingested / out['total_s']:,.0f} rows/s end to end"
    )
    for (label, s), busy, cores in zip(r.stages, r.busy, r.stage_cores, strict=True):
        print(f"  {label:52} {s:8.1f} s  {busy:4.2f} of {os.cpu_count()} cores busy")
        top = sorted(((v, k) for k, v in cores.items() if v >= 0.05), reverse=True)
        print("      " + ", ".join(f"{k} {v:.2f}" for v, k in top))
    print(
        "release walks (s from the first file): "
        + "; ".join(f"{src} released {rel:.1f}, walked {end - rel:.1f} s" for src, rel, end in out["walks"])
    )
    print_cpu("pipeline", r.cpu, ingested)
    rest = r.cpu.get("PostgreSQL", 0.0) - sum(pg_roles.values())
    print(
        "  PostgreSQL by what it served: "
        + ", ".join(
            f"{k} {v:.1f} s ({v * 1e6 / ingested:.0f} µs)" for k, v in sorted(pg_roles.items(), key=lambda kv: -kv[1])
        )
        + f"; unattributed (processes that ended between readings) {rest:.1f} s"
    )
    print("peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(r.peak_mb.items())))
    print(f"messages: {len(sizes)}; sizes (bytes) {sizes}; largest {max(sizes):,}")
    print(f"delivered per programme {delivered}; equals the independent count: {exact}")
    if a.faults:
        print(f"killed and restarted: {', '.join(r.killed)}")
    for when, (base, base_cpu) in zip(("before", "after"), bases, strict=False):
        print(
            f"baseline {when} ({ingested:,} × 1 KB): produce {base['produce']:.1f} s "
            f"({ingested / base['produce']:,.0f}/s), consume+COPY+produce {base['consume+copy+produce']:.1f} s "
            f"({ingested / base['consume+copy+produce']:,.0f}/s), consume+COPY {base['consume+copy']:.1f} s "
            f"({ingested / base['consume+copy']:,.0f}/s); total {base['total']:.1f} s = "
            f"{ingested / base['total']:,.0f}/s; peak RSS {base['peak_rss_mb']:.0f} MB"
        )
        print_cpu(f"baseline {when}", base_cpu, ingested)
    if bases:  # against the mean of the two: the machine's speed drifts over a run of minutes
        mean = sum(b["total"] for b, _ in bases) / len(bases)
        each = " and ".join(f"{b['total']:.1f}" for b, _ in bases)
        print(f"pipeline / baseline, end to end: {mean / out['total_s']:.2f} (baseline {each} s, mean {mean:.1f} s)")
    raise SystemExit(0 if exact else 1)


def print_cpu(what: str, cpu: dict[str, float], rows: int) -> None:
    """CPU seconds per process and µs per input row, so that a change can be judged per component."""
    total = sum(cpu.values())
    parts = ", ".join(f"{k} {v:.1f} s ({v * 1e6 / rows:.0f} µs)" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
    print(f"CPU, {what}: {total:.1f} s = {total * 1e6 / rows:.0f} µs per row; {parts}")


if __name__ == "__main__":
    main()
