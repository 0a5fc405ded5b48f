"""Eligibility, pure: which record of a child wins, which programmes the child is in, and
whether a new record is a child we already know.

Matching uses no national identifier (none is shared): the same forename, surname and date of
birth after normalisation (a keyed blind index computed at ingest), with the postcode to break
ties. Two candidates that remain are ambiguous and are never merged; twins differ by forename
and so never share a match key; two rows of one extract are never the same child.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from .rules import Programme, YearRules

# More specific or more recent sources win for the target year: the October census describes
# the year as it is; admissions say where a child will be in September; the May census is oldest.
SOURCE_RANK = {"summer-census": 1, "admissions-reception": 2, "admissions-year3-transfer": 2, "autumn-census": 3}


@dataclass(frozen=True)
class Record:
    record_id: UUID
    extract_id: UUID
    pupil_id: UUID
    source: str
    reference_date: date
    received_at: datetime
    school_dfe: str
    school_name: str
    year_group: str  # in the target academic year
    gender: str
    key_id: UUID

    def precedence(self) -> tuple:
        return (SOURCE_RANK[self.source], self.reference_date, self.received_at, str(self.record_id))


@dataclass(frozen=True)
class Candidate:
    pupil_id: UUID
    postcode_keys: frozenset[str]
    extract_ids: frozenset[UUID]


@dataclass(frozen=True)
class Match:
    pupil_id: UUID | None  # None: a new child
    ambiguous: bool = False
    postcode_differs: bool = False  # merged on name and date of birth alone: worth a person's look


def match(candidates: list[Candidate], postcode_key: str, extract_id: UUID) -> Match:
    """Same name+DOB candidates → the one child, a new child, or ambiguous (never merged)."""
    pool = [c for c in candidates if extract_id not in c.extract_ids]
    if not pool:
        return Match(None)
    if len(pool) == 1:  # children move house: merge, but say so when the postcode differs
        return Match(pool[0].pupil_id, postcode_differs=postcode_key not in pool[0].postcode_keys)
    same_postcode = [c for c in pool if postcode_key in c.postcode_keys]
    if len(same_postcode) == 1:
        return Match(same_postcode[0].pupil_id)
    return Match(None, ambiguous=True)


@dataclass(frozen=True)
class Membership:
    programme: Programme
    record: Record


def best_record(records: list[Record], sources: list[str] | None = None) -> Record | None:
    pool = [r for r in records if sources is None or r.source in sources]
    return max(pool, key=Record.precedence, default=None)


def memberships(records: list[Record], rules: YearRules) -> dict[str, Membership]:
    """Programme key → the record that puts the child in it (best record among its sources)."""
    out: dict[str, Membership] = {}
    for p in rules.programmes:
        best = best_record(records, p.sources)
        if best is not None and p.admits(best.year_group, best.gender, best.source):
            out[p.key] = Membership(p, best)
    return out


def unknown_sex_findings(records: list[Record], rules: YearRules) -> list[str]:
    """Sex-specific programmes the child would be in, if their sex were known."""
    out = []
    for p in rules.programmes:
        best = best_record(records, p.sources)
        if best and best.gender == "U" and p.sex_specific and best.year_group in p.year_groups:
            out.append(p.key)
    return out
