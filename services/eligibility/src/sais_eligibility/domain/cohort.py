"""The cohort diff: what changed for one child, from what the rules want and what was last sent.
Pure: no database, no keys. An unchanged membership gives no event, so a re-sent extract is silent."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ChangeKind = Literal["added", "updated", "withdrawn"]


@dataclass(frozen=True)
class Held:
    """A membership as last published: its status, the fingerprint of its record, its revision."""

    status: str  # active | withdrawn
    fingerprint: str
    revision: int


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
