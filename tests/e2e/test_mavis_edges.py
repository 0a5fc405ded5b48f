"""Mavis reads our files as we meant them, for extracts full of the names, postcodes, schools and year
groups that make Mavis refuse a whole file: the July and December windows through the four running
services; every Mavis file passes `sais delivery check-mavis` for its manifest's upload day and team
(as the SAIS team would run it), and every child left out of a Mavis file is listed with a reason and
is still in the programme file."""

import csv
import email
import json
import subprocess
import unicodedata

import pytest
import yaml

from tests.e2e.test_pipeline import SAIS, Pipeline, wait_sql
from tests.helpers import REPO, openssl_open

pytestmark = pytest.mark.e2e
PROTOCOL = REPO / "shared" / "src" / "sais_shared" / "protocols" / "warwickshire-cwpt-v0.2.yaml"
REGISTER = REPO / "data" / "reference" / "gias-establishments-sample.csv"
# The team's schools in Mavis: every open school of the sample register but Westgate (9372004, URN 700005)
TEAM = ["700001", "700002", "700003", "700004", "700006", "700007", "700008", "700009"]
MAY = ["UPN", "Legal Surname", "Legal Forename", "DOB", "Gender", "NCyearActual", "School DfE Number", "School Name",
       "Address Line 1", "Address Line 2", "Address Line 3", "Postcode"]  # fmt: skip
OCT = ["LAESTAB", "School Name", "NC Year", "Surname", "First Name", "DOB", "Gender", "Address 1", "Address 2",
       "Address 3", "Postcode", "UPN"]  # fmt: skip
HOME = ["12 Mill Lane", "Warwick", "Warwickshire"]


def may(upn, surname, forename, dob, year, dfe="9372001", school="Telford Infant School", postcode="CV34 4RL",
        address=HOME):  # fmt: skip
    return [upn, surname, forename, dob, "F", year, dfe, school, *([*address, "", "", ""])[:3], postcode]


def october(upn, surname, forename, dob, year, gender="F", postcode="CV21 3DG", address=HOME):
    return ["9374007", "Aylesford School & Sixth Form College", year, surname, forename, dob, gender,
            *([*address, "", "", ""])[:3], postcode, upn]  # fmt: skip


MAY_ROWS = [
    may("A937000000001", "Nguyễn", "Anh", "12/03/2012", "R"),  # Vietnamese: Mavis refuses ễ
    may("A937000000002", "Petrov", "Иван", "02/04/2011", "1"),  # Cyrillic
    may("A937000000003", "Garci\u0301a", "Jose\u0301", "05/06/2011", "1"),  # decomposed accents: NFC passes
    may("A937000000004", "Hooft", "'t Jan", "07/07/2010", "2"),  # a leading apostrophe: Mavis accepts
    may("A937000000005", "St. John", "J.", "08/08/2010", "2"),  # full stops: Mavis accepts
    may("A937000000006", "Khan", "Zara", "09/09/2010", "2", postcode="CV34 4XC"),  # C in the unit: Mavis refuses
    may("A937000000007", "Doe", "Sam", "10/10/2011", "1", postcode="ZZ99 3VZ", address=[]),  # no fixed abode
    may("A937000000008", "Atkins", "Lee", "11/11/2011", "1", postcode="BFPO 123", address=["HQ 1 Div"]),  # forces
    may("A937000000009", "West", "Ola", "01/02/2012", "R", dfe="9372004", school="Westgate Primary School"),
    may("A937000000010", "Green", "Reuben", "11/10/2009", "2", dfe="9372000", school="Emscote Infant School"),
    may("A937000000011", "Moss", "Ava", "14/02/2012", "R"),  # an ordinary child
]
# the same child (Reuben Green, Year 2 in May) in the Year 3 transfer file: one child, once
TRANSFER = ["Surname,Forename,Date of Birth,Sex,Year Group,DfE No,School,PAON,Street,Town,County,Post Code",
            "Green,Reuben,2009-10-11,F,Y3,9372002,Brookhurst Junior School,12,Mill Lane,Warwick,Warwickshire,CV34 4RL"]  # fmt: skip
OCT_ROWS = [  # the protocol (v0.2) asks for Year 8 girls and Year 9
    october("A937000000101", "Al-Farsi", "محمد", "03/03/2004", "9", gender="M"),  # Arabic
    october("A937000000102", "Ştefan", "Ana", "04/04/2005", "8"),  # s-cedilla (U+015E): Mavis accepts
    october("A937000000103", "Țuca", "Dana", "05/05/2004", "9"),  # t-comma below (U+021A): Mavis refuses
    october("A937000000104", "Okafor", "Bea", "06/06/2004", "9", postcode="ZZ99 3WZ", address=[]),  # not known
    october("A937000000105", "Shah", "Ria", "07/07/2001", "12"),  # Years 12 and 13: not requested
    october("A937000000106", "Lund", "Eva", "08/08/2000", "13"),
    october("A937000000107", "Brown", "Tom", "09/09/2004", "9", gender="M"),
]
LEFT_OUT = {  # (window, school, reason as it begins) of every row left out of a Mavis file
    ("july", "9372001", "CHILD_LAST_NAME includes invalid character(s)"),  # Nguyễn
    ("july", "9372001", "CHILD_FIRST_NAME includes invalid character(s)"),  # Иван
    ("july", "9372001", "CHILD_POSTCODE should be a postcode"),  # BFPO 123
    ("july", "", "CHILD_POSTCODE should be a postcode"),  # CV34 4XC: Year 3 in September, an infant school's
    ("july", "9372004", "CHILD_SCHOOL_URN The school URN is not recognised"),  # not the team's
    ("december", "9374007", "CHILD_FIRST_NAME includes invalid character(s)"),  # محمد
    ("december", "9374007", "CHILD_LAST_NAME includes invalid character(s)"),  # Țuca
}


def write(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


async def test_edge_case_extracts_give_mavis_files_it_accepts_and_list_every_child_left_out(env, infra, tmp_path):
    dsn = env["SAIS_DATABASE_URL"]
    doc = yaml.safe_load(PROTOCOL.read_text())
    doc["version"] = "0.3-mavis-team"
    doc["revisions"].append({"version": "0.3-mavis-team", "date": "2017-05-01", "by": "test",
                             "description": "the SAIS team's schools in Mavis"})  # fmt: skip
    doc["transfer"]["mavis_team"] = {"schools": TEAM, "year_groups": list(range(0, 12))}
    (tmp_path / "protocol.yaml").write_text(yaml.safe_dump(doc, allow_unicode=True))
    files = {
        "may": write(tmp_path / "may.csv", MAY, MAY_ROWS),
        "oct": write(tmp_path / "october.csv", OCT, OCT_ROWS),
    }
    (tmp_path / "transfer.csv").write_text("\n".join(TRANSFER) + "\n")
    p = Pipeline(env, tmp_path)
    p.cli("protocol", "load", str(tmp_path / "protocol.yaml"), as_of="2017-05-01")
    p.cli("schools", "load", str(REGISTER), as_of="2017-05-01")
    p.start()
    try:
        rep = json.loads(p.cli("ingest", "file", str(files["may"]), "--source", "summer-census", "--reference-date",
                               "2017-05-18", "--json", as_of="2017-06-01"))  # fmt: skip
        assert rep["rejected"] == 0 and rep["accepted"] == len(MAY_ROWS), rep  # ingest keeps what Mavis may take
        p.cli("ingest", "file", str(tmp_path / "transfer.csv"), "--source", "admissions-year3-transfer",
              "--reference-date", "2017-04-18", as_of="2017-06-01")  # fmt: skip
        await wait_sql(dsn, "SELECT count(*) = 2 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL")
        await wait_sql(dsn, "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
                            "(SELECT count(*) FROM delivery.members WHERE status='active')")  # fmt: skip
        july = json.loads(p.cli("delivery", "send", "--window", "july", "--academic-year", "2017/18", "--json",
                                as_of="2017-07-10"))  # fmt: skip
        rep = json.loads(p.cli("ingest", "file", str(files["oct"]), "--source", "autumn-census", "--reference-date",
                               "2017-10-05", "--json", as_of="2017-10-12"))  # fmt: skip
        assert rep["rejected"] == 0 and rep["out_of_scope"] == 2, rep  # Years 12 and 13: not requested
        await wait_sql(dsn, "SELECT count(*) = 3 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL")
        await wait_sql(dsn, "SELECT (SELECT count(*) FROM eligibility.cohort WHERE status='active') = "
                            "(SELECT count(*) FROM delivery.members WHERE status='active')")  # fmt: skip
        december = json.loads(p.cli("delivery", "send", "--window", "december", "--academic-year", "2017/18",
                                    "--json", as_of="2017-12-12"))  # fmt: skip
    finally:
        p.stop()

    left_out: set[tuple] = set()
    for window, res, first_day in (("july", july, "2017-08-01"), ("december", december, "2017-12-12")):
        [msg] = [m for m in infra.maildir.glob("*.eml") if res["message_id"].encode() in m.read_bytes()]
        inner = email.message_from_bytes(openssl_open(msg, infra.pki))  # (it also checks every Mavis file)
        parts = {x.get_filename(): x.get_payload(decode=True) for x in inner.walk() if x.get_filename()}
        manifest = json.loads(parts["manifest.json"])
        meta = manifest["mavis_cohort_import"]
        assert (meta["academic_year"], meta["upload_from"]) == ("2017/18", first_day)
        assert meta["team"]["schools"] == sorted(TEAM)
        folder = tmp_path / window
        folder.mkdir()
        for name, content in parts.items():
            (folder / name).write_bytes(content)
        mavis_files = sorted(n for n in parts if n.startswith("mavis-"))
        assert mavis_files
        # the SAIS team's check, on the manifest's first upload day, with the manifest's team
        run = [SAIS, "delivery", "check-mavis", *(str(folder / n) for n in mavis_files), "--manifest",
               str(folder / "manifest.json")]  # fmt: skip
        r = subprocess.run(run, capture_output=True, text=True)
        assert r.returncode == 0, r.stdout + r.stderr
        if window == "july":  # uploaded in July, Mavis would read 2016/17: the check says so
            early = subprocess.run([*run, "--upload-date", "2017-07-20"], capture_output=True, text=True)
            assert early.returncode == 1 and "upload on or after 2017-08-01" in early.stdout
        rows = {n: list(csv.DictReader(c.decode("utf-8-sig").splitlines())) for n, c in parts.items()
                if n.endswith(".csv") and n != "field-definitions.csv"}  # fmt: skip
        for r in meta["left_out"]:
            left_out.add((window, r["school_dfe"], next((k[2] for k in LEFT_OUT if r["reason"].startswith(k[2])),
                                                        r["reason"])))  # fmt: skip
        for name in [n for n in rows if not n.startswith("mavis-")]:  # every child accounted for, per programme
            key = name.removesuffix("-2017-18.csv")
            dropped = sum(r["rows"] for r in meta["left_out"] if r["programme"] == key)
            assert len(rows[f"mavis-cohort-{name}"]) + dropped == len(rows[name]), name
        in_mavis = [r for n in mavis_files for r in rows[n]]
        surnames = {r["Surname"] for n, x in rows.items() if not n.startswith("mavis-") for r in x}
        if window == "july":
            names = {(r["CHILD_FIRST_NAME"], r["CHILD_LAST_NAME"]) for r in in_mavis}
            assert ("José", "García") in names and all(unicodedata.is_normalized("NFC", a + b) for a, b in names)
            assert ("'t Jan", "Hooft") in names and ("J.", "St. John") in names
            [nfa] = [r for r in in_mavis if r["CHILD_LAST_NAME"] == "Doe"]
            assert nfa["CHILD_POSTCODE"] == "ZZ99 3VZ" and nfa["CHILD_SCHOOL_URN"] == "700002"
            assert [r["CHILD_YEAR_GROUP"] for r in in_mavis if r["CHILD_LAST_NAME"] == "Moss"] == ["1"]
            assert sum(r["CHILD_LAST_NAME"] == "Green" for r in in_mavis) == 1  # two sources, one child
            assert {"Nguyễn", "Petrov", "Khan", "Atkins", "West"} <= surnames  # left out of Mavis, not of the files
        else:
            assert {r["CHILD_LAST_NAME"] for r in in_mavis} >= {"Ştefan", "Okafor", "Brown"}
            assert {"Al-Farsi", "Țuca"} <= surnames and not {"Shah", "Lund"} & surnames
    assert left_out == LEFT_OUT
