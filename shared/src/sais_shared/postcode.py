"""UK postcode normalisation and validation (docs/domain.md §3).

The Home Office pattern is anchored badly at the top level (``^A|B$``), so ``re.search`` lets
junk through; here the whole pattern is one group and matched with ``fullmatch``.
"""

from __future__ import annotations

import re

_OUTWARD_INWARD = re.compile(
    r"(GIR 0AA)|((([A-Z][0-9]{1,2})|(([A-Z][A-HJ-Y][0-9]{1,2})|(([A-Z][0-9][A-Z])|([A-Z][A-HJ-Y][0-9]?[A-Z])))) [0-9][A-Z]{2})"
)

# The NHS's pseudo-postcodes (NHS Data Dictionary, "Postcode of usual address"), for a person with no usable address
PSEUDO_POSTCODES = {
    "ZZ99 3VZ": "no fixed abode",
    "ZZ99 3WZ": "address not known",
    "ZZ99 3CZ": "address in England or the UK not otherwise specified",
}


def normalise_postcode(raw: str) -> str:
    """Upper case, all white space removed, one space before the 3-character inward code."""
    compact = "".join(raw.split()).upper()
    if len(compact) < 5:
        return compact
    return f"{compact[:-3]} {compact[-3:]}"


def is_valid_postcode(normalised: str) -> bool:
    return _OUTWARD_INWARD.fullmatch(normalised) is not None
