"""Column headers as people write them → the canonical field names.

Anything not recognised here is dropped at the edge and never forwarded (ISP §6.1).
"""

from __future__ import annotations

import re

ALIASES: dict[str, tuple[str, ...]] = {
    "school_dfe": (
        "school dfe number",
        "school dfe no",
        "dfe number",
        "dfe no",
        "dfe",
        "laestab",
        "la estab",
        "dfes number",
        "school dfe",
        "estab number",
    ),
    "school_name": ("school name", "school", "establishment name", "school attending"),
    "year_group": (
        "year group",
        "nc year",
        "ncyearactual",
        "nc year actual",
        "year",
        "yeargroup",
        "national curriculum year",
        "year of entry",
        "entry year group",
    ),
    "surname": ("surname", "legal surname", "last name", "family name", "pupil surname", "legalsurname"),
    "forename": (
        "forename",
        "legal forename",
        "first name",
        "given name",
        "pupil forename",
        "legalforename",
        "forenames",
    ),
    "date_of_birth": ("date of birth", "dob", "birth date", "birthdate"),
    "gender": ("gender", "sex"),
    "address_1": ("address line 1", "address 1", "address1", "addr1", "address"),
    "address_2": ("address line 2", "address 2", "address2", "addr2"),
    "address_3": ("address line 3", "address 3", "address3", "addr3"),
    "address_4": ("address line 4", "address 4", "address4", "addr4"),
    "address_5": ("address line 5", "address 5", "address5", "addr5"),
    "saon": ("saon", "secondary addressable object name", "flat"),
    "paon": ("paon", "primary addressable object name", "house", "house number", "house name"),
    "street": ("street", "street name", "road"),
    "locality": ("locality",),
    "town": ("town", "post town", "posttown", "city"),
    "county": ("county", "administrative area", "administrativearea"),
    "postcode": ("postcode", "post code", "postal code", "zip"),
}

REQUIRED = ("school_dfe", "school_name", "year_group", "surname", "forename", "date_of_birth", "gender", "postcode")

_LOOKUP = {alias: field for field, aliases in ALIASES.items() for alias in aliases}


def canonical_header(raw: str) -> str:
    """``'  School DfE  Number '`` → ``'school dfe number'``; ``'Legal_Surname'`` → ``'legal surname'``."""
    s = re.sub(r"([a-z])([A-Z][a-z])", r"\1 \2", raw.strip().lstrip("\ufeff"))
    return " ".join(re.sub(r"[^0-9a-zA-Z]+", " ", s).lower().split())


def field_of(header: str) -> str | None:
    """The field a column header names, or None."""
    key = canonical_header(header)
    return (_LOOKUP.get(key) or _LOOKUP.get(key.replace(" ", ""))) if key else None


def repeated_fields(headers: list[str]) -> dict[str, list[int]]:
    """Fields whose column appears twice under the same header: field → the (1-based) columns. (Two
    different headers for one field, such as Surname and Legal Surname, are not repeats: the first
    recognised one is used, the other dropped.)"""
    cols: dict[tuple[str, str], list[int]] = {}
    for i, h in enumerate(headers):
        if f := field_of(h):
            cols.setdefault((f, canonical_header(h)), []).append(i + 1)
    return {f: c for (f, _), c in cols.items() if len(c) > 1}


def map_headers(headers: list[str]) -> tuple[dict[int, str], list[str], list[str]]:
    """Column index → field; the dropped (unrecognised) headers; the missing required fields."""
    mapping: dict[int, str] = {}
    dropped: list[str] = []
    for i, h in enumerate(headers):
        key = canonical_header(h)
        if not key:
            continue  # blank column
        field = _LOOKUP.get(key) or _LOOKUP.get(key.replace(" ", ""))
        if field and field not in mapping.values():
            mapping[i] = field
        else:
            dropped.append(h.strip())
    present = set(mapping.values())
    missing = [f for f in REQUIRED if f not in present]
    if "address_1" not in present and not present & {"paon", "saon", "street"}:
        missing.append("address_1 (or BS7666 PAON/Street)")
    return mapping, dropped, missing
