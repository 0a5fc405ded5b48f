"""Use case: ingest one extract (a file, or the rows of an inbound extract).

The file is hashed first: the same content again publishes nothing. A file with the same
source and reference date but other content is a replacement dataset (ISP §9.6) and says
which extract it supersedes. Event ids are deterministic (extract id + row number), so an
ingest resumed after a crash republishes the same events, which consumers discard as seen.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from sais_shared import ops
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
from sais_shared.ports import Clock
from sais_shared.protocol import Protocol, ProtocolRefusalError
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import academic_year_label

from ..adapters.readers import inspect_file, open_extract
from ..domain.extract import classify_row, header_mapping
from ..domain.model import CleanRow, ExtractFileError, OutOfScope, Rejected
from .ports import ExtractKeys, ExtractStore

log = structlog.get_logger("sais.ingest")
CHUNK_ROWS = 2000
DIP_SAMPLE_SIZE = 10
# Every field that leaves ingest, named as in the protocol's dataset (§6.1).
FORWARDED_FIELDS = frozenset(
    {"school_dfe", "school_name", "year_group", "surname", "forename", "date_of_birth", "gender", "address", "postcode"}
)


def check_fields_allowed(protocol: Protocol) -> None:
    """Refuse to run under a protocol version that does not allow a field ingest forwards."""
    extra = sorted(FORWARDED_FIELDS - {f.name for f in protocol.dataset})
    if extra:
        raise ProtocolRefusalError(
            f"protocol {protocol.id} v{protocol.version} does not allow the field(s) {extra} that "
            "ingest forwards; nothing was read"
        )


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
    header_row: int | None = None  # the spreadsheet row the header was found on (None: not a sheet)

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.rejected + self.out_of_scope


def _personal(row: CleanRow) -> PupilPersonal:
    return PupilPersonal(
        surname=row.surname,
        forename=row.forename,
        date_of_birth=row.date_of_birth,
        address_lines=row.address_lines,
        postcode=row.postcode,
    )


@dataclass
class ExtractInput:
    """An extract's rows (sync or async, streamed: ``(0, headers)`` first, then ``(row number, cells)``)
    and what is known of it before they are read."""

    rows: Iterator[tuple[int, list[str]]] | AsyncIterator[tuple[int, list[str]]]
    content_sha256: str
    encoding: str
    file_name: str
    source: str
    reference_date: date
    extra_dropped: Callable[[], list[str]] = lambda: []  # columns a reader dropped (CTF elements)


@dataclass
class Ingest(FollowsProtocol):
    """Ingest's use cases for a file or a stream of rows (what ``bootstrap()`` builds)."""

    repo: ExtractStore
    keys: ExtractKeys
    protocol_ref: ProtocolRef
    publishers: Publishers
    clock: Clock

    async def file(
        self,
        path: Path,
        *,
        source: str,
        reference_date: date,
        actor: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ExtractReport:
        facts = inspect_file(path)
        reader = open_extract(path, facts)
        report = await self.extract(
            ExtractInput(
                reader.rows(),
                facts.sha256,
                facts.encoding,
                path.name,
                source,
                reference_date,
                extra_dropped=lambda: sorted(getattr(reader, "dropped", ())),
            ),
            actor=actor,
            progress=progress,
        )
        report.header_row = None if report.duplicate else getattr(reader, "header_row", None)
        return report

    async def extract(
        self, x: ExtractInput, *, actor: str | None = None, progress: Callable[[int], None] | None = None
    ) -> ExtractReport:
        """Validate, minimise and publish every row; the counts always add up."""
        protocol = self.protocol  # one version for the whole extract
        actor = actor or "ingest"  # a command names its person (sais --actor); the service acts as itself
        started = await self._begin(x, protocol, actor)
        if isinstance(started, ExtractReport):
            return started  # the same content again: nothing published
        run = started
        async for row_number, cells in run.rows:
            run.take(row_number, cells)
            if run.pending >= CHUNK_ROWS:
                await self._flush(run)
                if progress:
                    progress(run.report.rows_in)
        await self._flush(run)
        return await self._finish(run, x, protocol, actor)

    async def _begin(self, x: ExtractInput, protocol: Protocol, actor: str) -> ExtractReport | _Run:
        rule = protocol.source(x.source)  # refuses a source the protocol does not cover
        check_fields_allowed(protocol)
        target_year = academic_year_label(rule.target_academic_year(x.reference_date))
        repo = self.repo
        existing = await repo.by_hash(x.content_sha256)
        if existing and existing.status == "completed":
            log.info("extract.duplicate", extract_id=str(existing.extract_id), sha256=x.content_sha256)
            await repo.audit(
                actor,
                "extract.duplicate_ignored",
                f"extract:{existing.extract_id}",
                {"sha256": x.content_sha256},
                protocol.version,
            )
            return await report_for(repo, existing.extract_id, duplicate=True, keys=self.keys)

        extract_id = existing.extract_id if existing else stable_id("extract", x.content_sha256)
        supersedes = await repo.latest_completed(x.source, x.reference_date, extract_id)
        key = await self.keys.key_for_extract(extract_id)
        rows = _aiter(x.rows)
        try:
            _, headers = await anext(rows)
        except StopAsyncIteration:
            raise ExtractFileError("the file is empty: no header row") from None
        mapping, dropped = header_mapping(headers)
        await repo.start(
            extract_id=extract_id,
            sha256=x.content_sha256,
            source=x.source,
            reference_date=x.reference_date,
            target_academic_year=target_year,
            file_name=x.file_name,
            encoding=x.encoding,
            supersedes=supersedes,
            key_id=key.key_id,
            originator=protocol.originator_label,
            protocol_version=protocol.version,
            ingested_by=actor,
        )
        log.info(
            "extract.started",
            extract_id=str(extract_id),
            source=x.source,
            supersedes=str(supersedes) if supersedes else None,
            encoding=x.encoding,
        )
        report = ExtractReport(
            extract_id,
            x.source,
            x.reference_date,
            target_year,
            x.file_name,
            x.content_sha256,
            supersedes=supersedes,
            dropped_columns=dropped,
        )
        return _Run(
            report, rows, mapping, rule, protocol, key, self.keys.kek, self.clock.now(), random.Random(x.content_sha256)
        )

    async def _flush(self, run: _Run) -> None:
        extract_id = run.report.extract_id
        await publish_many(self.publishers.pupil_recorded, run.pupils)
        await publish_many(self.publishers.row_rejected, run.rejects)
        await self.repo.add_problems(extract_id, run.problems)
        await self.repo.add_row_keys(extract_id, run.row_keys)
        run.pupils.clear(), run.rejects.clear(), run.problems.clear(), run.row_keys.clear()

    async def _finish(self, run: _Run, x: ExtractInput, protocol: Protocol, actor: str) -> ExtractReport:
        """Duplicates within the file, the dip sample, the counts, then extract-completed and the audit."""
        report, repo, extract_id = run.report, self.repo, run.report.extract_id
        duplicates = [
            (row, "warning", "row", "row.duplicate", f"same child as row {first}")
            for row, first in await repo.duplicate_rows(extract_id)
        ]
        await repo.add_problems(extract_id, duplicates)
        report.warnings += len(duplicates)
        await repo.save_dip_sample(
            extract_id,
            [  # its own sealed copy, under the dip sample's context
                (
                    e.row_number,
                    e.school_dfe,
                    e.year_group,
                    e.gender,
                    run.key.seal_model(p, dip_sample_aad(extract_id, e.row_number)).model_dump_json(),
                )
                for e, p in run.sample
            ],
        )
        report.dropped_columns = report.dropped_columns + x.extra_dropped()  # e.g. CTF elements not forwarded

        assert report.balanced, "rows in must equal accepted + rejected + out of scope"
        for outcome_name, n in (
            ("accepted", report.accepted),
            ("rejected", report.rejected),
            ("out_of_scope", report.out_of_scope),
        ):
            ops.ROWS.labels(x.source, outcome_name).inc(n)
        await repo.complete(
            extract_id,
            rows_in=report.rows_in,
            accepted=report.accepted,
            rejected=report.rejected,
            out_of_scope=report.out_of_scope,
            warnings=report.warnings,
            dropped_columns=report.dropped_columns,
        )
        await self.publishers.extract_completed.publish(
            ExtractCompleted(
                event_id=stable_id("extract-completed", extract_id),
                occurred_at=self.clock.now(),
                extract_id=extract_id,
                source=x.source,
                reference_date=x.reference_date,
                target_academic_year=report.target_academic_year,
                content_sha256=x.content_sha256,
                rows_in=report.rows_in,
                accepted=report.accepted,
                rejected=report.rejected,
                out_of_scope=report.out_of_scope,
                warnings=report.warnings,
                supersedes=report.supersedes,
                key_id=run.key.key_id,
                originator=protocol.originator_label,
                protocol_version=protocol.version,
                ingested_by=actor,
            ),
            key=extract_id.bytes,
        )
        await repo.audit(
            actor,
            "extract.ingested",
            f"extract:{extract_id}",
            {
                "sha256": x.content_sha256,
                "source": x.source,
                "rows_in": report.rows_in,
                "accepted": report.accepted,
                "rejected": report.rejected,
                "out_of_scope": report.out_of_scope,
                "supersedes": str(report.supersedes) if report.supersedes else None,
            },
            protocol.version,
        )
        log.info(
            "extract.completed",
            extract_id=str(extract_id),
            source=x.source,
            rows_in=report.rows_in,
            accepted=report.accepted,
            rejected=report.rejected,
            out_of_scope=report.out_of_scope,
            warnings=report.warnings,
        )
        return await report_for(repo, extract_id, keys=self.keys)


@dataclass
class _Run:
    """One extract being read: its report so far, and the chunk waiting to be published and stored."""

    report: ExtractReport
    rows: AsyncIterator[tuple[int, list[str]]]
    mapping: Any
    rule: Any
    protocol: Protocol
    key: DataKey
    kek: Any
    now: Any
    sampler: random.Random  # reproducible reservoir sample of accepted rows (§9.3)
    sample: list[tuple[PupilRecorded, PupilPersonal]] = field(default_factory=list)
    pupils: list[tuple[bytes, PupilRecorded]] = field(default_factory=list)
    rejects: list[tuple[bytes, RowRejected]] = field(default_factory=list)
    problems: list[tuple[int, str, str, str, str]] = field(default_factory=list)
    row_keys: list[tuple[str, int]] = field(default_factory=list)

    @property
    def pending(self) -> int:
        return len(self.pupils) + len(self.rejects)

    def take(self, row_number: int, cells: list[str]) -> None:
        """Classify one row and add what it gives to the chunk and the report."""
        report = self.report
        outcome = classify_row(
            row_number,
            cells,
            self.mapping,
            rule=self.rule,
            protocol=self.protocol,
            reference_date=report.reference_date,
        )
        if outcome is None:
            return  # a blank line is not a row
        report.rows_in += 1
        if isinstance(outcome, Rejected):
            report.rejected += 1
            self._reject(row_number, outcome)
        elif isinstance(outcome, OutOfScope):
            report.out_of_scope += 1
        else:
            report.accepted += 1
            self._accept(outcome)

    def _reject(self, row_number: int, outcome: Rejected) -> None:
        extract_id = self.report.extract_id
        for p in outcome.problems:
            ops.REJECTIONS.labels(p.field, p.code).inc()
            self.problems.append((row_number, "rejected", p.field, p.code, p.reason))
            self.rejects.append(
                (
                    extract_id.bytes,
                    RowRejected(
                        event_id=stable_id("rejected", extract_id, row_number, p.field),
                        occurred_at=self.now,
                        extract_id=extract_id,
                        source=self.report.source,
                        row_number=row_number,
                        field=p.field,
                        code=p.code,
                        reason=p.reason,
                    ),
                )
            )

    def _accept(self, row: CleanRow) -> None:
        report = self.report
        match_key = self.kek.blind_index(row.forename, row.surname, row.date_of_birth.isoformat())
        self.row_keys.append((self.kek.blind_index(match_key, row.postcode), row.row_number))
        for w in row.warnings:
            report.warnings += 1
            self.problems.append((row.row_number, "warning", w.field, w.code, w.reason))
        personal = _personal(row)
        event = _pupil_event(
            row,
            personal,
            self.key,
            report.extract_id,
            report.source,
            report.reference_date,
            self.protocol,
            match_key,
            self.now,
        )
        self.pupils.append((match_key.encode(), event))
        if len(self.sample) < DIP_SAMPLE_SIZE:
            self.sample.append((event, personal))
        elif (j := self.sampler.randrange(report.accepted)) < DIP_SAMPLE_SIZE:
            self.sample[j] = (event, personal)


async def _aiter(rows: Iterator | AsyncIterator) -> AsyncIterator[tuple[int, list[str]]]:
    if hasattr(rows, "__anext__"):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


def _pupil_event(
    row: CleanRow,
    personal: PupilPersonal,
    key: DataKey,
    extract_id: UUID,
    source: str,
    reference_date: date,
    protocol: Protocol,
    match_key: str,
    now,
) -> PupilRecorded:
    record_id = record_id_for(extract_id, row.row_number)
    event = dict(
        event_id=stable_id("pupil", extract_id, row.row_number),
        occurred_at=now,
        extract_id=extract_id,
        record_id=record_id,
        source=source,
        reference_date=reference_date,
        row_number=row.row_number,
        originator=protocol.originator_label,
        protocol_version=protocol.version,
        school_dfe=row.school_dfe,
        school_name=row.school_name,
        year_group=row.year_group,
        gender=row.gender,
        match_key=match_key,
    )
    aad = pupil_aad(
        extract_id,
        record_id,
        source=source,
        reference_date=reference_date,
        school_dfe=row.school_dfe,
        school_name=row.school_name,
        year_group=row.year_group,
        gender=row.gender,
        match_key=match_key,
    )
    return PupilRecorded(**event, personal=key.seal_model(personal, aad))


async def report_for(
    repo: ExtractStore, extract_id: UUID, duplicate: bool = False, keys: ExtractKeys | None = None
) -> ExtractReport:
    row = await repo.get(extract_id)
    assert row is not None
    rep = ExtractReport(
        row.extract_id,
        row.source,
        row.reference_date,
        row.target_academic_year,
        row.file_name,
        row.content_sha256,
        duplicate=duplicate,
        supersedes=row.supersedes,
        rows_in=row.rows_in,
        accepted=row.accepted,
        rejected=row.rejected,
        out_of_scope=row.out_of_scope,
        warnings=row.warnings,
        dropped_columns=list(row.dropped_columns),
    )
    rep.rejections = [dict(r) for r in await repo.problems(extract_id, "rejected")]
    rep.warning_rows = [dict(r) for r in await repo.problems(extract_id, "warning")]
    if keys is not None:  # the dip sample is personal data: only for the data officer's own report
        rows = await repo.dip_sample(extract_id)
        sealed = {r["row_number"]: Sealed.model_validate_json(r["personal"]) for r in rows}
        opened = await keys.get_many({s.key_id for s in sealed.values()})
        for r in rows:
            s = sealed[r["row_number"]]
            p = opened[s.key_id].open_model(s, PupilPersonal, dip_sample_aad(extract_id, r["row_number"]))
            rep.dip_sample.append(
                {
                    "row_number": r["row_number"],
                    "school_dfe": r["school_dfe"],
                    "year_group": r["year_group"],
                    "gender": r["gender"],
                    **p.model_dump(mode="json"),
                }
            )
    return rep


__all__ = ["ExtractInput", "ExtractReport", "Ingest", "Publishers", "report_for"]
