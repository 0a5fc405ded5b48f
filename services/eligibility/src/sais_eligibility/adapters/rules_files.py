"""Loads the rules files: the bundled ones, or a directory set by SAIS_ELIGIBILITY_RULES_DIR."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..domain.rules import RulesError, YearRules, parse_rules


def load_all_rules(directory: Path | None = None) -> dict[str, YearRules]:
    folder = Path(directory) if directory else Path(str(resources.files("sais_eligibility") / "rules"))
    out: dict[str, YearRules] = {}
    for f in sorted(folder.glob("*.yaml")):
        rules = parse_rules(f.read_text(encoding="utf-8"), str(f))
        if rules.academic_year in out:
            raise RulesError(f"{f}: academic year {rules.academic_year} defined twice")
        out[rules.academic_year] = rules
    if not out:
        raise RulesError(f"no rules files (*.yaml) in {folder}")
    return out
