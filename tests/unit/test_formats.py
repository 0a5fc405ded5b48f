"""Every input format and variant a data officer produces gives the same clean rows."""

from datetime import date
from pathlib import Path

import openpyxl
import pytest
from sais_ingest.adapters.readers import inspect_file, open_extract
from sais_ingest.domain.extract import classify, header_mapping
from sais_ingest.domain.model import CleanRow, ExtractFileError, Rejected
from sais_shared.protocol import load_protocol

pytestmark = pytest.mark.unit
PROTOCOL = load_protocol()
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPECTED = [
    ("9372001", "2", "Núñez", "Zoë", date(2010, 3, 1), "F", "CV34 4RL"),
    ("9372001", "1", "O'Brien", "Seán", date(2011, 7, 15), "M", "CV8 1AB"),
]


def outcomes(path: Path, source="summer-census", ref=date(2017, 5, 18)):
    facts = inspect_file(path)
    reader = open_extract(path, facts)
    rows = reader.rows()
    _, headers = next(rows)
    mapping, dropped = header_mapping(headers)
    return [
        o for _, o in classify(rows, mapping, rule=PROTOCOL.source(source), protocol=PROTOCOL, reference_date=ref)
    ], dropped


def clean(os):
    return [
        (o.school_dfe, o.year_group, o.surname, o.forename, o.date_of_birth, o.gender, o.postcode)
        for o in os
        if isinstance(o, CleanRow)
    ]


CSV_VARIANTS = {
    "utf8-bom-crlf": (
        "\ufeffSchool DfE Number,School Name,NC Year,Legal Surname,Legal Forename,DOB,Gender,"
        "Address Line 1,Postcode,UPN\r\n9372001,Emscote,2,Núñez,Zoë,01/03/2010,F,1 High St,cv34 4rl,A1\r\n"
        "937/2001,Emscote,Year 1,O'Brien,Seán,15/7/2011,Male,3 Church Lane,CV81AB,A2\r\n\r\n\r\n",
        "utf-8",
    ),
    "utf8-lf-aliases": (
        "  dfe no ,SCHOOL,year group,surname,first name,date of birth,sex,address 1,post code,,\n"
        "9372001,Emscote,Y2,Núñez,Zoë,2010-03-01,female,1 High St,CV34 4RL,,\n"
        "9372001,Emscote,1,O'Brien,Seán,2011-07-15,m,3 Church Lane,CV8 1AB,,\n",
        "utf-8",
    ),
    "windows-1252": (
        "LAESTAB,School Name,Year Group,Surname,Forename,DOB,Gender,Address Line 1,Postcode\r\n"
        "9372001,Emscote,Year 2,Núñez,Zoë,01/03/2010,F,1 High St,CV34 4RL\r\n"
        "9372001,Emscote,Y1,O'Brien,Seán,15/07/2011,M,3 Church Lane,CV8 1AB\r\n",
        "cp1252",
    ),
    "quoted-commas-newlines": (
        "School DfE Number,School Name,Year Group,Surname,Forename,DOB,Gender,Address Line 1,"
        'Postcode\n9372001,"Emscote, Warwick",2,Núñez,Zoë,01/03/2010,F,"1 High St\nFlat 2",'
        '"CV34 4RL"\n9372001,"Emscote ""Infant""",1,O\'Brien,Seán,15/07/2011,M,3 Church Lane,'
        "CV8 1AB\n",
        "utf-8",
    ),
    "bs7666-address": (
        "DfE No,School,Year Group,Surname,Forename,Date of Birth,Sex,SAON,PAON,Street,Town,County,"
        "Post Code\n9372001,Emscote,Year 2,Núñez,Zoë,01/03/2010,F,Flat 2,14,Mill Lane,Warwick,"
        "Warwickshire,CV34 4RL\n"
        "9372001,Emscote,1,O'Brien,Seán,15/07/2011,M,,3,Church Lane,Kenilworth,,CV8 1AB\n",
        "utf-8",
    ),
}


@pytest.mark.parametrize("variant", sorted(CSV_VARIANTS))
def test_csv_variants_give_the_same_rows(variant, tmp_path):
    text, enc = CSV_VARIANTS[variant]
    p = tmp_path / f"{variant}.csv"
    p.write_bytes(text.encode(enc))
    got, _ = outcomes(p)
    assert clean(got) == EXPECTED
    if variant == "bs7666-address":
        assert got[0].address_lines == ["Flat 2", "14 Mill Lane", "Warwick", "Warwickshire"]
    if variant == "quoted-commas-newlines":
        assert got[0].school_name == "Emscote, Warwick" and got[0].address_lines == ["1 High St Flat 2"]


def test_xlsx_workbook_with_real_dates_and_numbers(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append([])  # a blank row above the header, as people leave them
    ws.append(
        [
            "School DfE Number",
            "School Name",
            "NC Year",
            "Surname",
            "Forename",
            "DOB",
            "Gender",
            "Address Line 1",
            "Postcode",
            "Ethnicity",
        ]
    )
    ws.append([9372001, "Emscote", 2, "Núñez", "Zoë", date(2010, 3, 1), "F", "1 High St", "CV34 4RL", "WBRI"])
    ws.append([9372001.0, "Emscote", "Y1", "O'Brien", "Seán", "15/07/2011", "M", "3 Church Lane", "CV8 1AB", "WIRI"])
    ws.append(["9372001", "Emscote", 1, "Hall", "Robin", "01/01/15", "M", "5 Church Lane", "CV8 1AB", ""])
    p = tmp_path / "census.xlsx"
    wb.save(p)
    got, dropped = outcomes(p)
    assert clean(got) == EXPECTED and dropped == ["Ethnicity"]
    rejected = [o for o in got if isinstance(o, Rejected)]
    assert [(o.row_number, o.problems[0].field) for o in rejected] == [(5, "date_of_birth")]  # Excel's row 5


def test_common_transfer_file_xml():
    got, _ = outcomes(FIXTURES / "ctf-may-2017.xml")
    assert clean(got) == [
        ("9372001", "2", "Núñez", "Zoë", date(2010, 3, 1), "F", "CV34 4RL"),
        ("9372001", "1", "O'Brien", "Seán", date(2011, 7, 15), "M", "CV8 1AB"),
    ]
    cleaned = [o for o in got if isinstance(o, CleanRow)]
    assert cleaned[0].address_lines == ["Flat 2", "14 Mill Lane", "Warwick", "Warwickshire"]  # not the parent's
    assert [o.problems[0].code for o in got if isinstance(o, Rejected)] == ["date_of_birth.format"]


@pytest.mark.parametrize("name", ["ctf-billion-laughs.xml", "ctf-external-entity.xml"])
def test_xml_entity_attacks_are_refused(name):
    with pytest.raises(ExtractFileError, match="DTD or entities"):
        outcomes(FIXTURES / name)


def test_not_a_workbook_is_a_clear_error(tmp_path):
    p = tmp_path / "fake.xlsx"
    p.write_text("not a zip")
    with pytest.raises(ExtractFileError, match="xlsx"):
        outcomes(p)
