"""The project's own Python hot paths on two or more CPython builds, side by side in one run.

    .venv/bin/python bench/interpreters.py [/usr/bin/python3.11 ~/.pyenv/versions/3.11.7/bin/python ...]

Each interpreter gets an environment of its own with the project's locked dependencies (``uv sync
--frozen`` into a temporary directory), and runs the same workload, in turns, three rounds: a
child's programme-file line and Mavis line rendered, its personal fields parsed and dumped by pydantic,
and a stable id made, for 20,000 children each. It prints the best time of each
workload per interpreter, and the total beside the first interpreter's. Numbers, never assertions.

Why: how CPython was built matters. Debian's python3.11 has the interpreter linked into its binary and
is built with Debian's optimisation; a default source build (pyenv's, say) runs from a shared
libpython, built without profile-guided optimisation unless asked. The same code ran 22-28 % faster
on the first here (docs/performance.md), so ``make install`` takes Debian's where there is one.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N = 20_000

WORKLOAD = r"""
import json, sys, time
from datetime import date
from sais_delivery.domain import mavis
from sais_delivery.domain.render import Row, keyed_line
from sais_shared.events import PupilPersonal, stable_id

n = int(sys.argv[1])
rows = [Row("flu", None, "9372001", "Hillside Primary", "3", f"Surname{i}", "Anna", date(2010, 1, 2), "F",
            ["1 High Street", "Leafield"], "AB1 2CD") for i in range(n)]
personal = PupilPersonal(surname="Smith", forename="Anna", date_of_birth=date(2010, 1, 2),
                         address_lines=["1 High Street", "Leafield"], postcode="AB1 2CD")
plain = personal.model_dump_json().encode()

def render():
    for r in rows:
        keyed_line(r)
        mavis.line_bytes(r)

def ids():
    for i in range(n):
        stable_id("cohort", "2017/18", "flu", i, 1)

def pydantic_round_trip():
    for _ in range(n):
        PupilPersonal.model_validate_json(plain).model_dump_json()

work = {"render (programme + Mavis line)": render, "stable ids": ids, "pydantic parse + dump": pydantic_round_trip}
out = {}
for name, f in work.items():
    t = time.perf_counter(); f(); out[name] = time.perf_counter() - t
print(json.dumps(out))
"""


PROBE = (  # the version, and whether the running binary maps a shared libpython or has the library linked in
    "import sys; print(sys.version.split()[0], 'yes' if 'libpython' in open('/proc/self/maps').read() else 'no')"
)


def candidates() -> list[str]:
    found = []
    for p in ["/usr/bin/python3.11", *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.11*/bin/python3.11")))]:
        if os.access(p, os.X_OK) and os.path.realpath(p) not in {os.path.realpath(x) for x in found}:
            found.append(p)
    return found


def environment(python: str, root: Path) -> str:
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(root), "UV_PYTHON_DOWNLOADS": "never"}
    subprocess.run(
        ["uv", "sync", "--frozen", "--all-packages", "--python", python, "--quiet"], cwd=REPO, env=env, check=True
    )
    return str(root / "bin" / "python")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("interpreters", nargs="*", help="CPython 3.11 executables (default: Debian's and pyenv's)")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    pythons = a.interpreters or candidates()
    if not pythons:
        sys.exit("no CPython 3.11 found; name one or more")
    if shutil.which("uv") is None:
        sys.exit("uv is needed to give each interpreter the project's locked dependencies")
    import json

    with tempfile.TemporaryDirectory(prefix="sais-interp-") as tmp:
        envs = {}
        for i, p in enumerate(pythons):
            envs[p] = environment(p, Path(tmp) / f"env{i}")
            version = subprocess.run([envs[p], "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
            print(f"{p}: CPython {version[0]}, runs from a shared libpython: {version[1]}")
        best: dict[str, dict[str, float]] = {p: {} for p in pythons}
        for _ in range(a.rounds):  # in turns, so a machine that slows down slows every interpreter alike
            for p in pythons:
                r = json.loads(
                    subprocess.run(
                        [envs[p], "-c", WORKLOAD, str(N)], capture_output=True, text=True, check=True, cwd=tmp
                    ).stdout
                )
                for k, v in r.items():
                    best[p][k] = min(best[p].get(k, v), v)
    first = pythons[0]
    print(f"\n{N:,} children per workload, best of {a.rounds} rounds (ms):")
    names = list(best[first])
    print("  " + " | ".join(["interpreter", *names, "total", f"vs {Path(first).name}"]))
    for p in pythons:
        total = sum(best[p].values())
        cells = [f"{best[p][k] * 1e3:.1f}" for k in names]
        print("  " + " | ".join([p, *cells, f"{total * 1e3:.1f}", f"{total / sum(best[first].values()):.2f}"]))


if __name__ == "__main__":
    main()
