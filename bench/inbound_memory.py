"""Benchmark: the ingest service's memory over one inbound extract, at two sizes in the same run.

    .venv/bin/python bench/inbound_memory.py [--per-year 25000 250000]   (the local stack must be up)

For each size it writes the fictional Year 3 transfers of ``tests.synthetic`` (at --per-year 25000, the
12,378 rows of a 100,000-pupil run; at 250,000, the 124,904 of a 1,000,000-pupil run), starts the ingest
service alone on a fresh database and topic prefix, publishes the extract as sealed, signed events on the
inbound topic (as the upstream publisher), and waits until the service has ingested it. It samples the
service's RSS twice a second from /proc. The issue's rule is that the peak at the larger size is no more
than 10 % above the smaller. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy" / "local"))
sys.path.insert(0, str(REPO))
import stack


def rss_mb(pid: int) -> dict[str, float]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        if k in ("VmRSS", "VmHWM"):
            out[k] = int(v.split()[0]) / 1024
    return out


def one(per_year: int, workdir: Path) -> dict:
    from tests.synthetic import REFERENCE_DATES, write_samples

    lay = stack.layout()
    run = f"mem{time.time_ns() % 10**10}"
    db = f"bench_{run}"
    env = {**os.environ, **lay.env(), "SAIS_DATABASE_URL": lay.admin_dsn(db), "SAIS_TOPIC_PREFIX": run,
           "SAIS_LOG_FORMAT": "json", "SAIS_HTTP_PORT": "0", "SAIS_AS_OF": "2017-06-01"}  # fmt: skip
    path = write_samples(workdir / str(per_year), seed=2017, per_year=per_year)["admissions-year3-transfer"]
    stack.fresh_database(lay, db)
    stack.setup_kafka(env)
    with open(workdir / f"ingest-{per_year}.log", "w") as log:
        p = subprocess.Popen([str(REPO / ".venv" / "bin" / "python"), "-m", "sais_ingest"], env=env, stdout=log,
                             stderr=subprocess.STDOUT)  # fmt: skip
    samples: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            with contextlib.suppress(FileNotFoundError):
                samples.append(rss_mb(p.pid)["VmRSS"])
            done.wait(0.5)

    try:
        log_path = workdir / f"ingest-{per_year}.log"
        while "app started successfully" not in log_path.read_text():  # its consumer has its partitions
            if p.poll() is not None:
                raise SystemExit(f"the ingest service exited {p.returncode}: {log_path.read_text()[-2000:]}")
            time.sleep(0.2)
        at_start = rss_mb(p.pid)["VmRSS"]
        threading.Thread(target=watch, daemon=True).start()
        t0 = time.monotonic()
        with path.open(encoding="utf-8", newline="") as f:
            events = stack.publish_inbound(env, csv.DictReader(f), extract_ref="bench", source="admissions-year3-transfer",
                                           reference_date=REFERENCE_DATES["admissions-year3-transfer"].isoformat(),
                                           originator="bench")  # fmt: skip
        sql = "SELECT coalesce((SELECT status FROM ingest.inbound_extracts WHERE extract_ref='bench'), '')"
        while stack.psql(lay, sql, db) != "ingested":
            time.sleep(0.5)
        took = time.monotonic() - t0
        peak = rss_mb(p.pid)["VmHWM"]
    finally:
        done.set()
        p.terminate()
        p.wait()
        stack.psql(lay, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", "postgres")
    deciles = [round(samples[int(i * (len(samples) - 1) / 10)]) for i in range(11)] if samples else []
    return {"rows": events - 2, "s": took, "start": at_start, "peak": peak, "deciles": deciles}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--per-year", type=int, nargs="+", default=[25_000, 250_000])
    a = ap.parse_args()
    import tempfile

    with tempfile.TemporaryDirectory(prefix="sais-inbound-memory-") as tmp:
        results = [one(n, Path(tmp)) for n in a.per_year]
    for r in results:
        print(
            f"{r['rows']:>9,} inbound rows: ingested in {r['s']:.1f} s; RSS at start {r['start']:.0f} MB, peak "
            f"{r['peak']:.0f} MB; RSS over the extract (deciles) {r['deciles']}"
        )
    if len(results) > 1:
        print(f"peak, largest over smallest: {results[-1]['peak'] / results[0]['peak']:.3f}")


if __name__ == "__main__":
    main()
