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
