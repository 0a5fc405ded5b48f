"""What a person reads: tables at a terminal's 80 columns cut no word and no id in two, an empty list
says "none", times are Europe/London to the minute, and every code the CLI shows has plain words and
what to do (docs/glossary.md is generated from the same terms)."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, date, datetime

import pytest
from rich.console import Console
from sais_eligibility.domain.coverage import Gap
from sais_eligibility.service_layer.handlers import SCHOOL_NOT_KNOWN
from sais_retention.domain import plan
from sais_shared import glossary
from sais_shared.present import cell, show

from tests.helpers import REPO

pytestmark = pytest.mark.unit


def rendered(width: int, *args, **kw) -> str:
    buf = io.StringIO()
    show(Console(file=buf, width=width, color_system=None), *args, **kw)
    return buf.getvalue()


def words_of(text: str) -> set[str]:
    return {w for line in text.splitlines() for w in re.split(r"[\s│┃]+", line) if w}


@pytest.mark.parametrize("width", [80, 60, 40])
def test_no_id_or_word_is_cut_at_any_width_and_the_table_falls_back_to_one_block_a_row(width):
    ids = [f"batch:{uuid.UUID(int=i * 7919)}" for i in range(1, 4)]
    rows = [
        (i, "3 months after transfer (§11.1)", date(2017, 10, 10), "pending", ["ingest", "eligibility"]) for i in ids
    ]
    text = rendered(width, "Retention schedule", ("subject", "rule", "delete on", "done", "owners"), rows)
    # no line is wider than the terminal, but one that is an id alone (the terminal wraps it, whole)
    assert all(len(line) <= width or line.strip() in ids for line in text.splitlines()), text
    shown = words_of(text)
    assert set(ids) <= shown and {"3", "months", "after", "transfer", "(§11.1)", "eligibility"} <= shown, text
    assert "…" not in text


def test_an_empty_list_says_none_and_the_summary_comes_first():
    text = rendered(80, "Schools register flags", ("school", "flag"), [], summary="0 flags")
    assert text.splitlines() == ["0 flags", "Schools register flags: none"]


def test_times_are_europe_london_to_the_minute_and_nothing_is_a_dash():
    assert cell(datetime(2017, 7, 10, 19, 34, 55, 933419, tzinfo=UTC)) == "2017-07-10 20:34 BST"
    assert cell(datetime(2017, 12, 1, 9, 5, tzinfo=UTC)) == "2017-12-01 09:05 GMT"
    assert cell(None) == cell("") == "—" and cell(date(2017, 10, 10)) == "2017-10-10"


def test_a_coverage_gap_is_described_in_words():
    gap = Gap("flu", ("5", "6"), ("M", "F", "U"), ("summer-census", "autumn-census"))
    assert gap.describe() == (
        "flu: Years 5 and 6 (boys, girls, sex not known) are requested from none of summer-census, autumn-census"
    )
    assert Gap("hpv-dose-1", ("8",), ("M",), ("autumn-census",)).describe().startswith("hpv-dose-1: Year 8 (boys) is")


# Every code the product shows a person, from where it is made: each has a term.
CODES = [
    SCHOOL_NOT_KNOWN,
    "unknown-sex:hpv-dose-1",
    "out-of-year-group",
    "matched-postcode-differs",
    "ambiguous-match",
    "row.repeated",
    "row.same-child",
    "row.not-requested",
    plan.RULE_TRANSFER,
    plan.RULE_UNDELIVERED,
    plan.RULE_PARTY_LEFT,
    plan.RULE_INBOUND_STAGING,
    plan.RULE_EXTRACT_ENDED,
    "coverage-gap",
]


@pytest.mark.parametrize("code", CODES)
def test_each_code_has_plain_words_a_meaning_and_what_to_do(code):
    term = glossary.explain(code)
    assert term is not None, f"{code} has no entry in sais_shared/glossary.py"
    assert glossary.words(code) == term.words != code
    assert term.meaning.endswith(".") and term.action.endswith(".")


def test_every_term_is_one_the_product_shows_and_the_glossary_document_is_current():
    assert {t.code for _, terms in glossary.TERMS.values() for t in terms} == {c.split(":")[0] for c in CODES}
    assert (REPO / glossary.DOC).read_text(encoding="utf-8") == glossary.render(), "run `sais docs glossary`"
