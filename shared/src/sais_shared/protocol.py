"""The Information Sharing Protocol as data: one validated file per version.

Every service reads what it enforces from the version in force: ingest its sources, requested
year groups and allowed fields; delivery its windows, recipients and marking; retention its
period. A bad file fails on load with the field named.
"""

from __future__ import annotations

import hashlib
import re
from datetime import date, datetime
from email.errors import HeaderParseError, MessageDefect
from email.headerregistry import Address
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from dateutil.relativedelta import relativedelta
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigurationError
from .events import SOURCES
from .schoolyear import academic_year_start

_YEAR_GROUPS = {"N1", "N2", "R", *map(str, range(1, 15))}


class ProtocolError(ConfigurationError):
    """The protocol file is missing or invalid; the message names the field."""


class ProtocolRefusalError(ProtocolError):
    """A valid protocol does not allow what was asked: a source, a window or a field it does not cover."""


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Contact(_Strict):
    name: str
    role: str
    email: str


class Party(_Strict):
    id: str
    name: str
    role: Literal["provider", "recipient"]
    department: str = ""
    contacts: list[Contact] = Field(min_length=1)


class FieldDefinition(_Strict):
    name: str
    label: str
    definition: str


class SourceRule(_Strict):
    description: str
    target: Literal["next-academic-year", "current-academic-year"] = Field(
        description="Which academic year the data is for, relative to its reference date"
    )
    roll_forward_years: int = Field(ge=0, le=1, description="Year groups to add for the target year")
    requested: dict[str, list[Literal["M", "F", "U"]]] = Field(min_length=1)

    @field_validator("requested")
    @classmethod
    def _year_groups_known(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        bad = sorted(set(v) - _YEAR_GROUPS)
        if bad:
            raise ValueError(f"unknown year group(s) {bad}; use N1, N2, R or 1-14")
        return v

    def target_academic_year(self, reference_date: date) -> int:
        start = academic_year_start(reference_date)
        return start + 1 if self.target == "next-academic-year" and reference_date.month < 9 else start

    def is_requested(self, year_group: str, gender: str) -> bool:
        return gender in self.requested.get(year_group, ())


class Window(_Strict):
    name: str
    month: int = Field(ge=1, le=12)
    sources: list[str] = Field(min_length=1)
    mavis_cohort_import: bool = Field(
        False,
        description="Also send a Mavis (Manage vaccinations in schools) cohort-import file per programme, "
        "with school URNs from the schools register: an agreement with the SAIS team, not an ISP clause",
    )


class MavisTeam(_Strict):
    """The SAIS team as Mavis knows it: Mavis refuses a cohort-import file with a row for a school not
    attached to the team, or a year group outside the team's programmes. An agreement with the team."""

    schools: list[str] | None = Field(
        None,
        description="The team's schools in Mavis: URNs, or URN and site letter (123456B) for a school Mavis has "
        "split into sites. Unset: URNs are checked against the schools register only (said in the manifest)",
    )
    year_groups: list[int] = Field(
        default_factory=lambda: list(range(0, 12)),
        description="The year groups of the team's programmes in Mavis (Reception is 0); Reception to Year 11 "
        "unless the team has others",
    )

    @field_validator("schools")
    @classmethod
    def _urns(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        out = []
        for s in v:
            s = str(s).strip().upper()
            if not re.fullmatch(r"\d{6}[A-Z]?", s):
                raise ValueError(f"{s!r} is not a URN (6 digits) or a URN and site letter (123456B)")
            out.append(s)
        return out

    @field_validator("year_groups")
    @classmethod
    def _years(cls, v: list[int]) -> list[int]:
        bad = [y for y in v if not -3 <= y <= 15]
        if bad:
            raise ValueError(f"year group(s) {bad} outside Mavis's range -3 to 15")
        return sorted(set(v))


# Transfer methods this software carries out. A protocol naming any other is refused when it loads.
IMPLEMENTED_METHODS = ("smime-email",)


class Transfer(_Strict):
    method: str = Field(description="The method actually used; one this software implements")
    as_written: str | None = Field(
        None, description="The method as the protocol's clauses word it, when the method used differs"
    )
    method_reason: str | None = Field(None, description="Why the method used differs from the one written")
    allowed_recipient_domains: list[str] = Field(min_length=1)
    recipients: list[str] = Field(
        default_factory=list,
        description="The SAIS team's mailbox(es); delivery sends to the first unless SAIS_DELIVERY_RECIPIENT or "
        "--recipient names another (always within allowed_recipient_domains)",
    )
    windows: list[Window] = Field(min_length=1)
    mavis_team: MavisTeam = Field(
        default_factory=MavisTeam,
        description="The SAIS team's schools and year groups in Mavis, for windows with mavis_cohort_import",
    )

    @field_validator("method")
    @classmethod
    def _implemented(cls, method: str) -> str:
        if method not in IMPLEMENTED_METHODS:
            raise ValueError(
                f"transfer method {method!r} is not one this software implements "
                f"({', '.join(IMPLEMENTED_METHODS)}): nothing could be sent under it"
            )
        return method

    @model_validator(mode="after")
    def _deviation_explained(self) -> Transfer:
        if self.as_written and not self.method_reason:
            raise ValueError("transfer.as_written differs from the method used: say why in transfer.method_reason")
        return self

    @model_validator(mode="after")
    def _recipients_allowed(self) -> Transfer:
        for d in self.allowed_recipient_domains:
            if not _DOMAIN.fullmatch(d):
                raise ValueError(f"allowed recipient domain {d!r} is not a plain domain name such as nhs.net")
        for r in self.recipients:
            if not recipient_allowed(r, self.allowed_recipient_domains):
                raise ValueError(f"recipient {r!r} is not in an allowed domain {self.allowed_recipient_domains}")
        return self

    @field_validator("recipients")
    @classmethod
    def _strict_addresses(cls, recipients: list[str]) -> list[str]:
        return [normalise_address(r) for r in recipients]  # a strict addr-spec, or a clear error

    def window(self, name: str) -> Window:
        for w in self.windows:
            if w.name == name:
                return w
        raise ProtocolRefusalError(f"no delivery window {name!r}; the protocol has {[w.name for w in self.windows]}")


class Revision(_Strict):
    version: str
    date: date
    by: str
    description: str


class Protocol(_Strict):
    id: str
    version: str
    title: str
    effective_from: date
    review_date: date
    review_date_basis: str | None = Field(
        None, description="Where the review date comes from, and any disagreement in the protocol's text"
    )
    purpose: str
    parties: list[Party] = Field(min_length=2)
    originator_label: str
    protective_marking: str
    la_codes: list[str] = Field(min_length=1)
    dataset: list[FieldDefinition] = Field(min_length=1)
    sources: dict[str, SourceRule] = Field(min_length=1)
    transfer: Transfer
    retention_months: int = Field(ge=1, le=120)
    staleness_months: int = Field(ge=1, le=120)
    revisions: list[Revision] = Field(min_length=1)
    _sha256: str = PrivateAttr("")  # of the text it was read from (parse_protocol)

    @field_validator("sources")
    @classmethod
    def _sources_known(cls, v: dict[str, SourceRule]) -> dict[str, SourceRule]:
        bad = sorted(set(v) - set(SOURCES))
        if bad:
            raise ValueError(f"unknown source(s) {bad}; known: {list(SOURCES)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Protocol:
        for w in self.transfer.windows:
            missing = sorted(set(w.sources) - set(self.sources))
            if missing:
                raise ValueError(f"window {w.name!r} names source(s) not in the protocol: {missing}")
        if self.revisions[-1].version != self.version:
            raise ValueError(f"the last revision ({self.revisions[-1].version}) must be this version ({self.version})")
        return self

    def source(self, name: str) -> SourceRule:
        try:
            return self.sources[name]
        except KeyError:
            raise ProtocolRefusalError(
                f"source {name!r} is not covered by protocol {self.id} v{self.version}; "
                f"it covers {sorted(self.sources)}"
            ) from None

    @property
    def sha256(self) -> str:
        """The sha256 of the exact text this version was read from: what the registry stores and what
        the audit trail names, so a batch can be traced to the very file it was sent under."""
        return self._sha256

    def delete_by(self, transferred: date | datetime) -> date:
        """When data transferred then must be gone (ISP §11.1): the retention period later, in calendar
        months (31 May + 3 months = 31 August; a day the target month lacks becomes its last day)."""
        return months_after(transferred, self.retention_months)

    def review_overdue(self, today: date) -> bool:
        return today > self.review_date

    @property
    def provider(self) -> Party:
        return next(p for p in self.parties if p.role == "provider")

    @property
    def recipient(self) -> Party:
        return next(p for p in self.parties if p.role == "recipient")


def months_after(start: date | datetime, months: int) -> date:
    """The date ``months`` calendar months after ``start`` (of its date, for a time)."""
    day = start.date() if isinstance(start, datetime) else start
    return day + relativedelta(months=months)


_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}")
_FORBIDDEN = set(',;:<>()[]"\\@')


def normalise_address(address: str) -> str:
    """A recipient as a strict addr-spec, ``local@domain`` with the domain lower-cased, or ValueError.

    No display name, comment, quoted part, whitespace, comma, semicolon, bracket, parenthesis or
    control character: one mailbox, and what is checked is exactly what goes to RCPT TO and To:.
    The RFC 5322 parser of the standard library must read the whole string as that one address."""
    if not isinstance(address, str) or not 3 <= len(address) <= 254 or address.count("@") != 1:
        raise ValueError("not a single e-mail address (local@domain)")
    local_part, _, domain_part = address.partition("@")
    if any(c.isspace() or not c.isprintable() or ord(c) > 126 or c in _FORBIDDEN for c in local_part + domain_part):
        raise ValueError(
            "an e-mail address may hold no whitespace, control character, quote, comma, semicolon, "
            "colon, bracket or parenthesis"
        )
    try:
        parsed = Address(addr_spec=address)
    except (ValueError, TypeError, HeaderParseError, MessageDefect):
        raise ValueError("not a single e-mail address (local@domain)") from None
    if (
        f"{parsed.username}@{parsed.domain}" != address
        or not _LOCAL.fullmatch(parsed.username)
        or not _DOMAIN.fullmatch(parsed.domain)
    ):
        raise ValueError("not a plain e-mail address (local@domain, letters, digits and . - _ +)")
    return f"{parsed.username}@{parsed.domain.lower()}"


def recipient_allowed(address: str, domains: list[str]) -> bool:
    """True when the address is a strict addr-spec whose domain is an allowed domain or a subdomain of one."""
    try:
        domain = normalise_address(address).rsplit("@", 1)[1]
    except ValueError:
        return False
    return any(domain == d.lower() or domain.endswith("." + d.lower()) for d in domains)


def parse_protocol(text: str, origin: str = "<protocol>") -> Protocol:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ProtocolError(f"{origin}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{origin}: expected a mapping at the top level")
    try:
        protocol = Protocol.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '<top>'}: {e['msg']}" for e in exc.errors(include_url=False)
        ]
        raise ProtocolError(f"{origin}: invalid protocol file\n" + "\n".join(lines)) from None
    protocol._sha256 = protocol_sha256(text)
    return protocol


def protocol_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def bundled_protocol_path() -> Path:
    return Path(str(resources.files("sais_shared") / "protocols" / "warwickshire-cwpt-v0.2.yaml"))


def read_protocol_file(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ProtocolError(f"cannot read protocol file {path}: {exc.strerror}") from None


def load_protocol(path: Path | None = None) -> Protocol:
    path = path or bundled_protocol_path()
    return parse_protocol(read_protocol_file(path), str(path))


__all__ = ["Protocol", "ProtocolError", "load_protocol", "normalise_address", "parse_protocol", "recipient_allowed"]
