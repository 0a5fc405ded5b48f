"""How long `sais` takes to start, beside a raw baseline in the same run: a bare interpreter, and
one that only imports typer (the floor of any typer CLI). Prints the median of N runs of each.

    .venv/bin/python bench/cli_startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAIS = str(REPO / ".venv" / "bin" / "sais")

CASES = {
    "baseline: python -c pass": [sys.executable, "-c", "pass"],
    "baseline: python -c 'import typer'": [sys.executable, "-c", "import typer"],
    "sais --help": [SAIS, "--help"],
    "sais keys new-kek": [SAIS, "keys", "new-kek"],
    "sais ingest --help": [SAIS, "ingest", "--help"],
    "sais delivery --help": [SAIS, "delivery", "--help"],
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--runs", type=int, default=7)
    args = p.parse_args()
    print(f"{'command':40} {'median s':>9} {'min s':>7}")
    for name, argv in CASES.items():
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times.append(time.perf_counter() - t)
        print(f"{name:40} {statistics.median(times):9.3f} {min(times):7.3f}")


if __name__ == "__main__":
    main()
