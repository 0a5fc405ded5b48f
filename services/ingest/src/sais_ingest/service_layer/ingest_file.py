"""Use case: ingest one extract file.

The file is hashed first: the same content again publishes nothing. A file with the same
source and reference date but other content is a replacement dataset (ISP §9.6) and says
which extract it supersedes. Event ids are deterministic (extract id + row number), so an
ingest resumed after a crash republishes the same events, which consumers discard as seen.
"""

from __future__ import annotations

import getpass
import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from sais_shared import ops
from sais_shared.clock import Clock
from sais_shared.crypto import DataKey, Sealed
from sais_shared.events import (
    ExtractCompleted,
    PupilPersonal,
    PupilRecorded,
    RowRejected,
    dip_sample_aad,
    pupil_aad,
    record_id_for,
    stable_id,
)
from sais_shared.kafka import publish_many
from sais_shared.keystore import KeyStore, audit
from sais_shared.protocol import Protocol, ProtocolError
from sais_shared.schoolyear import academic_year_label

from ..adapters.readers import inspect_file, open_extract
from ..adapters.repository import ExtractRepository
from ..domain.extract import classify_row, header_mapping
from ..domain.model import CleanRow, ExtractFileError, OutOfScope, Rejected

log = structlog.get_logger("sais.ingest")
CHUNK_ROWS = 2000
DIP_SAMPLE_SIZE = 10
# Every field that leaves ingest, named as in the protocol's dataset (§6.1).
FORWARDED_FIELDS = frozenset({"school_dfe", "school_name", "year_group", "surname", "forename", "date_of_birth",
                              "gender", "address", "postcode"})


def check_fields_allowed(protocol: Protocol) -> None:
    """Refuse to run under a protocol version that does not allow a field ingest forwards."""
    extra = sorted(FORWARDED_FIELDS - {f.name for f in protocol.dataset})
    if extra:
        raise ProtocolError(f"protocol {protocol.id} v{protocol.version} does not allow the field(s) {extra} that "
                            "ingest forwards; nothing was read")


@dataclass
class Publishers:
    """FastStream publisher objects for ingest's three topics."""

    pupil_recorded: Any
    extract_completed: Any
    row_rejected: Any


@dataclass
class ExtractReport:
    extract_id: UUID
    source: str
    reference_date: date
    target_academic_year: str
    file_name: str
    sha256: str
    duplicate: bool = False
    supersedes: UUID | None = None
    rows_in: int = 0
    accepted: int = 0
    rejected: int = 0
    out_of_scope: int = 0
    warnings: int = 0
    dropped_columns: list[str] = field(default_factory=list)
    rejections: list[dict] = field(default_factory=list)
    warning_rows: list[dict] = field(default_factory=list)
    dip_sample: list[dict] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.rejected + self.out_of_scope


def _personal(row: CleanRow) -> PupilPersonal:
    return PupilPersonal(surname=row.surname, forename=row.forename, date_of_birth=row.date_of_birth,
                         address_lines=row.address_lines, postcode=row.postcode)


async def ingest_file(
    path: Path,
    *,
    source: str,
    reference_date: date,
    protocol: Protocol,
    repo: ExtractRepository,
    keys: KeyStore,
    publishers: Publishers,
    clock: Clock,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> ExtractReport:
    facts = inspect_file(path)
    reader = open_extract(path, facts)
    return await ingest_rows(reader.rows(), content_sha256=facts.sha256, encoding=facts.encoding,
                             file_name=path.name, source=source, reference_date=reference_date, protocol=protocol,
                             repo=repo, keys=keys, publishers=publishers, clock=clock, actor=actor,
                             progress=progress, extra_dropped=lambda: sorted(getattr(reader, "dropped", ())))


async def _aiter(rows: Iterator | AsyncIterator) -> AsyncIterator[tuple[int, list[str]]]:
    if hasattr(rows, "__anext__"):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


async def ingest_rows(
    rows: Iterator[tuple[int, list[str]]] | AsyncIterator[tuple[int, list[str]]],
    *,
    content_sha256: str,
    encoding: str,
    file_name: str,
    source: str,
    reference_date: date,
    protocol: Protocol,
    repo: ExtractRepository,
    keys: KeyStore,
    publishers: Publishers,
    clock: Clock,
    actor: str | None = None,
    progress: Callable[[int], None] | None = None,
    extra_dropped: Callable[[], list[str]] = lambda: [],
) -> ExtractReport:
    """Ingest an extract given as rows (sync or async, streamed): ``(0, headers)`` first, then
    ``(row number, cells)``."""
    rule = protocol.source(source)  # refuses a source the protocol does not cover
    check_fields_allowed(protocol)
    target_year = academic_year_label(rule.target_academic_year(reference_date))
    actor = actor or getpass.getuser()

    existing = await repo.by_hash(content_sha256)
    if existing and existing.status == "completed":
        log.info("extract.duplicate", extract_id=str(existing.extract_id), sha256=content_sha256)
        await audit(repo.pool, actor, "extract.duplicate_ignored", f"extract:{existing.extract_id}",
                    {"sha256": content_sha256}, protocol.version)
        return await report_for(repo, existing.extract_id, duplicate=True, keys=keys)

    extract_id = existing.extract_id if existing else stable_id("extract", content_sha256)
    supersedes = await repo.latest_completed(source, reference_date, extract_id)
    key = await keys.key_for_extract(extract_id)
    rows = _aiter(rows)
    try:
        _, headers = await anext(rows)
    except StopAsyncIteration:
        raise ExtractFileError("the file is empty: no header row") from None
    mapping, dropped = header_mapping(headers)

    await repo.start(extract_id=extract_id, sha256=content_sha256, source=source, reference_date=reference_date,
                     target_academic_year=target_year, file_name=file_name, encoding=encoding,
                     supersedes=supersedes, key_id=key.key_id, originator=protocol.originator_label,
                     protocol_version=protocol.version, ingested_by=actor)
    bound = log.bind(extract_id=str(extract_id), source=source)
    bound.info("extract.started", supersedes=str(supersedes) if supersedes else None, encoding=encoding)

    report = ExtractReport(extract_id, source, reference_date, target_year, file_name, content_sha256,
                           supersedes=supersedes, dropped_columns=dropped)
    now = clock.now()
    row_keys: list[tuple[str, int]] = []
    sampler = random.Random(content_sha256)  # reproducible reservoir sample of accepted rows (§9.3)
    sample: list[tuple[PupilRecorded, PupilPersonal]] = []
    pupils: list[tuple[bytes, PupilRecorded]] = []
    rejects: list[tuple[bytes, RowRejected]] = []
    problems: list[tuple[int, str, str, str, str]] = []

    async def flush() -> None:
        await publish_many(publishers.pupil_recorded, pupils)
        await publish_many(publishers.row_rejected, rejects)
        await repo.add_problems(extract_id, problems)
        await repo.add_row_keys(extract_id, row_keys)
        pupils.clear(), rejects.clear(), problems.clear(), row_keys.clear()

    async for row_number, cells in rows:
        outcome = classify_row(row_number, cells, mapping, rule=rule, protocol=protocol, reference_date=reference_date)
        if outcome is None:
            continue  # a blank line is not a row
        report.rows_in += 1
        if isinstance(outcome, Rejected):
            report.rejected += 1
            for p in outcome.problems:
                ops.REJECTIONS.labels(p.field, p.code).inc()
                problems.append((row_number, "rejected", p.field, p.code, p.reason))
                rejects.append((extract_id.bytes, RowRejected(
                    event_id=stable_id("rejected", extract_id, row_number, p.field), occurred_at=now,
                    extract_id=extract_id, source=source, row_number=row_number, field=p.field,
                    code=p.code, reason=p.reason)))
        elif isinstance(outcome, OutOfScope):
            report.out_of_scope += 1
        else:
            report.accepted += 1
            match_key = keys.kek.blind_index(outcome.forename, outcome.surname, outcome.date_of_birth.isoformat())
            warnings = list(outcome.warnings)
            row_keys.append((keys.kek.blind_index(match_key, outcome.postcode), row_number))
            for w in warnings:
                report.warnings += 1
                problems.append((row_number, "warning", w.field, w.code, w.reason))
            personal = _personal(outcome)
            event = _pupil_event(outcome, personal, key, extract_id, source, reference_date, protocol, match_key,
                                 now)
            pupils.append((match_key.encode(), event))
            if len(sample) < DIP_SAMPLE_SIZE:
                sample.append((event, personal))
            elif (j := sampler.randrange(report.accepted)) < DIP_SAMPLE_SIZE:
                sample[j] = (event, personal)
        if len(pupils) + len(rejects) >= CHUNK_ROWS:
            await flush()
            if progress:
                progress(report.rows_in)
    await flush()
    duplicates = [(row, "warning", "row", "row.duplicate", f"same child as row {first}")
                  for row, first in await repo.duplicate_rows(extract_id)]
    await repo.add_problems(extract_id, duplicates)
    report.warnings += len(duplicates)
    await repo.save_dip_sample(extract_id, [  # its own sealed copy, under the dip sample's context
        (e.row_number, e.school_dfe, e.year_group, e.gender,
         key.seal_model(p, dip_sample_aad(extract_id, e.row_number)).model_dump_json()) for e, p in sample])
    dropped += extra_dropped()  # e.g. CTF elements not forwarded (UPN, SEN, …)
    report.dropped_columns = dropped

    assert report.balanced, "rows in must equal accepted + rejected + out of scope"
    for outcome_name, n in (("accepted", report.accepted), ("rejected", report.rejected),
                            ("out_of_scope", report.out_of_scope)):
        ops.ROWS.labels(source, outcome_name).inc(n)
    await repo.complete(extract_id, rows_in=report.rows_in, accepted=report.accepted, rejected=report.rejected,
                        out_of_scope=report.out_of_scope, warnings=report.warnings, dropped_columns=dropped)
    await publishers.extract_completed.publish(
        ExtractCompleted(
            event_id=stable_id("extract-completed", extract_id), occurred_at=clock.now(),
            extract_id=extract_id, source=source, reference_date=reference_date,
            target_academic_year=target_year, content_sha256=content_sha256, rows_in=report.rows_in,
            accepted=report.accepted, rejected=report.rejected, out_of_scope=report.out_of_scope,
            warnings=report.warnings, supersedes=supersedes, key_id=key.key_id,
            originator=protocol.originator_label, protocol_version=protocol.version, ingested_by=actor),
        key=extract_id.bytes,
    )
    await audit(repo.pool, actor, "extract.ingested", f"extract:{extract_id}",
                {"sha256": content_sha256, "source": source, "rows_in": report.rows_in, "accepted": report.accepted,
                 "rejected": report.rejected, "out_of_scope": report.out_of_scope,
                 "supersedes": str(supersedes) if supersedes else None}, protocol.version)
    bound.info("extract.completed", rows_in=report.rows_in, accepted=report.accepted,
               rejected=report.rejected, out_of_scope=report.out_of_scope, warnings=report.warnings)
    return await report_for(repo, extract_id, keys=keys)


def _pupil_event(row: CleanRow, personal: PupilPersonal, key: DataKey, extract_id: UUID, source: str,
                 reference_date: date, protocol: Protocol, match_key: str, now) -> PupilRecorded:
    record_id = record_id_for(extract_id, row.row_number)
    event = dict(
        event_id=stable_id("pupil", extract_id, row.row_number), occurred_at=now, extract_id=extract_id,
        record_id=record_id, source=source, reference_date=reference_date, row_number=row.row_number,
        originator=protocol.originator_label, protocol_version=protocol.version, school_dfe=row.school_dfe,
        school_name=row.school_name, year_group=row.year_group, gender=row.gender, match_key=match_key,
    )
    aad = pupil_aad(extract_id, record_id, source=source, reference_date=reference_date, school_dfe=row.school_dfe,
                    school_name=row.school_name, year_group=row.year_group, gender=row.gender, match_key=match_key)
    return PupilRecorded(**event, personal=key.seal_model(personal, aad))


async def report_for(repo: ExtractRepository, extract_id: UUID, duplicate: bool = False,
                     keys: KeyStore | None = None) -> ExtractReport:
    row = await repo.get(extract_id)
    assert row is not None
    rep = ExtractReport(row.extract_id, row.source, row.reference_date, row.target_academic_year, row.file_name,
                        row.content_sha256, duplicate=duplicate, supersedes=row.supersedes, rows_in=row.rows_in,
                        accepted=row.accepted, rejected=row.rejected, out_of_scope=row.out_of_scope,
                        warnings=row.warnings, dropped_columns=list(row.dropped_columns))
    rep.rejections = [dict(r) for r in await repo.problems(extract_id, "rejected")]
    rep.warning_rows = [dict(r) for r in await repo.problems(extract_id, "warning")]
    if keys is not None:  # the dip sample is personal data: only for the data officer's own report
        rows = await repo.dip_sample(extract_id)
        sealed = {r["row_number"]: Sealed.model_validate_json(r["personal"]) for r in rows}
        opened = await keys.get_many({s.key_id for s in sealed.values()})
        for r in rows:
            s = sealed[r["row_number"]]
            p = opened[s.key_id].open_model(s, PupilPersonal, dip_sample_aad(extract_id, r["row_number"]))
            rep.dip_sample.append({"row_number": r["row_number"], "school_dfe": r["school_dfe"],
                                   "year_group": r["year_group"], "gender": r["gender"], **p.model_dump(mode="json")})
    return rep


__all__ = ["ExtractReport", "Publishers", "ingest_file", "report_for"]
