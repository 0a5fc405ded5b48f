"""The cohort diff: what changed for one child, from what the rules want and what was last sent.
Pure: no database, no keys. An unchanged membership gives no event, so a re-sent extract is silent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from uuid import UUID

ChangeKind = Literal["added", "updated", "withdrawn"]


@dataclass(frozen=True)
class Held:
    """A membership as last published: its status, the fingerprint of its record, its revision."""

    status: str  # active | withdrawn
    fingerprint: str
    revision: int


@dataclass(frozen=True, slots=True)
class CohortEntry:
    """A child's place in one programme's cohort, as stored: the record that qualifies it and the clear
    fields it went out with."""

    academic_year: str
    programme: str  # programme key, e.g. hpv-dose-1
    pupil_id: UUID
    dose: int | None
    status: str  # active | withdrawn
    fingerprint: str
    revision: int
    record_id: UUID
    school_dfe: str
    year_group: str
    gender: str


@dataclass(frozen=True, slots=True)
class Withdrawal:
    academic_year: str
    programme: str
    pupil_id: UUID
    revision: int


@dataclass(frozen=True, slots=True)
class Finding:
    """Something a data officer should look at about one child (one per child and code)."""

    academic_year: str
    pupil_id: UUID
    code: str
    detail: str
    school_dfe: str

    def key(self) -> FindingKey:
        return (self.academic_year, self.pupil_id, self.code)


FindingKey = tuple[str, UUID, str]  # (academic year, child, code): one finding


@dataclass(frozen=True, slots=True)
class ReadyExtract:
    """An extract whose children are to be (re)computed: a completed one to release, a withdrawn one to take back."""

    extract_id: UUID
    status: str  # completed | withdrawn
    supersedes: UUID | None


@dataclass(frozen=True)
class Change:
    programme: str  # programme key, e.g. hpv-dose-1
    kind: ChangeKind
    revision: int  # the revision the change is published as


def diff_cohort(wanted: dict[str, str], held: dict[str, Held]) -> list[Change]:
    """``wanted``: programme key → fingerprint of the record that qualifies the child now.
    ``held``: programme key → what was last published. Returns the changes, adds and updates first."""
    changes = []
    for key, fingerprint in sorted(wanted.items()):
        prev = held.get(key)
        active = prev is not None and prev.status == "active"
        if prev is not None and active and prev.fingerprint == fingerprint:
            continue
        changes.append(Change(key, "updated" if active else "added", (prev.revision if prev else 0) + 1))
    for key, prev in sorted(held.items()):
        if key not in wanted and prev.status == "active":
            changes.append(Change(key, "withdrawn", prev.revision + 1))
    return changes
