"""Event contracts, version 1. One module, one place: every topic's payload is defined here.

Personal data (names, date of birth, address, postcode) is never a plain field: it travels as a
:class:`~sais_shared.crypto.Sealed` blob under the data key of the extract it came from. Each
event carries a deterministic ``event_id``, so a consumer that sees it twice treats the second
copy as done.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from functools import lru_cache
from typing import Annotated, Any, Literal
from uuid import NAMESPACE_URL, UUID, SafeUUID, uuid5

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from .crypto import Sealed

# Every integer in a contract is bounded: a value PostgreSQL cannot store (integer: < 2^31) is
# refused when the event is parsed (dead-lettered), never retried as if the database were down.
Count = Annotated[int, Field(ge=0, le=2**31 - 1)]
RowNumber = Annotated[int, Field(ge=1, le=2**31 - 1)]
Revision = Annotated[int, Field(ge=1, le=2**31 - 1)]
Dose = Annotated[int, Field(ge=1, le=9)]

Source = Literal["summer-census", "autumn-census", "admissions-reception", "admissions-year3-transfer"]
SOURCES: tuple[str, ...] = Source.__args__  # type: ignore[attr-defined]
Gender = Literal["M", "F", "U"]
YearGroup = Annotated[
    str,
    Field(
        pattern=r"^(N1|N2|R|[1-9]|1[0-4])$",
        description="National curriculum year: N1, N2, R, 1..14",
        examples=["R", "3", "8"],
    ),
]
DfENumber = Annotated[
    str, Field(pattern=r"^\d{7}$", description="LAESTAB: LA (3) + establishment (4)", examples=["9372001"])
]

_NS = uuid5(NAMESPACE_URL, "urn:sais-datashare")


def _bound(*parts: object) -> str:
    """A digest of the clear fields an encryption context binds: change any one, and it no longer opens."""
    return hashlib.sha256("\x1f".join("" if p is None else str(p) for p in parts).encode()).hexdigest()


def _micros(t: datetime) -> int:
    return round(t.timestamp() * 1_000_000)  # the same instant whatever its time zone or storage


def pupil_aad(
    extract_id: UUID,
    record_id: UUID,
    *,
    source: str,
    reference_date: date,
    school_dfe: str,
    school_name: str,
    year_group: str,
    gender: str,
    match_key: str,
) -> bytes:
    """Context bound into a pupil's sealed personal fields: they open only as that row of that extract,
    with the clear fields that drive decisions (who the child is matched to, year group, sex, school,
    source) exactly as they were sealed."""
    return (
        f"pupil:v2:{extract_id}:{record_id}:"
        + _bound(source, reference_date.isoformat(), school_dfe, school_name, year_group, gender, match_key)
    ).encode()


def pupil_aad_of(r: Any, year_group: str) -> bytes:
    """:func:`pupil_aad` of anything that holds a pupil record's clear fields by name (the event, and the
    record as eligibility keeps it), with the year group as the extract recorded it."""
    return pupil_aad(
        r.extract_id,
        r.record_id,
        source=r.source,
        reference_date=r.reference_date,
        school_dfe=r.school_dfe,
        school_name=r.school_name,
        year_group=year_group,
        gender=r.gender,
        match_key=r.match_key,
    )


def cohort_aad_of(r: Any) -> bytes:
    """:func:`cohort_aad` of anything that holds a cohort record's clear fields by name (the event, and the
    record as delivery keeps it)."""
    return cohort_aad(
        r.academic_year,
        r.pupil_id,
        programme=r.programme,
        dose=r.dose,
        revision=r.revision,
        school_dfe=r.school_dfe,
        school_name=r.school_name,
        year_group=r.year_group,
        gender=r.gender,
        source=r.source,
        reference_date=r.reference_date,
        received_at=r.received_at,
        extract_ids=r.extract_ids,
    )


def cohort_aad(
    academic_year: str,
    pupil_id: UUID,
    *,
    programme: str,
    dose: int | None,
    revision: int,
    school_dfe: str,
    school_name: str,
    year_group: str,
    gender: str,
    source: str,
    reference_date: date,
    received_at: datetime,
    extract_ids: list[UUID],
) -> bytes:
    """Context bound into a cohort record's sealed personal fields: the record and revision, and every
    clear field delivery acts on (programme, dose, school, year group, sex, source, staleness, lineage)."""
    return (
        f"cohort:v2:{academic_year}:{pupil_id}:"
        + _bound(
            programme,
            dose,
            revision,
            school_dfe,
            school_name,
            year_group,
            gender,
            source,
            reference_date.isoformat(),
            _micros(received_at),
            _lineage(tuple(extract_ids)),
        )
    ).encode()


@lru_cache(maxsize=4096)
def _lineage(extract_ids: tuple[UUID, ...]) -> str:
    """The extracts a record comes from, in one order: the few an extract's children share, made once each."""
    return ",".join(sorted(str(x) for x in extract_ids))


def dip_sample_aad(extract_id: UUID, row_number: int) -> bytes:
    """Context of a dip-sample copy (ISP §9.3), kept by ingest for the data officer's report."""
    return f"dip-sample:{extract_id}:{row_number}".encode()


def record_id_for(extract_id: UUID, row_number: int) -> UUID:
    return stable_id("record", extract_id, row_number)


def stable_id(*parts: object) -> UUID:
    """A deterministic id from its parts: the same input always yields the same event id. It is
    ``uuid5(_NS, "/".join(parts))``, built without ``UUID.__init__``'s checks (twice as fast; a unit
    test holds the two equal)."""
    digest = hashlib.sha1(_NS_BYTES + "/".join(map(str, parts)).encode()).digest()
    u = _new_uuid(UUID)
    _set(u, "int", (int.from_bytes(digest[:16]) & _UUID5_CLEAR) | _UUID5_SET)
    _set(u, "is_safe", SafeUUID.unknown)
    return u


_NS_BYTES = _NS.bytes
_new_uuid, _set = object.__new__, object.__setattr__
_UUID5_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))  # the version and variant bits
_UUID5_SET = (5 << 76) | (0x8000 << 48)  # version 5, RFC 4122 variant


class PupilPersonal(BaseModel):
    """The personal fields of one pupil (ISP §6.1). Only ever serialised inside a Sealed blob."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    surname: str
    forename: str
    date_of_birth: date
    address_lines: list[str]
    postcode: str


class Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: Literal[1] = 1
    event_id: UUID = Field(description="Deterministic id; a repeat is the same event")
    occurred_at: datetime


class PupilRecorded(Event):
    """One accepted pupil row of an extract, minimised to the ISP §6.1 fields."""

    type: Literal["pupil-recorded"] = "pupil-recorded"
    extract_id: UUID
    record_id: UUID = Field(description="Stable id of this row within its extract")
    source: Source
    reference_date: date = Field(description="Census day or admissions offer date")
    row_number: RowNumber = Field(description="Row as the spreadsheet shows it (header is row 1)")
    originator: str = Field(description="Organisation that supplied the data (ISP §8.4)")
    protocol_version: str
    school_dfe: DfENumber
    school_name: str
    year_group: YearGroup = Field(description="Year group as recorded by the source")
    gender: Gender
    match_key: str = Field(description="Keyed blind index of forename+surname+date of birth")
    personal: Sealed

    def aad(self) -> bytes:
        return pupil_aad_of(self, self.year_group)


def records_digest(record_ids) -> str:
    """An order-free checksum of an extract's published pupil records (sum of each record id's first
    8 sha256 bytes, mod 2^64, as 16 hex digits): ingest sends it with the counts, eligibility adds up
    the same over what it recorded and releases the extract only when both agree."""
    return f"{sum(record_digest_part(r) for r in record_ids) % 2**64:016x}"


def record_digest_part(record_id: UUID) -> int:
    return int.from_bytes(hashlib.sha256(record_id.bytes).digest()[:8], "big")


class ExtractCompleted(Event):
    """An extract was fully ingested; counts always add up:
    rows_in = accepted + repeated + rejected + out_of_scope. Until this event comes, and every one of
    its ``accepted`` pupil events is recorded with the same digest, none of its children reaches a cohort.
    """

    type: Literal["extract-completed"] = "extract-completed"
    extract_id: UUID
    source: Source
    reference_date: date
    target_academic_year: str = Field(examples=["2017/18"])
    content_sha256: str
    rows_in: Count
    accepted: Count
    rejected: Count
    out_of_scope: Count
    warnings: Count
    supersedes: UUID | None = Field(None, description="Earlier extract this replacement dataset replaces (ISP §9.6)")
    key_id: UUID
    originator: str
    protocol_version: str
    ingested_by: str
    repeated: Count = Field(0, description="Rows that repeat an earlier row of the extract exactly: one child, once")
    records_digest: str | None = Field(
        None, pattern=r"^[0-9a-f]{16}$", description="records_digest() of the accepted pupil events' record ids"
    )


class ExtractFailed(Event):
    """An extract that was refused or failed part-way: none of its children may reach a cohort. Its pupil
    events already on the topic are discarded; retention destroys its data key at once."""

    type: Literal["extract-failed"] = "extract-failed"
    extract_id: UUID
    source: Source
    reference_date: date
    target_academic_year: str
    key_id: UUID
    status: Literal["refused", "failed"]
    code: str = Field(examples=["file.field-too-long", "abandoned", "replacement.withdraws-too-many"])
    reason: str = Field(description="What went wrong, in words; never quotes a value")
    published: Count = Field(description="Pupil events published before it stopped (all discarded)")


class ExtractWithdrawn(Event):
    """An operator took a completed extract back (``sais ingest withdraw``): its children leave the cohorts."""

    type: Literal["extract-withdrawn"] = "extract-withdrawn"
    extract_id: UUID
    target_academic_year: str
    reason: str = Field(description="A fixed text: the operator's own reason is in the audit trail only")
    withdrawn_by: str


ExtractEvent = Annotated[ExtractCompleted | ExtractFailed | ExtractWithdrawn, Field(discriminator="type")]
extract_event_adapter: TypeAdapter[ExtractCompleted | ExtractFailed | ExtractWithdrawn] = TypeAdapter(ExtractEvent)


class RowRejected(Event):
    """A row that could not be accepted, with the exact field and reason. Holds no row values."""

    type: Literal["row-rejected"] = "row-rejected"
    extract_id: UUID
    source: Source
    row_number: RowNumber
    field: str
    code: str = Field(examples=["postcode.format"])
    reason: str


class CohortMemberAdded(Event):
    """A pupil is (or, on ``change='updated'``, still is) in a programme's cohort."""

    type: Literal["cohort-member-added"] = "cohort-member-added"
    change: Literal["added", "updated"] = "added"
    academic_year: str = Field(examples=["2017/18"])
    programme: str = Field(examples=["hpv"])
    dose: Dose | None = None
    pupil_id: UUID
    school_dfe: str = Field(
        pattern=r"^(\d{7})?$",
        description="LAESTAB of the child's school in the target year; empty when it is not yet known "
        "(a record rolled forward past the last year of the school it came from)",
        examples=["9372001", ""],
    )
    school_name: str = Field(description="Empty when the school is not yet known")
    year_group: YearGroup = Field(description="Year group in the target academic year")
    gender: Gender
    source: Source
    reference_date: date
    received_at: datetime = Field(description="When the winning extract was received (ISP §9.5 staleness)")
    extract_ids: list[UUID] = Field(description="Lineage: the extracts this record came from")
    revision: Revision = Field(description="Per-pupil revision; higher wins")
    personal: Sealed

    def aad(self) -> bytes:
        return cohort_aad_of(self)


class CohortMemberWithdrawn(Event):
    """A pupil left a programme's cohort (replacement dataset, §9.6)."""

    type: Literal["cohort-member-withdrawn"] = "cohort-member-withdrawn"
    academic_year: str
    programme: str
    dose: Dose | None = None
    pupil_id: UUID
    reason: str
    revision: Revision


class CoverageGap(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    programme: str = Field(examples=["hpv-dose-1"])
    year_groups: list[YearGroup]
    sexes: list[Gender]
    sources: list[Source] = Field(description="The programme's sources, none of which the protocol asks for these")
    description: str


class CoverageChecked(Event):
    """Eligibility's check of one academic year's programme rules against the protocol in force: the
    children a programme needs whom no source is asked for (dropped as out of scope at ingest, so the
    cohort is incomplete). Published at start and whenever the protocol in force changes; delivery
    warns when it sends under a gap. Key: the academic year."""

    type: Literal["coverage-checked"] = "coverage-checked"
    academic_year: str = Field(examples=["2018/19"])
    protocol_id: str
    protocol_version: str
    gaps: list[CoverageGap]


CohortEvent = Annotated[CohortMemberAdded | CohortMemberWithdrawn | CoverageChecked, Field(discriminator="type")]
cohort_event_adapter: TypeAdapter[CohortMemberAdded | CohortMemberWithdrawn | CoverageChecked] = TypeAdapter(
    CohortEvent
)


class DeliveredFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    name: str
    sha256: str
    rows: Count


class DeliveredPart(BaseModel):
    """One message of a batch: a batch over the maximum message size goes as parts 1..n."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    part: int = Field(ge=1, le=100_000)
    message_id: str
    size_bytes: int = Field(ge=0, le=2**40, description="The message as sent: signed, encrypted, encoded")
    programmes: dict[str, int]
    transferred_at: datetime


class DeliveryCompleted(Event):
    """A batch was accepted by the recipient's mail server: every part of it."""

    type: Literal["delivery-completed"] = "delivery-completed"
    batch_id: UUID
    window: str
    academic_year: str
    programmes: dict[str, int] = Field(description="Cohort records sent per programme")
    recipient: str
    message_id: str
    transferred_at: datetime
    delete_by: date = Field(description="Transfer date + retention period (ISP §11.1)")
    files: list[DeliveredFile]
    extract_ids: list[UUID]
    key_ids: list[UUID]
    protocol_version: str
    replaces_batch: UUID | None = None
    parts: list[DeliveredPart] = Field(default_factory=list, description="The messages of the batch, in order")


class DeletionCompleted(Event):
    """A deletion certificate: what was destroyed, when, under which rule. No personal data."""

    type: Literal["deletion-completed"] = "deletion-completed"
    certificate_id: UUID
    rule: str = Field(examples=["isp-11.1-transfer-plus-3-months"])
    subject: str = Field(description="What the deletion was for, e.g. batch:<id>")
    due_at: date
    executed_at: datetime
    key_ids_destroyed: list[UUID]
    rows_deleted: dict[str, int]
    protocol_version: str


DeletionScope = Literal["transfer", "party-left", "inbound-staging"]
OWNERS = ("ingest", "eligibility", "delivery")  # the services that hold rows retention asks to delete


class DeletionRequested(Event):
    """Retention asks the services that own data to delete their rows (their data keys are already
    destroyed). Each owner deletes in its own schema and answers with a DeletionConfirmed."""

    type: Literal["deletion-requested"] = "deletion-requested"
    request_id: UUID
    subject: str = Field(description="What is deleted, e.g. batch:<id>, extract:<id>, party:<id>:<time>")
    rule: str
    scope: DeletionScope = Field(
        description="transfer: the extracts, keys and batches named; party-left: "
        "everything held; inbound-staging: unfinished inbound extracts "
        "last changed before staged_before"
    )
    extract_ids: list[UUID] = Field(default_factory=list)
    key_ids: list[UUID] = Field(default_factory=list)
    batch_ids: list[UUID] = Field(default_factory=list)
    staged_before: date | None = None
    owners: list[Literal["ingest", "eligibility", "delivery"]] = Field(
        description="The services that must confirm before the certificate is written"
    )


class DeletionConfirmed(Event):
    """One owner's answer to a DeletionRequested: rows deleted per table of its own schema."""

    type: Literal["deletion-confirmed"] = "deletion-confirmed"
    request_id: UUID
    service: Literal["ingest", "eligibility", "delivery"]
    rows_deleted: dict[str, int]


class DeadLetter(Event):
    """A message no consumer can process. Refers to the original by position; never copies it."""

    type: Literal["dead-letter"] = "dead-letter"
    consumer_group: str
    original_topic: str
    partition: Count
    offset: int = Field(ge=0, le=2**63 - 1)
    value_sha256: str
    reason: str
