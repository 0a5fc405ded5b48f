"""Mavis cohort-import files: the columns and values Mavis expects, its rules applied by the checker
(on good files and hand-made bad ones), splitting at 20,000 rows by school, and the schools register."""

import csv
import io
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from sais_delivery.domain import mavis
from sais_delivery.domain.mavis import MAVIS_COLUMNS, check_mavis, files_from_lines, verdict
from sais_delivery.domain.render import Row
from sais_shared.schools import RegisterError, parse_register

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SAMPLE_REGISTER = REPO / "data" / "reference" / "gias-establishments-sample.csv"
REGISTER = {"9372001": ("700002", "Open"), "9372099": ("700010", "Closed")}


def row(
    surname="Jiménez", forename="Anne-Marie", school="9372001", yg="R", gender="F", lines=None, postcode="CV34 4RL"
):
    lines = ["12 Mill Lane", "Emscote", "Warwick", "Warwickshire"] if lines is None else lines
    return Row("flu", None, school, "Telford Infant School", yg, surname, forename, date(2012, 9, 1), gender, lines,
               postcode)  # fmt: skip


def parsed(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def one_file(rows) -> bytes:
    lines = [v.line for v in (verdict(r, REGISTER) for r in rows) if v.line]
    [(name, content, n)] = files_from_lines("mavis-cohort-flu-2017-18", lines)
    return content


def test_a_row_as_mavis_reads_it():
    [r] = parsed(one_file([row()]))
    assert list(r) == MAVIS_COLUMNS
    assert (r["CHILD_FIRST_NAME"], r["CHILD_LAST_NAME"]) == ("Anne-Marie", "Jiménez")
    assert r["CHILD_DATE_OF_BIRTH"] == "2012-09-01" and r["CHILD_GENDER"] == "Female"
    assert r["CHILD_YEAR_GROUP"] == "0"  # Reception
    assert (r["CHILD_ADDRESS_LINE_1"], r["CHILD_ADDRESS_LINE_2"], r["CHILD_TOWN"]) == (
        "12 Mill Lane",
        "Emscote",
        "Warwick",
    )
    assert r["CHILD_POSTCODE"] == "CV34 4RL" and r["CHILD_SCHOOL_URN"] == "700002"
    assert all(r[c] == "" for c in MAVIS_COLUMNS if c.startswith(("PARENT_", "CHILD_NHS", "CHILD_PREFERRED")))


def test_gender_and_year_group_vocabularies():
    rows = parsed(one_file([row(gender="M", yg="9", forename="Amir"), row(gender="U", yg="3", forename="Bo")]))
    assert {(r["CHILD_GENDER"], r["CHILD_YEAR_GROUP"]) for r in rows} == {("Male", "9"), ("Not known", "3")}


def test_a_child_whose_school_is_not_yet_known_has_mavis_s_unknown_school_urn():
    assert parsed(one_file([row(school="")]))[0]["CHILD_SCHOOL_URN"] == "888888"


@pytest.mark.parametrize(
    ("kw", "reason"),
    [
        ({"school": "9372050"}, "school not in the schools register"),
        ({"school": "9372099"}, "school closed in the schools register"),
        ({"forename": "J0hn"}, "CHILD_FIRST_NAME must use letters"),
        ({"surname": "Smith (twin)"}, "CHILD_LAST_NAME must use letters"),
        ({"postcode": "CV99"}, "CHILD_POSTCODE should be a postcode"),
    ],
)
def test_a_row_mavis_would_refuse_is_left_out_with_its_reason(kw, reason):
    v = verdict(row(**kw), REGISTER)
    assert v.line is None and v.reason.startswith(reason)


def test_an_address_line_that_could_be_a_formula_stays_text():
    [r] = parsed(one_file([row(lines=["=HYPERLINK(1)", "Warwick"])]))
    assert r["CHILD_ADDRESS_LINE_1"] == "'=HYPERLINK(1)"


GOOD = ",".join(MAVIS_COLUMNS) + "\r\n"
CELLS = {"CHILD_FIRST_NAME": "Ada", "CHILD_LAST_NAME": "O'Hare", "CHILD_DATE_OF_BIRTH": "04/03/2010",
         "CHILD_POSTCODE": "CV34 4RL", "CHILD_SCHOOL_URN": "700002"}  # fmt: skip


def line(**over) -> str:
    values = {**CELLS, **over}
    return ",".join(values.get(c, "") for c in MAVIS_COLUMNS) + "\r\n"


def test_the_checker_passes_a_minimal_valid_file():
    c = check_mavis((GOOD + line() + line(CHILD_FIRST_NAME="Chloë", CHILD_GENDER="Not specified")).encode())
    assert c.ok and c.rows == 2


@pytest.mark.parametrize(
    ("over", "column", "reason"),
    [
        ({"CHILD_FIRST_NAME": ""}, "CHILD_FIRST_NAME", "is required but missing"),
        ({"CHILD_LAST_NAME": "x" * 301}, "CHILD_LAST_NAME", "greater than 300"),
        ({"CHILD_DATE_OF_BIRTH": "2010/03/04"}, "CHILD_DATE_OF_BIRTH", "YYYY-MM-DD or DD/MM/YYYY"),
        ({"CHILD_GENDER": "Boy"}, "CHILD_GENDER", "must be one of"),
        ({"CHILD_YEAR_GROUP": "R"}, "CHILD_YEAR_GROUP", "not a valid year group"),
        ({"CHILD_POSTCODE": ""}, "CHILD_POSTCODE", "is required"),
        ({"CHILD_POSTCODE": "CV34"}, "CHILD_POSTCODE", "should be a postcode"),
        ({"CHILD_SCHOOL_URN": "70002"}, "CHILD_SCHOOL_URN", "must be 6 digits"),
        ({"CHILD_NHS_NUMBER": "123"}, "CHILD_NHS_NUMBER", "10 characters"),
        ({"PARENT_1_RELATIONSHIP": "Mum"}, "PARENT_1_RELATIONSHIP", "must be blank"),
    ],
)
def test_the_checker_rejects_a_bad_row_naming_row_and_column(over, column, reason):
    c = check_mavis((GOOD + line() + line(**over)).encode())
    assert not c.ok
    [(number, col, why)] = c.problems
    assert (number, col) == (3, column) and reason in why  # the header is row 1


def test_the_checker_rejects_headers_mavis_does_not_know_or_needs():
    no_urn = ",".join(c for c in MAVIS_COLUMNS if c != "CHILD_SCHOOL_URN") + "\r\n"
    assert check_mavis(no_urn.encode()).problems == [(1, "CHILD_SCHOOL_URN", "is missing from the header row")]
    extra = GOOD.strip() + ",SCHOOL\r\n"
    assert (1, "SCHOOL", "is not a column of Mavis's cohort import") in check_mavis(extra.encode()).problems


def test_the_checker_knows_the_register_s_urns_when_given_them():
    content = (GOOD + line() + line(CHILD_SCHOOL_URN="123456") + line(CHILD_SCHOOL_URN="888888")).encode()
    assert check_mavis(content, {"700002"}).problems == [
        (3, "CHILD_SCHOOL_URN", "is not a school URN Mavis recognises")
    ]


def test_the_checker_refuses_more_than_20000_rows():
    c = check_mavis((GOOD + line() * 20_001).encode())
    assert c.rows == 20_001 and c.problems == [(0, "", "20001 rows: Mavis takes at most 20000 in one file")]


def test_more_than_20000_rows_are_split_by_school_and_every_file_passes():
    register = {f"93720{i:02d}": (f"7000{i:02d}", "Open") for i in range(10)}
    rows = [row(school=f"93720{i % 10:02d}", forename=f"Ann{chr(97 + n % 26)}{chr(97 + n // 26 % 26)}",
                surname="Lee" + chr(97 + n // 676 % 26)) for n, i in enumerate(range(25_000))]  # fmt: skip
    lines = [verdict(r, register).line for r in rows]
    files = files_from_lines("mavis-cohort-flu-2017-18", lines)
    assert [n for _, _, n in files] == [20_000, 5_000] and files[0][0] == "mavis-cohort-flu-2017-18-1of2.csv"
    urns = [{r["CHILD_SCHOOL_URN"] for r in parsed(content)} for _, content, _ in files]
    assert not urns[0] & urns[1]  # whole schools per file
    assert all(check_mavis(content).ok for _, content, _ in files)


def test_one_school_larger_than_the_cap_is_sliced_alone():
    assert list(mavis.split_by_school([("a", 5), ("b", 12), ("c", 3)], cap=10)) == [
        [("a", 0, 5)],
        [("b", 0, 10)],
        [("b", 10, 12)],
        [("c", 0, 3)],
    ]


def test_the_sample_register_reads_like_a_gias_export():
    schools = {s.dfe: s for s in parse_register(SAMPLE_REGISTER.read_bytes())}
    assert schools["9372000"].urn == "700001" and (schools["9372000"].first_year, schools["9372000"].last_year) == (
        "R",
        "2",
    )
    assert (schools["9374008"].first_year, schools["9374008"].last_year) == ("7", "13")
    assert (schools["9372002"].first_year, schools["9372002"].last_year) == ("3", "6")
    assert not schools["9372099"].is_open and schools["9372099"].close_date == date(2016, 8, 31)
    assert schools["8852001"].la_code == "885"


def test_the_register_keeps_the_open_school_of_a_reused_number_and_reads_windows_1252():
    head = "URN,LA (code),EstablishmentNumber,EstablishmentName,EstablishmentStatus (name)\r\n"
    content = (head + "100001,937,2001,Old Sch\xf6ol,Closed\r\n100002,937,2001,New School,Open\r\n").encode("cp1252")
    [s] = parse_register(content)
    assert (s.urn, s.name) == ("100002", "New School")


def test_a_bad_register_names_the_row():
    with pytest.raises(RegisterError, match="row 1: not a GIAS establishment export"):
        parse_register(b"a,b\r\n1,2\r\n")
    head = "URN,LA (code),EstablishmentNumber,EstablishmentName,EstablishmentStatus (name)\r\n"
    with pytest.raises(RegisterError, match="row 3, URN: 6 digits"):
        parse_register((head + "100001,937,2001,A,Open\r\n12,937,2002,B,Open\r\n").encode())


def test_sais_delivery_check_mavis_reports_row_and_reason_and_exits_1(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text(GOOD + line() + line(CHILD_POSTCODE="nope"))
    good = tmp_path / "good.csv"
    good.write_text(GOOD + line())
    sais = str(Path(sys.executable).with_name("sais"))
    r = subprocess.run([sais, "delivery", "check-mavis", str(good), str(bad)], capture_output=True, text=True)
    assert r.returncode == 1
    assert "good.csv: 1 rows, passes" in r.stdout and "row 3: CHILD_POSTCODE should be a postcode" in r.stdout
    assert "nope" not in r.stdout  # never the value
    r = subprocess.run([sais, "delivery", "check-mavis", str(good), "--register", str(SAMPLE_REGISTER)],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_quality_view_flags_what_the_register_says_about_the_cohort_s_schools():
    from sais_eligibility.domain.model import school_flags

    rows = [
        {"school_dfe": "9372050", "year_group": "3", "n": 4, "registered": False, "status": None, "la_code": None,
         "first_year": None, "last_year": None},
        {"school_dfe": "9372099", "year_group": "1", "n": 2, "registered": True, "status": "Closed", "la_code": "937",
         "first_year": "R", "last_year": "2"},
        {"school_dfe": "8852001", "year_group": "4", "n": 1, "registered": True, "status": "Open", "la_code": "885",
         "first_year": "R", "last_year": "6"},
        {"school_dfe": "9372000", "year_group": "3", "n": 5, "registered": True, "status": "Open", "la_code": "937",
         "first_year": "R", "last_year": "2"},
        {"school_dfe": "9372005", "year_group": "3", "n": 9, "registered": True, "status": "Open", "la_code": "937",
         "first_year": "R", "last_year": "6"},
    ]  # fmt: skip
    flags = {(f["school_dfe"], f["flag"].split(" (")[0]): f["children"] for f in school_flags(rows, ["937"])}
    assert flags == {
        ("9372050", "not in the schools register"): 4,
        ("9372099", "closed"): 2,
        ("8852001", "outside the authority"): 1,
        ("9372000", "Year 3 outside the school's age range"): 5,
    }
