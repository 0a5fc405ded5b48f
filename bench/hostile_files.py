"""Benchmark: what a hostile or broken file costs ingest, side by side with a good file in the same run.

    .venv/bin/python bench/hostile_files.py [--good-rows 100000] [--out /tmp/hostile]

Each file is read the way `sais ingest file` reads it before anything is published (inspect the file,
open its reader, read and classify every row against the protocol), in a process of its own so that its
peak RSS is its own. Printed per file: wall time, peak RSS, and the refusal code (the cap it hit) or
"read". The baseline is a good census of --good-rows rows through the same path, and the same file read
with csv.reader alone. Needs no servers. Prints numbers; asserts nothing (the caps' behaviour is tested
in tests/unit/test_hostile_files.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEADER = [
    "Legal Surname", "Legal Forename", "DOB", "Gender", "NCyearActual", "School DfE Number", "School Name",
    "Address Line 1", "Postcode",
]  # fmt: skip
ROW = ["Nguyen", "An", "15/01/2012", "F", "R", "9372006", "Woodloes Primary School", "63 Station Road", "CV34 4FL"]

CHILD = r"""
import json, sys, time
from datetime import date
from pathlib import Path
t0 = time.perf_counter()
what = sys.argv[1]
path = Path(sys.argv[2])
out = {"file": path.name}
try:
    if what == "raw":
        import csv
        with open(path, newline="", encoding="utf-8") as f:
            out["rows"] = sum(1 for _ in csv.reader(f))
        out["outcome"] = "read"
    else:
        from sais_ingest.adapters.readers import inspect_file, open_extract
        from sais_ingest.domain.extract import classify_row, header_mapping
        from sais_ingest.domain.model import ExtractFileError
        from sais_shared.protocol import load_protocol
        protocol = load_protocol()
        rule = protocol.source("summer-census")
        try:
            facts = inspect_file(path)
            rows = open_extract(path, facts).rows()
            _, headers = next(rows)
            mapping, _ = header_mapping(headers)
            n = 0
            for number, cells in rows:
                classify_row(number, cells, mapping, rule=rule, protocol=protocol, reference_date=date(2017, 5, 18))
                n += 1
            out["rows"], out["outcome"] = n, "read"
        except ExtractFileError as exc:
            out["outcome"] = exc.code
except Exception as exc:  # a defect: shown, not hidden
    out["outcome"] = "ERROR " + type(exc).__name__
out["seconds"] = round(time.perf_counter() - t0, 2)
# VmHWM: this program's own peak (ru_maxrss would carry the parent's peak across exec)
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
out["peak_rss_mb"] = round(int(hwm.split()[1]) / 1024, 1)
print(json.dumps(out))
"""


def write_zip_part(path: Path, name: str, chunks) -> None:
    """Add a part to a workbook, streamed (a part of a gigabyte is never held in memory here)."""
    with (
        zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED, compresslevel=9) as z,
        z.open(name, "w", force_zip64=True) as f,
    ):
        for c in chunks:
            f.write(c)


def base_workbook(path: Path) -> None:
    import openpyxl

    wb = openpyxl.Workbook()
    wb.active.append(HEADER)
    wb.active.append(ROW)
    wb.save(path)


def rewrite_part(path: Path, name: str, chunks) -> None:
    """The workbook with one part replaced by ``chunks`` (streamed)."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            if info.filename != name:
                dst.writestr(info.filename, src.read(info.filename))
        with dst.open(name, "w", force_zip64=True) as f:
            for c in chunks:
                f.write(c)
    tmp.replace(path)


def make_files(out: Path, good_rows: int) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    ns = b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'

    good = files["good census"] = out / "good.csv"
    with open(good, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i in range(good_rows):
            w.writerow([ROW[0], "An" + "abcdefghij"[i % 10] * (1 + i % 5), *ROW[2:]])

    bomb = files["zip bomb (.xlsx, 1 GB of empty rows)"] = out / "bomb.xlsx"
    base_workbook(bomb)
    rewrite_part(bomb, "xl/worksheets/sheet1.xml",
                 (ns, *(b"<row/>" * 175_000 for _ in range(1000)), b"</sheetData></worksheet>"))  # fmt: skip

    wide = files["wide sheet (.xlsx, a cell in column XFD on 20,000 rows)"] = out / "wide.xlsx"
    base_workbook(wide)

    def row_xml(n: int, values: list[str]) -> bytes:
        cells = b"".join(
            b'<c r="%s%d" t="inlineStr"><is><t>%s</t></is></c>' % (chr(65 + i).encode(), n, v.encode())
            for i, v in enumerate(values)
        )
        return b'<row r="%d">%s<c r="XFD%d" t="inlineStr"><is><t>x</t></is></c></row>' % (n, cells, n)

    rows = b"".join(row_xml(n, ROW) for n in range(2, 20_002))
    rewrite_part(wide, "xl/worksheets/sheet1.xml",
                 (ns, row_xml(1, HEADER), rows, b"</sheetData></worksheet>"))  # fmt: skip

    huge = files["huge cell (.xlsx, one 1.1 GB string)"] = out / "huge-cell.xlsx"
    base_workbook(huge)
    rewrite_part(huge, "xl/worksheets/sheet1.xml",
                 (ns, b'<row r="1"><c r="A1" t="inlineStr"><is><t>', *(b"y" * (1 << 20) for _ in range(1100)),
                  b"</t></is></c></row></sheetData></worksheet>"))  # fmt: skip

    line = files["delimiter line (50 MB of 'a,')"] = out / "delimiters.csv"
    with open(line, "w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n")
        for _ in range(25):
            f.write("a," * 1_000_000)
        f.write("\n")

    blank = files["blank lines (2 MB)"] = out / "blank.csv"
    with open(blank, "w", encoding="utf-8") as f:
        f.write(",".join(HEADER) + "\n" + "\n" * 2_000_000 + ",".join(ROW) + "\n")

    long_address = files["address of 32,767 characters (a row rejection)"] = out / "long-address.csv"
    with open(long_address, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        w.writerow([*ROW[:7], "x" * 32_767, ROW[8]])
        w.writerow(ROW)

    pipe = files["named pipe"] = out / "pipe.csv"
    if not pipe.exists():
        os.mkfifo(pipe)
    files["/dev/zero"] = Path("/dev/zero")
    return files


def measure(what: str, path: Path) -> dict:
    r = subprocess.run(
        [sys.executable, "-c", CHILD, what, str(path)], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"file": path.name, "outcome": f"crashed ({r.returncode}): {r.stderr.strip()[-200:]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--good-rows", type=int, default=100_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/sais-hostile-files"))
    args = ap.parse_args()
    t = time.perf_counter()
    files = make_files(args.out, args.good_rows)
    print(f"made {len(files)} files in {time.perf_counter() - t:.0f} s under {args.out}\n")
    print(f"{'file':58} {'size':>10} {'seconds':>8} {'peak RSS MB':>12}  outcome")
    results = [
        ("raw baseline: csv.reader over the good census", files["good census"], measure("raw", files["good census"]))
    ]
    results += [(name, path, measure("ingest", path)) for name, path in files.items()]
    for name, path, m in results:
        size = path.stat().st_size if path.is_file() else 0
        rows = f" ({m['rows']:,} rows)" if "rows" in m else ""
        print(f"{name:58} {size:>10,} {m.get('seconds', '-'):>8} {m.get('peak_rss_mb', '-'):>12}  {m['outcome']}{rows}")


if __name__ == "__main__":
    main()
