"""Files people and programs really make, and files made to hurt: each is read as meant, or refused by
name with the cap or the cause it hit (the real readers, no servers)."""

import codecs
import os
import zipfile

import openpyxl
import pytest
from sais_ingest.adapters.readers import ReadLimits, inspect_file, open_extract
from sais_ingest.domain.extract import header_mapping
from sais_ingest.domain.model import CleanRow, ExtractFileError, Rejected
from sais_ingest.domain.validation import validate_row
from sais_shared.protocol import load_protocol

from tests.helpers import REPO

pytestmark = pytest.mark.unit
MAY = REPO / "data" / "samples" / "may-census-2017.csv"
HEADER = "Legal Surname,Legal Forename,DOB,Gender,NCyearActual,School DfE Number,School Name,Address Line 1,Postcode"
ROW = "Nguyen,An,15/01/2012,F,R,9372006,Woodloes Primary School,63 Station Road,CV34 4FL"


def read(path, limits: ReadLimits | None = None):
    facts = inspect_file(path, limits)
    reader = open_extract(path, facts, limits)
    return facts, reader, list(reader.rows())


def refused(path, limits: ReadLimits | None = None) -> ExtractFileError:
    with pytest.raises(ExtractFileError) as err:
        read(path, limits)
    return err.value


def test_a_named_pipe_or_a_device_is_refused_before_it_is_opened(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    assert refused(fifo).code == "file.not-regular"
    with pytest.raises(ExtractFileError, match="not a regular file"):
        inspect_file(__import__("pathlib").Path("/dev/zero"))


def test_utf16_without_a_bom_is_read_as_utf16(tmp_path):
    p = tmp_path / "u16.csv"
    p.write_bytes(f"{HEADER}\r\n{ROW}\r\n".encode("utf-16-le"))
    facts, _, rows = read(p)
    assert facts.encoding == "utf-16-le" and rows[1] == (2, ROW.split(","))


def test_excel_unicode_text_is_utf16_with_a_bom_and_tabs(tmp_path):
    p = tmp_path / "unicode-text.txt"
    p.write_bytes(codecs.BOM_UTF16_LE + f"{HEADER}\r\n{ROW}\r\n".replace(",", "\t").encode("utf-16-le"))
    _, reader, rows = read(p)
    assert reader.delimiter == "\t" and rows[0][1][0] == "Legal Surname" and rows[1][1][0] == "Nguyen"


def test_a_workbook_renamed_csv_and_binary_junk_are_named_for_what_they_are(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(HEADER.split(","))
    p = tmp_path / "export.csv"
    wb.save(p)
    assert "Excel workbook (.xlsx)" in str(refused(p))
    junk = tmp_path / "junk.csv"
    junk.write_bytes(os.urandom(2048) + b"\x00" * 10)
    assert "not text" in str(refused(junk))
    xls = tmp_path / "old.csv"
    xls.write_bytes(b"\xd0\xcf\x11\xe0" + b"x" * 100)
    assert ".xls" in str(refused(xls))


def test_the_header_on_the_second_sheet_is_found_and_the_sheet_named(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.title = "Notes"
    wb.active.append(["This workbook was exported from SIMS"])
    data = wb.create_sheet("Pupils")
    data.append(HEADER.split(","))
    data.append(ROW.split(","))
    p = tmp_path / "two-sheets.xlsx"
    wb.save(p)
    _, reader, rows = read(p)
    assert reader.sheet == "Pupils" and rows[1] == (2, ROW.split(","))


def test_a_formula_with_no_saved_value_is_named_as_such(tmp_path):
    wb = openpyxl.Workbook()
    wb.active.append(HEADER.split(","))
    wb.active.append([*ROW.split(",")[:-1], '=UPPER("cv34 4fl")'])  # openpyxl saves no value for it
    p = tmp_path / "formula.xlsx"
    wb.save(p)
    err = refused(p)
    assert err.code == "file.formula-without-value" and "save it" in str(err) and "I2" in str(err)


def test_a_name_written_with_combining_accents_is_the_same_name(tmp_path):
    protocol = load_protocol()
    rule = protocol.source("summer-census")
    cells = ROW.split(",")
    mapping, _ = header_mapping(HEADER.split(","))
    for surname in ("Nguyễn", "Nguye\u0302\u0303n"):  # precomposed, and as macOS writes it (NFD)
        row = {mapping[i]: v for i, v in enumerate([surname, *cells[1:]])}
        out = validate_row(
            row, 2, source=rule, protocol=protocol, reference_date=__import__("datetime").date(2017, 5, 18)
        )
        assert isinstance(out, CleanRow) and out.surname == "Nguyễn"


def test_a_duplicated_header_column_is_refused_by_name():
    with pytest.raises(ExtractFileError, match="Postcode") as err:
        header_mapping([*HEADER.split(","), "Postcode"])
    assert err.value.code == "file.duplicate-column"


def test_a_first_row_error_is_row_1_never_row_0(tmp_path):
    p = tmp_path / "long-first.csv"
    p.write_text("x" * 2000 + "\n")
    err = refused(p, ReadLimits(max_line_chars=1000))
    assert "row 1 " in str(err) and "row 0" not in str(err)


def test_a_child_s_row_above_the_header_refuses_the_file(tmp_path):
    p = tmp_path / "row-above.csv"
    p.write_text(f"{ROW}\n{HEADER}\n{ROW}\n")
    err = refused(p)
    assert err.code == "file.row-above-header" and "row 1" in str(err)


def test_an_over_long_address_is_a_row_rejection_not_a_file_error():
    protocol = load_protocol()
    mapping, _ = header_mapping(HEADER.split(","))
    cells = ROW.split(",")
    cells[7] = "x" * 32_767  # the longest cell Excel writes: under the file's cap, over the field's
    row = {mapping[i]: v for i, v in enumerate(cells)}
    out = validate_row(
        row, 2, source=protocol.source("summer-census"), protocol=protocol,
        reference_date=__import__("datetime").date(2017, 5, 18),
    )  # fmt: skip
    assert isinstance(out, Rejected) and [p.code for p in out.problems] == ["address.too_long"]


@pytest.mark.parametrize(
    ("make", "limits", "code"),
    [
        (
            lambda p: p.write_text(HEADER + "\n" + "a," * 3000 + "\n"),
            ReadLimits(max_line_chars=5000),
            "file.line-too-long",
        ),
        (lambda p: p.write_text(HEADER + "\n" + "," * 300 + "x\n"), ReadLimits(), "file.too-many-columns"),
        (
            lambda p: p.write_text(HEADER + "\n" + ROW.replace("An", "A" * 40_000) + "\n"),
            ReadLimits(),
            "file.field-too-long",
        ),
        (
            lambda p: p.write_text(HEADER + "\n" + "\n" * 500 + ROW + "\n"),
            ReadLimits(max_blank_run=100),
            "file.blank-rows",
        ),
        (lambda p: p.write_text(HEADER + "\n" + (ROW + "\n") * 50), ReadLimits(max_rows=20), "file.too-many-rows"),
        (lambda p: p.write_text(HEADER + "\n" + ROW + "\n"), ReadLimits(max_file_bytes=10), "file.too-large"),
    ],
    ids=["delimiter-line", "wide-row", "huge-cell", "blank-run", "rows", "size"],
)
def test_each_cap_refuses_with_its_name(tmp_path, make, limits, code):
    p = tmp_path / "hostile.csv"
    make(p)
    assert refused(p, limits).code == code


def test_a_zip_bomb_workbook_is_refused_before_it_is_opened(tmp_path):
    p = tmp_path / "bomb.xlsx"
    wb = openpyxl.Workbook()
    wb.active.append(HEADER.split(","))
    wb.save(p)
    with zipfile.ZipFile(p, "a", zipfile.ZIP_DEFLATED) as z:  # a part that unpacks 1000 times larger
        z.writestr("xl/worksheets/sheet2.xml", b" " * (8 << 20))
    err = refused(p)
    assert err.code == "file.xlsx-ratio" and "SAIS_INGEST_MAX_XLSX_RATIO" in str(err)


def test_a_workbook_with_a_cell_beyond_the_column_cap_is_refused_by_that_cell(tmp_path):
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(HEADER.split(","))
    for _ in range(50):
        ws.append(ROW.split(","))
    ws.cell(row=2, column=16_000, value="far away")  # every row would be padded out to column 16,000
    p = tmp_path / "wide.xlsx"
    wb.save(p)
    err = refused(p)
    assert err.code == "file.too-many-columns" and "cell WQJ2" in str(err)
