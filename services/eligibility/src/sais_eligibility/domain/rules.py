"""Programme rules per academic year, as data: one YAML file per year, validated on load."""

from __future__ import annotations

from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sais_shared.errors import SaisError
from sais_shared.events import SOURCES
from sais_shared.schoolyear import ORDER, parse_academic_year


class RulesError(SaisError, ValueError):  # a ValueError too: pydantic validators raise it
    """A rules file is invalid; the message names the file and the field."""


class Programme(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9-]*$")
    name: str
    dose: int | None = Field(None, ge=1, le=5)
    year_groups: list[str] = Field(min_length=1)
    sexes: list[Literal["M", "F", "U"]] = Field(min_length=1)
    sources: list[str] = Field(min_length=1)

    @field_validator("year_groups")
    @classmethod
    def _known_years(cls, v: list[str]) -> list[str]:
        bad = [y for y in v if y not in ORDER]
        if bad:
            raise ValueError(f"unknown year group(s) {bad}")
        return v

    @field_validator("sources")
    @classmethod
    def _known_sources(cls, v: list[str]) -> list[str]:
        bad = [s for s in v if s not in SOURCES]
        if bad:
            raise ValueError(f"unknown source(s) {bad}; known: {list(SOURCES)}")
        return v

    @property
    def key(self) -> str:
        """Unique within a year: ``flu``, ``hpv-dose-1``."""
        return self.id if self.dose is None else f"{self.id}-dose-{self.dose}"

    @property
    def sex_specific(self) -> bool:
        return set(self.sexes) != {"M", "F", "U"}

    def admits(self, year_group: str, gender: str, source: str) -> bool:
        return year_group in self.year_groups and gender in self.sexes and source in self.sources


class YearRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    academic_year: str
    programmes: list[Programme] = Field(min_length=1)

    @field_validator("academic_year")
    @classmethod
    def _label(cls, v: str) -> str:
        parse_academic_year(v)
        return v

    @model_validator(mode="after")
    def _unique(self) -> YearRules:
        keys = [p.key for p in self.programmes]
        dupes = sorted({k for k in keys if keys.count(k) > 1})
        if dupes:
            raise ValueError(f"programme listed twice: {dupes}")
        return self


def parse_rules(text: str, origin: str) -> YearRules:
    try:
        data = yaml.safe_load(text)
        return YearRules.model_validate(data)
    except yaml.YAMLError as exc:
        raise RulesError(f"{origin}: not valid YAML: {exc}") from None
    except ValidationError as exc:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors(include_url=False))
        raise RulesError(f"{origin}: invalid rules file: {detail}") from None
