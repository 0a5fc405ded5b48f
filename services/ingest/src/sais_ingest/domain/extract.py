"""An extract's rows → outcomes, pure: header mapping applied, blank lines skipped, every other row
classified exactly once (accepted, rejected or out of scope)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import date

from sais_shared.protocol import Protocol, SourceRule

from .headers import map_headers, repeated_fields
from .model import ExtractFileError, Outcome
from .validation import validate_row


def header_mapping(headers: list[str]) -> tuple[dict[int, str], list[str]]:
    """Column index → field and the dropped headers; a clear error when a required column is missing."""
    mapping, dropped, missing = map_headers(headers)
    if twice := repeated_fields(headers):
        field, cols = next(iter(twice.items()))
        names = " and ".join(f"column {c} ({headers[c - 1].strip()!r})" for c in cols)
        raise ExtractFileError(
            f"the header names {field} more than once: {names}; which one holds it cannot be guessed, so "
            "remove or rename all but one",
            code="file.duplicate-column",
        )
    if missing:
        # Never echo the cells: a file without a header row has a child's details in its first row.
        known = set(mapping) | {i for i, h in enumerate(headers) if h.strip() in dropped}
        unknown = [str(i + 1) for i, h in enumerate(headers) if h.strip() and i not in known]
        found = (
            f"recognised: {', '.join(mapping[i] for i in sorted(mapping))}"
            if mapping
            else "no recognised column header: is the first row a header row?"
        )
        raise ExtractFileError(
            f"required column(s) missing: {', '.join(missing)}; the header row has {len(headers)} column(s), "
            f"{found}" + (f"; not recognised: column(s) {', '.join(unknown)}" if unknown else ""),
            code="file.columns-missing",
        )
    return mapping, dropped


def classify_row(
    row_number: int,
    cells: list[str],
    mapping: dict[int, str],
    *,
    rule: SourceRule,
    protocol: Protocol,
    reference_date: date,
) -> Outcome | None:
    """One row's outcome; None for a blank line, which is not a row."""
    if not "".join(cells).strip():  # (one join, not a generator over the cells: this runs per row)
        return None
    raw = {f: (cells[i] if i < len(cells) else "") for i, f in mapping.items()}
    return validate_row(raw, row_number, source=rule, protocol=protocol, reference_date=reference_date)


def classify(
    rows: Iterable[tuple[int, list[str]]],
    mapping: dict[int, str],
    *,
    rule: SourceRule,
    protocol: Protocol,
    reference_date: date,
) -> Iterator[tuple[int, Outcome]]:
    for row_number, cells in rows:
        outcome = classify_row(row_number, cells, mapping, rule=rule, protocol=protocol, reference_date=reference_date)
        if outcome is not None:
            yield row_number, outcome
