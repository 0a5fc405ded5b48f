import csv
import io
import itertools

import pytest
from sais_eligibility.domain.statistics import (
    SEXES,
    TOTAL,
    Table,
    build_tables,
    render_csv,
    suppress,
)

pytestmark = pytest.mark.unit


def _table(rows):
    counts = [("flu", s, yg, sex, n) for (s, yg), per in rows.items() for sex, n in zip(SEXES, per, strict=True) if n]
    return suppress(build_tables(counts)["flu"], 5)


def _can_recover(t: Table) -> bool:
    """Could any hidden cell be recomputed from one line of published numbers?"""
    for r in t.cells:
        line = [(r, c) for c in (*SEXES, TOTAL)]
        if sum(cell in t.hidden for cell in line) == 1:
            return True
    for c in (*SEXES, TOTAL):
        line = [(r, c) for r in t.cells]
        if sum(cell in t.hidden for cell in line) == 1:
            return True
    return False


def test_small_counts_are_suppressed_and_large_ones_shown():
    t = _table({("9372001", "R"): (12, 3, 0), ("9372002", "R"): (8, 9, 0)})
    assert (("9372001", "R"), "M") in t.hidden
    assert t.cells[("9372001", "R")]["F"] == 12


def test_secondary_suppression_stops_totals_revealing_a_cell():
    t = _table({("9372001", "R"): (12, 3, 0), ("9372002", "R"): (8, 9, 0), ("9372003", "1"): (7, 6, 0)})
    # 3 boys hidden; with only primary suppression the row total 15 - 12 would reveal it.
    row = ("9372001", "R")
    assert (row, "M") in t.hidden
    assert sum((row, c) in t.hidden for c in (*SEXES, TOTAL)) >= 2
    assert not _can_recover(t)


@pytest.mark.parametrize("seed", range(30))
def test_no_hidden_cell_is_recoverable_from_any_line(seed):
    import random

    rng = random.Random(seed)
    rows = {
        (f"93720{i:02d}", yg): tuple(rng.choice([0, 1, 2, 4, 5, 7, 12, 30]) for _ in SEXES)
        for i, yg in itertools.product(range(rng.randint(1, 5)), ["R", "1", "2"])
    }
    t = _table(rows)
    assert not _can_recover(t)
    for r, row in t.cells.items():
        for c, n in row.items():
            if 0 < n < 5:
                assert (r, c) in t.hidden  # every small count is hidden


def test_export_says_it_holds_no_personal_data_and_shows_c():
    t = _table({("9372001", "R"): (12, 3, 0)})
    text = render_csv({"flu": t}, academic_year="2017/18", threshold=5, school_names={"9372001": "Emscote"})
    assert "NO personal data" in text.splitlines()[1]
    assert ",c," in text and "Emscote" in text


def test_a_school_name_that_could_start_a_formula_stays_text():
    """A school name is data (from the census or the register): "=HYPERLINK(…)" must not become a formula."""
    t = _table({("9372001", "3"): (12, 10, 0)})
    text = render_csv({"flu": t}, academic_year="2017/18", threshold=5, school_names={"9372001": '=HYPERLINK("x")'})
    row = next(r for r in csv.reader(io.StringIO(text)) if len(r) > 2 and r[1] == "9372001")
    assert row[2] == "'" + '=HYPERLINK("x")'
