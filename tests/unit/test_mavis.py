"""Mavis cohort-import files as written: the columns and values Mavis expects, rows Mavis would refuse
left out with a reason, the year groups for the day of upload, splitting at 10,000 rows by school, one
child once per file, and the schools register as GIAS ships it."""

import csv
import io
import zipfile
from datetime import date
from pathlib import Path

import pytest
from sais_delivery.domain import mavis
from sais_delivery.domain import mavis_rules as rules
from sais_delivery.domain.mavis import MAVIS_COLUMNS, Upload, files_from_lines, verdict
from sais_delivery.domain.mavis_rules import Team, check_file
from sais_delivery.domain.render import Row
from sais_shared.schools import RegisterError, parse_register, read_register
from sais_shared.schoolyear import academic_year_start

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
SAMPLE_REGISTER = REPO / "data" / "reference" / "gias-establishments-sample.csv"
REGISTER = {"9372001": ("700002", "Open"), "9372099": ("700010", "Closed"), "9372003": ("700004", "Open")}
UPLOAD = Upload(2017)  # the files of a 2017/18 batch


def row(surname="Jiménez", forename="Anne-Marie", school="9372001", yg="R", gender="F", lines=None,
        postcode="CV34 4RL", dob=date(2012, 9, 1)):  # fmt: skip
    lines = ["12 Mill Lane", "Emscote", "Warwick", "Warwickshire"] if lines is None else lines
    return Row("flu", None, school, "Telford Infant School", yg, surname, forename, dob, gender, lines, postcode)


def parsed(content: bytes) -> list[dict]:
    return list(csv.DictReader(io.StringIO(content.decode("utf-8"))))


def one_file(rows, upload=UPLOAD) -> bytes:
    lines = [v.line for v in (verdict(r, REGISTER, upload) for r in rows) if v.line]
    [(_name, content, _n)], repeated = files_from_lines("mavis-cohort-flu-2017-18", lines)
    assert not repeated
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
        ({"forename": "Иван"}, "CHILD_FIRST_NAME includes invalid character(s)"),
        ({"forename": "Nguyễn"}, "CHILD_FIRST_NAME includes invalid character(s)"),
        ({"surname": "Smith (twin)"}, "CHILD_LAST_NAME includes invalid character(s)"),
        ({"postcode": "CV34 4XC"}, "CHILD_POSTCODE should be a postcode"),
        ({"postcode": "BFPO 123"}, "CHILD_POSTCODE should be a postcode"),
        ({"yg": "12", "dob": date(2001, 1, 5)}, "CHILD_YEAR_GROUP is not part of this programme"),
    ],
)
def test_a_row_mavis_would_refuse_is_left_out_with_its_reason(kw, reason):
    v = verdict(row(**kw), REGISTER, UPLOAD)
    assert v.line is None and v.reason.startswith(reason)


@pytest.mark.parametrize("kw", [{"forename": "J."}, {"surname": "St. John"}, {"surname": "'t Hooft"},
                                {"forename": "Henry 8"}, {"postcode": "ZZ99 3VZ"}, {"postcode": "ZZ99 3CZ"}])  # fmt: skip
def test_rows_mavis_accepts_are_written(kw):
    assert verdict(row(**kw), REGISTER, UPLOAD).line is not None


def test_the_team_s_schools_and_year_groups_decide_when_the_protocol_names_them():
    team = Upload(2017, Team(schools=frozenset({"700002"}), year_groups=frozenset(range(0, 14))))
    assert verdict(row(), REGISTER, team).line is not None
    outside = verdict(row(school="9372003"), REGISTER, team)
    assert outside.line is None and outside.reason.startswith("CHILD_SCHOOL_URN The school URN is not recognised")
    assert verdict(row(yg="12", dob=date(2001, 1, 5)), REGISTER, team).line is not None  # a team with Years 12-13
    split = Upload(2017, Team(schools=frozenset({"700002A", "700002B"})))
    assert "split into sites" in verdict(row(), REGISTER, split).reason


def test_the_same_child_twice_is_written_once_and_twins_twice():
    """Two rows that trace to one child fail a whole Mavis import (patient_import.rb:79)."""
    rows = [row(), row(school="9372003"), row(forename="Anne-Marie ".upper().strip()), row(forename="Rosa")]
    lines = [verdict(r, REGISTER, UPLOAD).line for r in rows]
    [(_, content, n)], repeated = files_from_lines("mavis-cohort-flu-2017-18", lines)
    assert n == 2 and sorted(repeated) == ["9372001", "9372003"]
    assert check_file(content, academic_year=2017, team=Team()).ok


def test_a_july_reception_child_s_year_group_is_right_on_the_upload_day_the_manifest_gives():
    """A Reception child for 2017/18, born in November 2012, in a file sent on 10 July 2017."""
    child = row(yg="R", dob=date(2012, 11, 20))
    [r] = parsed(one_file([child]))
    assert r["CHILD_YEAR_GROUP"] == "0"
    first, last = UPLOAD.upload_window(date(2017, 7, 10))
    assert (first, last) == (date(2017, 8, 1), date(2018, 7, 31))
    year = rules.import_academic_year(first)  # what Mavis reads the file against on that day
    assert year - int(r["CHILD_YEAR_GROUP"]) - 5 == academic_year_start(child.date_of_birth)  # stored as born
    assert rules.import_academic_year(date(2017, 7, 10)) == 2016  # uploaded in July, Mavis would read 2016/17
    assert UPLOAD.upload_window(date(2017, 12, 12))[0] == date(2017, 12, 12)  # December: at once


def test_an_address_line_that_could_be_a_formula_stays_text():
    [r] = parsed(one_file([row(lines=["=HYPERLINK(1)", "Warwick"])]))
    assert r["CHILD_ADDRESS_LINE_1"] == "'=HYPERLINK(1)"


def test_more_than_10000_rows_are_split_by_school_and_every_file_passes():
    register = {f"93720{i:02d}": (f"7000{i:02d}", "Open") for i in range(10)}
    rows = [row(school=f"93720{i % 10:02d}", forename=f"Ann{chr(97 + n % 26)}{chr(97 + n // 26 % 26)}",
                surname="Lee" + chr(97 + n // 676 % 26)) for n, i in enumerate(range(12_500))]  # fmt: skip
    lines = [verdict(r, register, UPLOAD).line for r in rows]
    files, repeated = files_from_lines("mavis-cohort-flu-2017-18", lines)
    assert not repeated
    assert [n for _, _, n in files] == [10_000, 2_500] and files[0][0] == "mavis-cohort-flu-2017-18-1of2.csv"
    urns = [{r["CHILD_SCHOOL_URN"] for r in parsed(content)} for _, content, _ in files]
    assert not urns[0] & urns[1]  # whole schools per file
    assert all(check_file(content, academic_year=2017, team=Team()).ok for _, content, _ in files)
    lines = [verdict(r, register, UPLOAD).line for r in rows]
    assert [n for _, _, n in files_from_lines("m", lines, max_rows=20_000)[0]] == [12_500]  # the setting


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


def test_a_file_that_is_not_a_register_is_refused_and_a_bad_row_is_skipped_and_named():
    with pytest.raises(RegisterError, match="row 1: not a GIAS establishment export"):
        parse_register(b"a,b\r\n1,2\r\n")
    head = "URN,LA (code),EstablishmentNumber,EstablishmentName,EstablishmentStatus (name)\r\n"
    read = read_register((head + "100001,937,2001,A,Open\r\n12,937,2002,B,Open\r\n").encode())
    assert [s.urn for s in read.schools] == ["100001"] and read.skipped == [(3, "URN: 6 digits expected")]


def gias_zip(tmp_path: Path) -> Path:
    """A GIAS download as DfE ships it: a zip holding edubasealldata<date>.csv, 139 quoted columns,
    Windows-1252, dates DD-MM-YYYY; one row malformed (too few cells) and one with a byte Windows-1252
    leaves undefined."""
    names = ["URN", "LA (code)", "LA (name)", "EstablishmentNumber", "EstablishmentName",
             "TypeOfEstablishment (name)", "EstablishmentStatus (name)", "OpenDate", "CloseDate",
             "PhaseOfEducation (name)", "StatutoryLowAge", "StatutoryHighAge", "Postcode"]  # fmt: skip
    columns = names + [f"Column{i}" for i in range(139 - len(names))]

    def rec(*values: str) -> str:
        cells = list(values) + [""] * (len(columns) - len(values))
        return ",".join(f'"{c}"' for c in cells)

    body = [
        rec(*columns),
        rec("700002", "937", "Warwickshire", "2001", "Telford Infant Sch\u00f6ol", "Community school", "Open",
            "01-09-1990", "", "Primary", "4", "7", "CV32 7HP"),
        '"700003","937","Warwickshire"',  # malformed: cut short
        rec("700004", "937", "Warwickshire", "2003", "St Mary\u2019s", "Voluntary aided school", "Closed",
            "01-09-1980", "31-08-2016", "Primary", "4", "11", "CV34 4RL"),
    ]  # fmt: skip
    content = ("\r\n".join(body) + "\r\n").encode("cp1252").replace(b"Mary", b"Ma\x81ry")
    path = tmp_path / "edubase-download.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("edubasealldata20170710.csv", content)
    return path


def test_the_register_reads_gias_s_zip_with_a_bad_row_and_an_undefined_byte(tmp_path):
    read = read_register(gias_zip(tmp_path).read_bytes())
    assert [(s.dfe, s.urn, s.is_open) for s in read.schools] == [
        ("9372001", "700002", True),
        ("9372003", "700004", False),
    ]
    assert read.skipped == [(3, "3 cells; the header has 139")] and read.unreadable_bytes == 1
    assert read.schools[0].name == "Telford Infant Schöol"


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
