"""One statement per batch: rows cut into rounds in which each key appears once, and the statement that
unnests them in order."""

import pytest
from sais_shared.db import _insert_sql, array_literal, rounds

pytestmark = pytest.mark.unit


def test_each_key_appears_once_per_round_and_rows_keep_their_order():
    rows = [("a", 1), ("b", 1), ("a", 2), ("c", 1), ("a", 3), ("b", 2)]
    assert rounds(rows, key=lambda r: r[0]) == [[("a", 1), ("b", 1), ("c", 1)], [("a", 2), ("b", 2)], [("a", 3)]]


def test_no_rows_no_rounds():
    assert rounds([], key=lambda r: r) == []


def test_the_statement_unnests_in_order_and_casts_what_travels_as_text():
    sql = _insert_sql("s.t", ("a", "b", "c"), ("uuid", "jsonb", "uuid[]"), "ON CONFLICT DO NOTHING")
    assert sql == (
        "INSERT INTO s.t(a, b, c) SELECT c0, c1::jsonb, c2::uuid[] FROM unnest($1::uuid[], $2::text[], $3::text[]) "
        "WITH ORDINALITY AS u(c0, c1, c2, ord) ORDER BY ord ON CONFLICT DO NOTHING"
    )


def test_an_array_literal():
    assert array_literal([1, 2]) == "{1,2}"
    assert array_literal([]) == "{}"
