"""Benchmark: the raw baseline of bench/pipeline.py on asyncio's own event loop and on uvloop, in one run.

    uv run --with uvloop python bench/loops.py [--messages 262380] [--rounds 2]

The services and the CLI run on asyncio's own loop. uvloop (libuv, in C) was tried in their place and
not kept: on the work where they spend their I/O it was no faster (docs/performance.md). This is how
that was measured, to measure it again when either changes. It is not a dependency of the project:
``uv run --with uvloop`` brings it for the run. The baseline is aiokafka over TLS + SCRAM and asyncpg over
TLS, produce → consume → COPY → produce → consume → COPY of ``--messages`` values of 1 KB. Each round
runs it once per loop, each in a process of its own, alternating, and prints its seconds and the CPU
seconds of its process and of the broker and PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "bench"), str(REPO), str(REPO / "deploy" / "local")]
import stack
from pipeline import _baseline, server_pids, tree_cpu_s


def child(loop: str, n: int) -> None:
    import asyncio

    if loop == "uvloop":
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    out = asyncio.run(_baseline(n, stack.kafka_client(dict(os.environ)), os.environ["SAIS_DATABASE_URL"]))
    print(json.dumps(out))


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=262_380, help="values per case (the rows of 100,000 pupils)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.messages)
        return
    lay = stack.layout()
    started = stack.status(lay) != 0
    stack.start(lay)
    try:
        db = f"bench_loops_{os.getpid()}"
        stack.fresh_database(lay, db)
        env = {**os.environ, **lay.env(), "SAIS_DATABASE_URL": lay.admin_dsn(db)}
        servers = server_pids(lay)
        print(f"the raw baseline, {a.messages:,} messages of 1 KB, per event loop ({a.rounds} rounds)")
        print(
            f"  {'loop':<8} {'seconds':>8} {'client CPU':>11} {'µs/msg':>7} {'broker CPU':>11} {'PostgreSQL CPU':>15}"
        )
        for _ in range(a.rounds):
            for loop in ("asyncio", "uvloop"):
                cpu0, srv0, t0 = children_cpu_s(), {k: tree_cpu_s(p) for k, p in servers.items()}, time.perf_counter()
                r = subprocess.run(
                    [sys.executable, __file__, "--child", loop, "--messages", str(a.messages)],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                )
                wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
                srv = {k: tree_cpu_s(p) - srv0[k] for k, p in servers.items()}
                out = json.loads(r.stdout.strip().splitlines()[-1])
                print(
                    f"  {loop:<8} {out['total']:>7.1f}s {cpu:>10.1f}s {1e6 * cpu / a.messages:>7.1f} "
                    f"{srv.get('broker', 0):>10.1f}s {srv.get('PostgreSQL', 0):>14.1f}s  (process {wall:.1f} s)"
                )
        stack.psql(lay, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)", "postgres")
    finally:
        if started:
            stack.stop(lay)


if __name__ == "__main__":
    main()
