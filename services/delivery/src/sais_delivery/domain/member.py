"""A child in a window's cohort as delivery holds it: the latest revision of its cohort record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import UUID

from sais_shared.events import cohort_aad_of

# The columns of delivery.members a Member is read from, in its fields' order.
COLUMNS = (
    "academic_year",
    "programme",
    "programme_key",
    "dose",
    "pupil_id",
    "revision",
    "school_dfe",
    "school_name",
    "year_group",
    "gender",
    "source",
    "reference_date",
    "received_at",
    "extract_ids",
    "key_id",
    "personal",
)


@dataclass(frozen=True, slots=True)
class Member:
    academic_year: str
    programme: str
    programme_key: str  # programme, and dose where there is one: the file it goes in
    dose: int | None
    pupil_id: UUID
    revision: int
    school_dfe: str
    school_name: str
    year_group: str
    gender: str
    source: str
    reference_date: date
    received_at: datetime
    extract_ids: list[UUID]
    key_id: UUID
    personal: str  # the sealed personal fields, as JSON (crypto.Sealed)

    def aad(self) -> bytes:
        """The context its sealed fields were sealed under (its cohort event's): a clear field altered on
        the way (school, year group, programme, lineage…) makes the record refuse to open."""
        return cohort_aad_of(self)
