"""Eligibility, pure: which record of a child wins, which programmes the child is in, and
whether a new record is a child we already know.

Matching uses no national identifier (none is shared): the same forename, surname and date of
birth after normalisation (a keyed blind index computed at ingest), with the postcode to break
ties. Two candidates that remain are ambiguous and are never merged; twins differ by forename
and so never share a match key; two rows of one extract are never the same child.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sais_shared.events import pupil_aad_of
from sais_shared.schoolyear import year_index

from .rules import Programme, YearRules

# More specific or more recent sources win for the target year: the October census describes
# the year as it is; admissions say where a child will be in September; the May census is oldest.
SOURCE_RANK = {"summer-census": 1, "admissions-reception": 2, "admissions-year3-transfer": 2, "autumn-census": 3}


@dataclass(frozen=True, slots=True)
class Record:
    """A pupil row as eligibility holds it: the clear fields the rules decide on, the keyed indices it is
    matched by, and its personal fields, still sealed as its pupil event sealed them."""

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
    academic_year: str = ""
    match_key: str = ""  # keyed index of forename, surname and date of birth
    postcode_key: str = ""  # keyed index of the postcode
    content_key: str = ""  # keyed index of every personal field: a change of any shows
    recorded_year_group: str = ""  # as the extract said, before rolling forward
    dob_year_group: str = ""  # the year group the date of birth gives for the target year
    personal: str = ""  # the sealed personal fields (JSON)
    match_findings: str = "[]"  # what matching found (JSON: [[code, detail], …]), reported once released

    def precedence(self) -> tuple:
        return (SOURCE_RANK[self.source], self.reference_date, self.received_at, str(self.record_id))

    def aad(self) -> bytes:
        """The context its sealed fields were sealed under (its pupil event's): they open only as that row
        of that extract, with its clear fields as they were."""
        return pupil_aad_of(self, self.recorded_year_group)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Record:
        """From a stored row, by column name."""
        return cls(*map(row.__getitem__, RECORD_COLUMNS))


RECORD_COLUMNS = tuple(Record.__dataclass_fields__)  # the columns of eligibility.records a Record is


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


# --- leaving a school ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SchoolSpan:
    """The year groups a school teaches, from the schools register (its statutory age range)."""

    first_year: str | None
    last_year: str | None

    def teaches(self, year_group: str) -> bool:
        i = year_index(year_group)
        return (self.first_year is None or year_index(self.first_year) <= i) and (
            self.last_year is None or i <= year_index(self.last_year)
        )


def school_left(recorded_year: str, target_year: str, school_name: str, span: SchoolSpan | None) -> str | None:
    """Why a record's school is not the child's school in the target year (None: it still is).

    Only a record rolled forward to a later year can be at a school the child has left: a Year 6 in
    the May census is at secondary school in September, an infant-school Year 2 at junior school.
    The register's age range decides when the school is in it (a middle or all-through school keeps
    its Year 6); without it, Year 6 is taken as the end of primary school and a school named an
    infant school as ending at Year 2.
    """
    if target_year == recorded_year:
        return None
    if span is not None:
        if span.teaches(target_year):
            return None
        return f"the school teaches to Year {span.last_year}; the school for Year {target_year} is not yet known"
    if recorded_year == "6":
        return "left primary school after Year 6; the secondary school is not yet known"
    if recorded_year == "2" and "infant" in school_name.casefold():
        return "left infant school after Year 2; the junior school is not yet known"
    return None


def schools_now(
    rows: Mapping[str, Record], spans: Mapping[str, SchoolSpan]
) -> tuple[dict[str, tuple[str, str]], list[tuple[str, str]]]:
    """The school each of a child's memberships goes out with (programme key → (DfE number, name)), from the
    record that qualifies it (``rows``), and why a school was left: a record rolled forward past its school's
    last year is at a school the child has left, so it goes with the school not yet known (("", "")), never
    with the school left behind. The reasons are (why, the school left)."""
    schools: dict[str, tuple[str, str]] = {}
    left: list[tuple[str, str]] = []
    for key, row in rows.items():
        why = school_left(row.recorded_year_group, row.year_group, row.school_name, spans.get(row.school_dfe))
        schools[key] = ("", "") if why else (row.school_dfe, row.school_name)
        if why:
            left.append((why, row.school_dfe))
    return schools, left


def school_flags(rows: list[dict], la_codes: list[str]) -> list[dict]:
    """What the schools register says is wrong with the cohort's schools: (school, flag, children).
    ``rows``: per school and year group, the children and the register's entry (registered, status,
    la_code, first_year, last_year)."""
    flags: dict[tuple[str, str], int] = {}

    def add(school: str, flag: str, n: int) -> None:
        flags[(school, flag)] = flags.get((school, flag), 0) + n

    for r in rows:
        school, n = r["school_dfe"], r["n"]
        if not r["registered"]:
            add(school, "not in the schools register (no URN: left out of Mavis files)", n)
            continue
        if r["status"].casefold().startswith("closed"):
            add(school, f"closed ({r['status']})", n)
        if r["la_code"] not in la_codes:
            add(school, f"outside the authority (LA {r['la_code']})", n)
        if not SchoolSpan(r["first_year"], r["last_year"]).teaches(r["year_group"]):
            add(
                school, f"Year {r['year_group']} outside the school's age range ({r['first_year']}–{r['last_year']})", n
            )
    return [{"school_dfe": s, "flag": f, "children": n} for (s, f), n in sorted(flags.items())]
