"""Benchmark: ingest throughput and peak memory, side by side with a baseline in the same run.

    .venv/bin/python bench/ingest_throughput.py [--rows 200000]   (the local stack must be up: make stack-up)

Baseline: the same file read with csv.reader and the same number of ~1 KB messages produced with a
plain idempotent aiokafka producer — the floor for "read a file, publish one event per row".
Measured: ingest's file use case (validation, minimisation, AES-GCM sealing, blind index, PostgreSQL, Kafka).
Each runs in its own process so peak RSS is its own. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import random
import resource
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "deploy" / "local"))
import stack


def letters(i: int) -> str:
    """A number written in letters (names may hold only letters): 0 → "a", 27 → "bb"."""
    out = ""
    while True:
        out = chr(97 + i % 26) + out
        i //= 26
        if not i:
            return out


def make_file(path: Path, rows: int) -> None:
    """Rows that all pass validation: a benchmark of rejections would measure the wrong path."""
    rng = random.Random(1)
    names = ["Olivia", "Zoë", "Seán", "Oliver", "Anna-Marie", "Muhammad", "Léa", "Jack"]
    surnames = ["Smith", "O'Brien", "Núñez", "Patel", "Smith-Jones", "Khan", "Müller", "Hall"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "UPN",
                "Legal Surname",
                "Legal Forename",
                "DOB",
                "Gender",
                "NCyearActual",
                "School DfE Number",
                "School Name",
                "Address Line 1",
                "Address Line 2",
                "Postcode",
                "Ethnicity",
            ]
        )
        for i in range(rows):
            yg = rng.choice(["R", "1", "2", "3"])
            start = date(2016 - {"R": 0, "1": 1, "2": 2, "3": 3}[yg] - 5, 9, 1)
            w.writerow(
                [
                    f"A937{i:09d}",
                    rng.choice(surnames),
                    f"{rng.choice(names)}-{letters(i).title()}",
                    (start + timedelta(days=rng.randrange(365))).strftime("%d/%m/%Y"),
                    rng.choice("MF"),
                    yg,
                    f"937{2000 + i % 300:04d}",
                    f"School {i % 300}",
                    f"{i % 200} High Street",
                    "Warwick",
                    f"CV{1 + i % 40} {rng.randint(1, 9)}AB",
                    "WBRI",
                ]
            )


def child(kind: str, path: str, rows: int) -> None:
    t0 = time.perf_counter()
    if kind == "baseline":
        from aiokafka import AIOKafkaProducer

        async def run() -> int:
            p = AIOKafkaProducer(
                **stack.kafka_client(dict(os.environ)), enable_idempotence=True, linger_ms=5, max_batch_size=256 * 1024
            )
            await p.start()
            topic = f"bench-baseline-{uuid.uuid4().hex[:8]}"
            await stack.create_topics(dict(os.environ), topic)
            n = 0
            futs = []
            with open(path, newline="", encoding="utf-8") as f:
                for row in csv.reader(f):
                    futs.append(await p.send(topic, json.dumps(row).encode().ljust(1000)))
                    n += 1
                    if len(futs) >= 2000:
                        await asyncio.gather(*futs)
                        futs.clear()
            await asyncio.gather(*futs)
            await p.stop()
            return n - 1

        n = asyncio.run(run())
    else:
        sys.path.insert(0, str(REPO))
        from sais_ingest.app import ingest_session
        from sais_ingest.config import IngestSettings

        async def run() -> int:
            async with ingest_session(IngestSettings()) as s:
                rep = await s.file(Path(path), source="summer-census", reference_date=date(2017, 5, 18), actor="bench")
                if rep.accepted != rep.rows_in:
                    raise SystemExit(
                        f"only {rep.accepted} of {rep.rows_in} rows accepted: the benchmark file is "
                        f"wrong ({rep.rejections[:1]})"
                    )
                return rep.rows_in

        n = asyncio.run(run())
    dt = time.perf_counter() - t0
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "kind": kind,
                "rows": n,
                "seconds": round(dt, 2),
                "rows_per_s": round(n / dt),
                "peak_rss_mb": round(rss_mb, 1),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--child", nargs=3)
    a = ap.parse_args()
    if a.child:
        child(a.child[0], a.child[1], int(a.child[2]))
        return
    env = {
        **os.environ,
        **stack.layout().env(),
        "SAIS_LOG_LEVEL": "WARNING",
        "SAIS_ACTOR": "Benchmark Operator",
        "SAIS_TOPIC_PREFIX": f"bench{uuid.uuid4().hex[:6]}",
    }
    db = f"bench_{uuid.uuid4().hex[:6]}"
    env["SAIS_DATABASE_URL"] = stack.fresh_database(stack.layout(), db)
    stack.setup_kafka(env)
    results = {}
    for rows in (a.rows // 4, a.rows):
        path = Path(f"/tmp/bench-{rows}.csv")
        make_file(path, rows)
        for kind in ("baseline", "ingest"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, str(path), str(rows)],
                env=env,
                capture_output=True,
                text=True,
            )
            if out.returncode:
                raise SystemExit(out.stderr[-3000:])
            results[(kind, rows)] = json.loads(out.stdout.strip().splitlines()[-1])
        path.unlink()
    print(f"{'rows':>9} | {'baseline rows/s':>15} {'MB':>6} | {'ingest rows/s':>13} {'MB':>6} | ingest/baseline")
    for rows in (a.rows // 4, a.rows):
        b, i = results[("baseline", rows)], results[("ingest", rows)]
        print(
            f"{rows:>9} | {b['rows_per_s']:>15,} {b['peak_rss_mb']:>6} | {i['rows_per_s']:>13,} "
            f"{i['peak_rss_mb']:>6} | {i['rows_per_s'] / b['rows_per_s']:.2f}"
        )


if __name__ == "__main__":
    main()
