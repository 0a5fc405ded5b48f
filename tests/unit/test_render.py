import csv
import io
import json
from datetime import date

import pytest
from sais_delivery.domain.render import (
    Row,
    field_definitions,
    manifest,
    programme_file,
    safe_cell,
)
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("evil", ['=HYPERLINK("http://x","y")', "@SUM(A1:A2)", "+1", "-2+3", "\t=1", "＝1"])
def test_formula_injection_stays_text(evil):
    assert safe_cell(evil) == "'" + evil


def test_plain_values_are_untouched():
    assert safe_cell("O'Brien") == "O'Brien" and safe_cell("Smith-Jones") == "Smith-Jones"


def _row(surname, school="B School", yg="2"):
    return Row("flu", None, "9372001", school, yg, surname, "Zoë", date(2012, 1, 1), "F", ["1 High St"], "CV34 4RL")


def test_programme_file_is_sorted_for_the_sais_team_and_keeps_unicode():
    f = programme_file(
        "flu.csv", [_row("Young"), _row("=cmd|' /C calc'!A0"), _row("Adams", yg="R"), _row("Brown", school="A School")]
    )
    rows = list(csv.reader(io.StringIO(f.content.decode("utf-8-sig"))))
    assert rows[0][0] == "School DfE number"
    assert [r[3] for r in rows[1:]] == ["Brown", "Adams", "'=cmd|' /C calc'!A0", "Young"]
    assert rows[1][4] == "Zoë" and rows[2][2] == "R" and rows[3][2] == "2"
    assert f.rows == 4 and len(f.sha256) == 64


def test_field_definitions_and_manifest_come_from_the_protocol():
    p = load_protocol()
    defs = field_definitions(p)
    text = defs.content.decode("utf-8-sig")
    assert all(fd.label in text for fd in p.dataset)
    m = json.loads(
        manifest(
            batch_id="b",
            protocol=p,
            window="july",
            academic_year="2017/18",
            files=[defs],
            sources=[],
            counts={"flu": 1},
            delete_by=date(2017, 10, 10),
            prepared_at="t",
            replaces_batch=None,
        ).content
    )
    assert m["protective_marking"] == p.protective_marking and m["originator"] == p.originator_label
    assert m["files"][0]["sha256"] == defs.sha256 and m["delete_by"] == "2017-10-10"


def test_every_column_of_a_programme_file_has_its_definition_and_the_values_fit_it():
    from sais_delivery.domain.render import COLUMNS, FILE_COLUMNS, Row, programme_file

    p = load_protocol()
    defs = list(csv.reader(field_definitions(p).content.decode("utf-8-sig").splitlines()))[1:]
    defined = {name for name, _ in defs}
    for c in FILE_COLUMNS:
        assert c.header in defined or (c.field == "address" and "Address lines 1-5" in defined), c.header
    assert len(defs) == len({c.field or c.header for c in FILE_COLUMNS})  # one definition each, no extra
    year_def = next(d for n, d in defs if n == "Year group")
    assert "R = Reception, 1-14" in year_def
    hpv = Row("hpv", 1, "9372001", "S", "8", "A", "B", date(2010, 1, 1), "F", ["1 St"], "CV34 4RL")
    flu = Row("flu", None, "9372001", "S", "R", "A", "C", date(2013, 1, 1), "M", ["1 St"], "CV34 4RL")
    rows = list(csv.reader(programme_file("x.csv", [hpv, flu]).content.decode("utf-8-sig").splitlines()))
    assert rows[0] == COLUMNS
    year, dose = COLUMNS.index("Year group"), COLUMNS.index("Dose")
    assert {r[year] for r in rows[1:]} == {"8", "R"}  # R or the number, as defined
    assert {r[dose] for r in rows[1:]} == {"1", ""}
    dose_def = next(d for n, d in defs if n == "Dose")
    assert "one dose from 2023/24, shown as 1" in dose_def and "Blank for programmes given once" in dose_def


def test_a_child_whose_school_is_not_yet_known_is_shown_so_and_the_definitions_say_why():
    unknown = Row("flu", None, "", "", "7", "Khan", "Amir", date(2009, 3, 4), "M", ["1 St"], "CV34 4RL")
    rows = list(
        csv.reader(programme_file("flu.csv", [unknown, _row("Young")]).content.decode("utf-8-sig").splitlines())
    )
    amir = next(r for r in rows[1:] if r[3] == "Khan")
    assert amir[:3] == ["", "School not yet known", "7"]
    defs = dict(list(csv.reader(field_definitions(load_protocol()).content.decode("utf-8-sig").splitlines()))[1:])
    assert "'School not yet known'" in defs["School name"] and "never shown" in defs["School name"]
    assert "Blank when the school is not yet known" in defs["School DfE number"]
