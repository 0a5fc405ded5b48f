import pytest
from sais_ingest.adapters.readers import CsvExtract, inspect_file

pytestmark = pytest.mark.unit


def _rows(path):
    facts = inspect_file(path)
    return facts, list(CsvExtract(path, facts.encoding).rows())


def test_utf8_bom_crlf_and_quoted_newlines(tmp_path):
    p = tmp_path / "a.csv"
    p.write_bytes('\ufeffSurname,Address Line 1\r\nNúñez,"1 High St\r\nFlat 2"\r\n\r\nO\'Brien,x\r\n'.encode())
    facts, rows = _rows(p)
    assert facts.encoding == "utf-8-sig"
    assert rows[0] == (0, ["Surname", "Address Line 1"])
    assert rows[1] == (2, ["Núñez", "1 High St\r\nFlat 2"])
    assert rows[3] == (4, ["O'Brien", "x"])  # the blank line still counts as a spreadsheet row


def test_windows_1252_from_excel(tmp_path):
    p = tmp_path / "b.csv"
    p.write_bytes("Surname\r\nZoë Müller\r\n".encode("cp1252"))
    facts, rows = _rows(p)
    assert facts.encoding == "cp1252" and rows[1] == (2, ["Zoë Müller"])


def test_blank_lines_above_header_are_skipped(tmp_path):
    p = tmp_path / "c.csv"
    p.write_text("\n\nSurname\nSmith\n")
    _, rows = _rows(p)
    assert rows[0][1] == ["Surname"] and rows[1] == (4, ["Smith"])


def test_a_title_row_above_the_header_is_skipped_and_row_numbers_stay_the_spreadsheets(tmp_path):
    p = tmp_path / "titled.csv"
    p.write_text(
        "Summer census 2017 extract,,\r\n"
        "Produced for the school nursing service,,\r\n"
        ",,\r\n"
        "Surname,Forename,Postcode\r\n"
        "Núñez,Zoë,CV34 4RL\r\n"
        ",,\r\n"
        "O'Brien,Sean,CV34 4RL\r\n",
        encoding="utf-8",
    )
    facts = inspect_file(p)
    reader = CsvExtract(p, facts.encoding)
    rows = list(reader.rows())
    assert rows[0] == (0, ["Surname", "Forename", "Postcode"]) and reader.header_row == 4
    assert [n for n, cells in rows[1:] if any(cells)] == [5, 7]  # as the spreadsheet numbers them


def test_a_header_on_the_first_row_is_still_taken_there(tmp_path):
    p = tmp_path / "plain.csv"
    p.write_text("Surname,Forename\r\nSmith,Ann\r\n", encoding="utf-8")
    reader = CsvExtract(p, inspect_file(p).encoding)
    assert list(reader.rows()) == [(0, ["Surname", "Forename"]), (2, ["Smith", "Ann"])] and reader.header_row == 1


def test_a_data_row_is_never_taken_for_the_header(tmp_path):
    p = tmp_path / "noheader.csv"
    p.write_text("Smith,Ann,CV34 4RL\r\nJones,Bob,CV34 4RL\r\n", encoding="utf-8")
    reader = CsvExtract(p, inspect_file(p).encoding)
    rows = list(reader.rows())
    assert rows[0] == (0, ["Smith", "Ann", "CV34 4RL"])  # nothing matches: the first row, refused later as such


def test_an_excel_title_row_is_skipped_too(tmp_path):
    import openpyxl
    from sais_ingest.adapters.readers import XlsxExtract

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["Summer census 2017 extract"])
    ws.append(["Surname", "Forename", "Date of birth"])
    ws.append(["Smith", "Ann", "01/02/2012"])
    p = tmp_path / "titled.xlsx"
    wb.save(p)
    reader = XlsxExtract(p)
    rows = list(reader.rows())
    assert rows[0] == (0, ["Surname", "Forename", "Date of birth"]) and reader.header_row == 2
    assert rows[1] == (3, ["Smith", "Ann", "01/02/2012"])
