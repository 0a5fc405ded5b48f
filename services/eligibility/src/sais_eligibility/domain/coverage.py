"""Do the protocol's requested data cover what a year's programme rules need? A child a programme
needs, but whom no source of that programme is asked for, is dropped as out of scope at ingest and
the cohort is silently incomplete: this names every such gap. Pure."""

from __future__ import annotations

from dataclasses import dataclass

from sais_shared.protocol import Protocol
from sais_shared.schoolyear import ORDER, year_from_index, year_index

from .rules import YearRules


@dataclass(frozen=True)
class Gap:
    programme: str  # programme key, e.g. flu, hpv-dose-2
    year_groups: tuple[str, ...]  # in the target academic year
    sexes: tuple[str, ...]
    sources: tuple[str, ...]  # the programme's sources, none of which is asked for these children

    def describe(self) -> str:
        """In plain words: ``flu: Years 5 and 6 (boys, girls, sex not known) are requested from none of …``."""
        years = [("Reception" if y == "R" else y) for y in self.year_groups]
        named = ("Year " if len(years) == 1 else "Years ") + _listed(years) if years != ["Reception"] else years[0]
        sexes = ", ".join(SEX_WORDS.get(x, x) for x in self.sexes)
        verb = "is" if len(years) == 1 else "are"
        return f"{self.programme}: {named} ({sexes}) {verb} requested from none of {', '.join(self.sources)}"


SEX_WORDS = {"M": "boys", "F": "girls", "U": "sex not known"}


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"


def _recorded(year_group: str, roll_forward_years: int) -> str | None:
    """The year group a source records for a child in ``year_group`` of the target year."""
    i = year_index(year_group) - roll_forward_years
    return year_from_index(i) if i >= year_index(ORDER[0]) else None


def coverage_gaps(rules: YearRules, protocol: Protocol) -> list[Gap]:
    """Every (programme, year group, sex) of ``rules`` that no source of that programme is asked for."""
    missing: dict[tuple[str, tuple[str, ...]], dict[str, list[str]]] = {}
    for p in rules.programmes:
        for year in p.year_groups:
            for sex in p.sexes:
                covered = False
                for name in p.sources:
                    rule = protocol.sources.get(name)
                    recorded = _recorded(year, rule.roll_forward_years) if rule else None
                    if rule and recorded and rule.is_requested(recorded, sex):
                        covered = True
                        break
                if not covered:
                    missing.setdefault((p.key, tuple(p.sources)), {}).setdefault(year, []).append(sex)
    gaps = []
    for (key, sources), years in missing.items():
        by_sexes: dict[tuple[str, ...], list[str]] = {}
        for year, sexes in years.items():
            by_sexes.setdefault(tuple(sexes), []).append(year)
        for sexes_of, year_groups in by_sexes.items():
            gaps.append(Gap(key, tuple(sorted(year_groups, key=year_index)), sexes_of, sources))
    return sorted(gaps, key=lambda g: (g.programme, year_index(g.year_groups[0]), g.sexes))
