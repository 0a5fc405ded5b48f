"""Mavis cohort-import files as written: the columns and values Mavis expects, rows Mavis would refuse
left out with a reason, the year groups for the day of upload, splitting at 10,000 rows by school, one
child once per file, and the schools register as GIAS ships it."""

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sais_delivery.domain.mavis import MAVIS_COLUMNS

from tests.unit.test_mavis import SAMPLE_REGISTER, one_file, row

pytestmark = pytest.mark.deploy


def test_sais_delivery_check_mavis_reports_row_and_reason_and_exits_1(tmp_path):
    header = ",".join(MAVIS_COLUMNS) + "\r\n"
    cells = {"CHILD_FIRST_NAME": "Ada", "CHILD_LAST_NAME": "O'Hare", "CHILD_DATE_OF_BIRTH": "04/03/2010",
             "CHILD_POSTCODE": "CV34 4RL", "CHILD_SCHOOL_URN": "700002"}  # fmt: skip

    def line(**over) -> str:
        return ",".join({**cells, **over}.get(c, "") for c in MAVIS_COLUMNS) + "\r\n"

    bad = tmp_path / "bad.csv"
    bad.write_text(header + line() + line(CHILD_FIRST_NAME="Bo", CHILD_POSTCODE="nope"))
    good = tmp_path / "good.csv"
    good.write_text(header + line())
    sais = str(Path(sys.executable).with_name("sais"))
    run = [sais, "delivery", "check-mavis", "--upload-date", "2017-09-05"]
    r = subprocess.run([*run, str(good), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "good.csv: 1 rows, passes" in r.stdout and "row 3: CHILD_POSTCODE should be a postcode" in r.stdout
    assert "nope" not in r.stdout  # never the value
    r = subprocess.run([*run, str(good), "--register", str(SAMPLE_REGISTER)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([*run, str(good), "--team-schools", "700003,700004"], capture_output=True, text=True)
    assert r.returncode == 1 and "not one of the team's schools" in r.stdout


def test_check_mavis_with_the_manifest_refuses_an_upload_before_the_files_year(tmp_path):
    """The July files are for the coming year: uploaded in July, Mavis would read them as this year's."""
    content = one_file([row(yg="R", dob=date(2012, 11, 20))])
    f = tmp_path / "mavis-cohort-flu-2017-18.csv"
    f.write_bytes(content)
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"mavis_cohort_import": {
        "academic_year": "2017/18", "upload_from": "2017-08-01",
        "team": {"schools": None, "year_groups": list(range(12))}}}))  # fmt: skip
    sais = str(Path(sys.executable).with_name("sais"))
    ok = subprocess.run([sais, "delivery", "check-mavis", str(f), "--manifest", str(manifest)], capture_output=True,
                        text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stdout
    early = subprocess.run([sais, "delivery", "check-mavis", str(f), "--manifest", str(manifest), "--upload-date",
                            "2017-07-20"], capture_output=True, text=True)  # fmt: skip
    assert early.returncode == 1 and "upload on or after 2017-08-01" in early.stdout
