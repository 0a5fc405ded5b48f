"""Use case: ingest one extract (a file, or the rows of an inbound extract).

An extract is all or nothing. Its pupil events are published as it is read, but eligibility holds
them until the extract-completed event says how many there are (with a checksum) and they are all
recorded; an extract that stops anywhere (a refused file, a server error, a killed process) ends
``refused`` or ``failed`` with its reason, an extract-failed event tells eligibility to discard what
it holds, and retention destroys its data key at once. A process holds the extract's lock while it
reads, so one that was killed is seen as abandoned and ended by the next ingest or the service.

The same content with the same source, reference date and target year again publishes nothing.
Rows of one extract that agree on every ISP field are one child, published once. A file with the
same source and reference date but other content is a replacement dataset (ISP §9.6); one that
would withdraw more than a set share of the children of the extract it supersedes (or has no rows)
is refused unless the operator says so (``--replace``), and ``--dry-run`` shows what it would do.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from uuid import UUID

import structlog
from sais_shared import ops
from sais_shared.crypto import DataKey, Sealed
from sais_shared.errors import ConfigurationError
from sais_shared.events import (
    ExtractCompleted,
    ExtractFailed,
    ExtractWithdrawn,
    PupilPersonal,
    PupilRecorded,
    RowRejected,
    dip_sample_aad,
    pupil_aad,
    record_digest_part,
    record_id_for,
    stable_id,
)
from sais_shared.kafka import publish_many
from sais_shared.keystore import AuditEntry
from sais_shared.ports import Clock
from sais_shared.protocol import Protocol, ProtocolRefusalError
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import academic_year_label

from ..domain.extract import classify_row, header_mapping
from ..domain.extracts import DipSampleRow, ExtractBusyError, ExtractRow, RowKeys, RowProblem
from ..domain.files import ReadLimits
from ..domain.model import CleanRow, ExtractFileError, OutOfScope, Rejected
from ..domain.reference_dates import reference_date_problem
from .ports import ExtractFiles, ExtractKeys, ExtractStore, InboundHandler

log = structlog.get_logger("sais.ingest")
CHUNK_ROWS = 2000
YIELD_ROWS = 250  # rows read between two turns of the event loop for the chunk being written
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


class ExtractStateError(Exception):
    """An extract is not in a state that allows what was asked (withdraw one that is not completed)."""


@dataclass(frozen=True)
class Limits:
    """The operator's settings for what an extract may do without a confirmation."""

    replacement_max_withdrawn: float = 0.10  # share of the superseded extract's children
    reference_date_tolerance_days: int = 14
    read: ReadLimits = field(default_factory=ReadLimits)  # what one file may make the readers do


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
    repeated: int = 0
    rejected: int = 0
    out_of_scope: int = 0
    warnings: int = 0
    status: str = "completed"
    dry_run: bool = False
    effect: dict[str, int] | None = None  # a replacement's adds, updates, unchanged, withdrawals, before
    dropped_columns: list[str] = field(default_factory=list)
    rejections: list[dict] = field(default_factory=list)
    warning_rows: list[dict] = field(default_factory=list)
    out_of_scope_rows: list[dict] = field(default_factory=list)  # row number and why it was not shared
    dip_sample: list[dict] = field(default_factory=list)
    header_row: int | None = None  # the spreadsheet row the header was found on (None: not a sheet)
    sheet: str | None = None  # the workbook's sheet that was read, when it is not the first

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.repeated + self.rejected + self.out_of_scope


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
    files: ExtractFiles
    limits: Limits = field(default_factory=Limits)
    inbound: InboundHandler | None = None  # the inbound topic's use case (where an inbound key is configured)

    async def handle_inbound(self, messages: list[Any]) -> None:
        """A batch of the inbound topic: extracts that upstream systems publish as events."""
        if self.inbound is None:
            raise ConfigurationError("SAIS_INGEST_INBOUND_PRIVATE_KEY is not set: ingest cannot open inbound extracts")
        await self.inbound.handle(messages)

    async def file(
        self,
        path: Path,
        *,
        source: str,
        reference_date: date,
        actor: str | None = None,
        progress: Callable[[int], None] | None = None,
        replace: bool = False,
        dry_run: bool = False,
        force_date: bool = False,
    ) -> ExtractReport:
        facts = self.files.inspect(path)
        reader = self.files.open(path, facts)
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
            replace=replace,
            dry_run=dry_run,
            force_date=force_date,
        )
        report.header_row = None if report.duplicate else getattr(reader, "header_row", None)
        report.sheet = None if report.duplicate else getattr(reader, "sheet", None)
        return report

    async def extract(
        self,
        x: ExtractInput,
        *,
        actor: str | None = None,
        progress: Callable[[int], None] | None = None,
        replace: bool = False,
        dry_run: bool = False,
        force_date: bool = False,
    ) -> ExtractReport:
        """Validate, minimise and publish every row; the counts always add up. All or nothing: an
        extract that does not reach the end is ended refused or failed, and none of it is delivered."""
        protocol = self.protocol  # one version for the whole extract
        actor = actor or "ingest"  # a command names its person (sais --actor); the service acts as itself
        if not dry_run:
            await self.sweep()  # extracts a killed process left, and endings not yet announced
        plan = await self._plan(x, protocol, actor, force_date=force_date, dry_run=dry_run)
        if isinstance(plan, ExtractReport):
            return plan  # the same extract again: nothing published
        extract_id, supersedes, target_year = plan
        async with self.repo.hold(extract_id):
            run = await self._begin(x, protocol, actor, extract_id, supersedes, target_year, dry_run=dry_run)
            log.info(
                "extract.started",
                extract_id=str(extract_id),
                source=x.source,
                encoding=x.encoding,
                supersedes=str(supersedes) if supersedes else None,
                dry_run=dry_run,
            )
            try:
                await self._header(run)
                read = 0
                async for row_number, cells in run.rows:
                    run.take(row_number, cells)
                    read += 1
                    if run.pending >= CHUNK_ROWS:
                        await self._flush(run)
                        if progress:
                            progress(run.report.rows_in)
                    elif read % YIELD_ROWS == 0:
                        await asyncio.sleep(0)  # the chunk being written goes on: its statements, the broker's acks
                await self._flush(run)
                await self._written(run)
                return await self._finish(run, x, protocol, actor, replace=replace)
            except BaseException as exc:
                if run.writing is not None:  # the chunk being written ends first, so that its count is known
                    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
                        run.writing.cancel()  # as a chunk written in line was: stopped where it was
                    await asyncio.gather(run.writing, return_exceptions=True)
                if dry_run:
                    await asyncio.shield(self.repo.discard(extract_id))
                else:
                    await asyncio.shield(self._fail(run, exc, actor))
                raise

    async def _plan(
        self, x: ExtractInput, protocol: Protocol, actor: str, *, force_date: bool, dry_run: bool
    ) -> ExtractReport | tuple[UUID, UUID | None, str]:
        """Refuse what cannot be this source's extract; find a duplicate; pick the extract's id and
        the extract it would supersede."""
        rule = protocol.source(x.source)  # refuses a source the protocol does not cover
        check_fields_allowed(protocol)
        target_year = academic_year_label(rule.target_academic_year(x.reference_date))
        problem = self._reference_date_problem(x, protocol, force_date=force_date)
        repo = self.repo
        existing = await repo.identity(x.content_sha256, x.source, x.reference_date, target_year)
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
        if existing and existing.status == "started" and await repo.is_held(existing.extract_id):
            raise ExtractBusyError(
                f"this extract (extract {existing.extract_id}) is being ingested by another process right now: "
                "wait for it to end (`sais status`)"
            )
        attempt = await repo.attempts(x.content_sha256, x.source, x.reference_date, target_year)
        extract_id = (
            uuid.uuid4()  # a dry run leaves nothing behind, not even its id
            if dry_run
            else stable_id("extract", x.content_sha256, x.source, x.reference_date, target_year, attempt)
        )
        supersedes = await repo.latest_completed(x.source, x.reference_date, extract_id)
        if problem:  # forced
            await repo.audit(
                actor,
                "extract.reference_date_forced",
                f"extract:{extract_id}",
                {"reference_date": x.reference_date.isoformat(), "source": x.source, "problem": problem},
                protocol.version,
            )
        return extract_id, supersedes, target_year

    def _reference_date_problem(self, x: ExtractInput, protocol: Protocol, *, force_date: bool) -> str | None:
        """What is wrong with the extract's reference date (refused unless forced, and then audited)."""
        earliest = protocol.effective_from.replace(year=protocol.effective_from.year - 1)
        tolerance = self.limits.reference_date_tolerance_days
        problem = reference_date_problem(
            x.source, x.reference_date, today=self.clock.today(), earliest=earliest, tolerance_days=tolerance
        )
        if problem and not force_date:
            raise ExtractFileError(
                f"{problem}: nothing was read. Check --reference-date and --source; if the date is right, "
                "say so with --force-date (audited)",
                code="reference-date.outside-window",
            )
        return problem

    async def _begin(
        self,
        x: ExtractInput,
        protocol: Protocol,
        actor: str,
        extract_id: UUID,
        supersedes: UUID | None,
        target_year: str,
        *,
        dry_run: bool,
    ) -> _Run:
        """The extract recorded as started, under its data key (a dry run's key is never stored)."""
        key = DataKey.generate(uuid.uuid4()) if dry_run else await self.keys.key_for_extract(extract_id)
        await self.repo.start(  # from here on the extract ends completed, refused or failed: never left started
            extract_id=extract_id,
            sha256=f"dry-run:{x.content_sha256}" if dry_run else x.content_sha256,
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
        report = ExtractReport(
            extract_id,
            x.source,
            x.reference_date,
            target_year,
            x.file_name,
            x.content_sha256,
            supersedes=supersedes,
            dry_run=dry_run,
        )
        started = self.clock.now()
        return _Run(
            report,
            _aiter(x.rows),
            None,
            protocol.source(x.source),
            protocol,
            key,
            self.keys.kek,
            started,
            random.Random(x.content_sha256),
            dry_run=dry_run,
        )

    async def _header(self, run: _Run) -> None:
        """The header row: which column holds which field (a file refused here has published nothing)."""
        try:
            _, headers = await anext(run.rows)
        except StopAsyncIteration:
            raise ExtractFileError("the file is empty: no header row", code="file.empty") from None
        run.mapping, dropped = header_mapping(headers)
        run.report.dropped_columns = dropped

    async def _flush(self, run: _Run) -> None:
        """Hand the chunk read so far over to be written while the next one is read: the database's and the
        broker's round trips no longer hold up the reading. One chunk is written at a time, in order."""
        chunk = run.detach()
        await self._written(run)
        run.writing = asyncio.ensure_future(self._write(run, chunk))

    async def _written(self, run: _Run) -> None:
        """Until the chunk being written is written; its failure is the extract's."""
        if run.writing is not None:
            writing, run.writing = run.writing, None
            await writing

    async def _write(self, run: _Run, chunk: _Chunk) -> None:
        """Index the chunk's accepted rows (a row repeating an earlier one exactly is that child once),
        then publish what is new, then store the problems."""
        extract_id = run.report.extract_id
        repeats = await self.repo.index_rows(
            extract_id, [RowKeys(c.row.row_number, c.child_key, c.content_key) for c in chunk.candidates]
        )
        for c in chunk.candidates:
            n = c.row.row_number
            if n in repeats:
                run.report.repeated += 1
                run.report.warnings += 1
                chunk.problems.append(
                    RowProblem(
                        n, "warning", "row", "row.repeated", f"repeats row {repeats[n]} exactly: one child, sent once"
                    )
                )
                continue
            run.accept(c, chunk)
        if not run.dry_run:
            await publish_many(self.publishers.pupil_recorded, chunk.pupils)
            await publish_many(self.publishers.row_rejected, chunk.rejects)
            run.published += len(chunk.pupils)
        await self.repo.add_problems(extract_id, chunk.problems)

    async def _finish(
        self, run: _Run, x: ExtractInput, protocol: Protocol, actor: str, *, replace: bool
    ) -> ExtractReport:
        """Same-name rows to review, the replacement check, the dip sample, the counts, then
        extract-completed and the audit."""
        report, repo, extract_id = run.report, self.repo, run.report.extract_id
        await self._review_same_child(run)
        report.dropped_columns = report.dropped_columns + x.extra_dropped()  # e.g. CTF elements not forwarded
        assert report.balanced, "rows in must equal accepted + repeated + rejected + out of scope"
        refusal = await self._refusal(run)
        if run.dry_run:
            return await self._dry_run_report(run, refusal if not replace else None)
        if refusal is not None:
            if not replace:
                raise refusal
            details = {"supersedes": str(report.supersedes) if report.supersedes else None, "reason": refusal.code}
            await repo.audit(
                actor,
                "extract.replacement_confirmed",
                f"extract:{extract_id}",
                {**details, **(report.effect or {})},
                protocol.version,
            )
        await self._save_dip_sample(run)
        for outcome_name, n in (
            ("accepted", report.accepted),
            ("rejected", report.rejected),
            ("out_of_scope", report.out_of_scope),
        ):
            ops.ROWS.labels(x.source, outcome_name).inc(n)
        await self._complete(run, x, protocol, actor)
        return await report_for(repo, extract_id, keys=self.keys)

    async def _review_same_child(self, run: _Run) -> None:
        """Rows with the same name and date of birth as another, other details differing: not merged,
        kept as warnings for a person to look at."""
        extract_id = run.report.extract_id
        review = [
            RowProblem(
                row,
                "warning",
                "row",
                "row.same-child",
                f"same name and date of birth as row {first}, other details differ: not merged, check whether "
                "it is one child",
            )
            for row, first in await self.repo.same_child_rows(extract_id)
        ]
        await self.repo.add_problems(extract_id, review)
        run.report.warnings += len(review)

    async def _refusal(self, run: _Run) -> ExtractFileError | None:
        """Why the extract, read whole, may not go without --replace: a replacement that withdraws too many
        children, or a file with no rows."""
        report, repo, extract_id = run.report, self.repo, run.report.extract_id
        refusal = None
        if report.supersedes is not None:
            report.effect = effect = await repo.replacement_effect(extract_id, report.supersedes)
            share = effect["withdrawals"] / effect["before"] if effect["before"] else 0.0
            if share > self.limits.replacement_max_withdrawn:
                refusal = ExtractFileError(
                    f"this file replaces extract {report.supersedes} (same source and reference date) and would "
                    f"withdraw {effect['withdrawals']} of its {effect['before']} children ({share:.0%}, more than "
                    f"the {self.limits.replacement_max_withdrawn:.0%} of SAIS_INGEST_REPLACEMENT_MAX_WITHDRAWN); "
                    "nothing of it is delivered. If that is what you mean, ingest it again with --replace "
                    "(--dry-run shows what it does)",
                    code="replacement.withdraws-too-many",
                )
        if report.rows_in == 0 and refusal is None:
            refusal = ExtractFileError(
                "the file has a header but no rows"
                + (
                    f": as a replacement of extract {report.supersedes} it would withdraw every child"
                    if report.supersedes
                    else ""
                )
                + "; nothing of it is delivered. If that is what you mean, ingest it again with --replace",
                code="file.no-rows",
            )
        return refusal

    async def _dry_run_report(self, run: _Run, refusal: ExtractFileError | None) -> ExtractReport:
        """What the extract would do, and nothing of it kept."""
        report, repo, extract_id = run.report, self.repo, run.report.extract_id
        out = await report_for(repo, extract_id)
        out.dry_run, out.effect, out.status = True, report.effect, "refused" if refusal else "dry-run"
        out.rows_in, out.accepted, out.repeated = report.rows_in, report.accepted, report.repeated
        out.rejected, out.out_of_scope, out.warnings = report.rejected, report.out_of_scope, report.warnings
        out.dropped_columns = report.dropped_columns
        out.rejections = [r.shown() for r in await repo.problems(extract_id, "rejected")]
        out.warning_rows = [r.shown() for r in await repo.problems(extract_id, "warning")]
        out.out_of_scope_rows = [r.shown() for r in await repo.problems(extract_id, "out-of-scope")]
        if refusal:
            out.warning_rows.insert(
                0, {"row_number": 0, "field": "extract", "code": refusal.code, "reason": str(refusal)}
            )
        await repo.discard(extract_id)
        return out

    async def _save_dip_sample(self, run: _Run) -> None:
        extract_id = run.report.extract_id
        await self.repo.save_dip_sample(
            extract_id,
            [  # its own sealed copy, under the dip sample's context
                DipSampleRow(
                    e.row_number,
                    e.school_dfe,
                    e.year_group,
                    e.gender,
                    run.key.seal_model(p, dip_sample_aad(extract_id, e.row_number)).model_dump_json(),
                )
                for e, p in run.sample
            ],
        )

    async def _complete(self, run: _Run, x: ExtractInput, protocol: Protocol, actor: str) -> None:
        """The extract completed with its audit entry, then extract-completed for the services after it."""
        report, extract_id = run.report, run.report.extract_id
        counts = {
            "rows_in": report.rows_in,
            "accepted": report.accepted,
            "repeated": report.repeated,
            "rejected": report.rejected,
            "out_of_scope": report.out_of_scope,
        }
        supersedes = str(report.supersedes) if report.supersedes else None
        details = {"sha256": x.content_sha256, "source": x.source, **counts, "supersedes": supersedes}
        ingested = AuditEntry(actor, "extract.ingested", f"extract:{extract_id}", details, protocol.version)
        await self.repo.complete(
            extract_id, **counts, warnings=report.warnings, dropped_columns=report.dropped_columns, audit_entry=ingested
        )
        event = ExtractCompleted(
            event_id=stable_id("extract-completed", extract_id),
            occurred_at=self.clock.now(),
            extract_id=extract_id,
            source=x.source,
            reference_date=x.reference_date,
            target_academic_year=report.target_academic_year,
            content_sha256=x.content_sha256,
            **counts,
            warnings=report.warnings,
            supersedes=report.supersedes,
            key_id=run.key.key_id,
            originator=protocol.originator_label,
            protocol_version=protocol.version,
            ingested_by=actor,
            records_digest=f"{run.digest:016x}",
        )
        await self.publishers.extract_completed.publish(event, key=extract_id.bytes)
        log.info("extract.completed", extract_id=str(extract_id), source=x.source, **counts, warnings=report.warnings)

    # --- endings ----------------------------------------------------------------------------

    async def _fail(self, run: _Run, exc: BaseException, actor: str) -> None:
        """The extract stopped before its end: record why, audit it, tell the other services. Never
        raises (the original error is what the caller sees); what cannot be done now, the sweep does."""
        status, code, reason = failure_of(exc)
        extract_id = run.report.extract_id
        try:
            await self.repo.end(
                extract_id,
                status,
                code,
                reason,
                actor,
                published=run.published,
                audit_entry=AuditEntry(
                    actor,
                    f"extract.{status}",
                    f"extract:{extract_id}",
                    {"code": code, "reason": reason, "published": run.published, "rows_read": run.report.rows_in},
                    run.protocol.version,
                ),
            )
            log.warning(f"extract.{status}", extract_id=str(extract_id), code=code, published=run.published)
            row = await self.repo.get(extract_id)
            if row is not None:
                await asyncio.wait_for(self._announce(row), timeout=15)
        except BaseException as err:
            log.warning("extract.end_not_announced", extract_id=str(extract_id), error=type(err).__name__)

    async def _announce(self, row: ExtractRow) -> None:
        """An ended extract's event on Kafka (deterministic id: a repeat is the same event)."""
        now = self.clock.now()
        if row.status == "withdrawn":
            event: ExtractFailed | ExtractWithdrawn = ExtractWithdrawn(
                event_id=stable_id("extract-withdrawn", row.extract_id),
                occurred_at=now,
                extract_id=row.extract_id,
                target_academic_year=row.target_academic_year,
                # the operator's own words stay in the audit trail: free text never goes on Kafka
                reason="withdrawn by the local authority (the reason is in the audit trail)",
                withdrawn_by=row.ended_by or "",
            )
        else:
            assert row.key_id is not None
            event = ExtractFailed(
                event_id=stable_id("extract-failed", row.extract_id),
                occurred_at=now,
                extract_id=row.extract_id,
                source=row.source,
                reference_date=row.reference_date,
                target_academic_year=row.target_academic_year,
                key_id=row.key_id,
                status=row.status,
                code=row.failure_code or "failed",
                reason=row.failure or "",
                published=row.published,
            )
        await self.publishers.extract_completed.publish(event, key=row.extract_id.bytes)
        await self.repo.announced(row.extract_id)

    async def sweep(self) -> int:
        """End the extracts that no process is reading any more (abandoned), and announce every ending
        not yet on Kafka. Run by each ingest and on the service's timer; returns the endings announced."""
        for extract_id in await self.repo.abandoned():
            log.warning("extract.failed", extract_id=str(extract_id), code="abandoned")
            await self.repo.audit(
                "ingest", "extract.failed", f"extract:{extract_id}", {"code": "abandoned"}, self.protocol.version
            )
        rows = await self.repo.unannounced()
        for row in rows:
            await self._announce(row)
        return len(rows)

    async def withdraw(self, extract_id: UUID, *, reason: str, actor: str) -> ExtractRow:
        """Take a completed extract back: its children leave the cohorts (ISP §9.6's correction)."""
        row = await self.repo.get(extract_id)
        if row is None:
            raise ExtractStateError(f"no extract {extract_id}")
        if row.status != "completed":
            raise ExtractStateError(f"extract {extract_id} is {row.status}, not completed: nothing to withdraw")
        withdrawn = AuditEntry(
            actor,
            "extract.withdrawn",
            f"extract:{extract_id}",
            {"reason": reason, "source": row.source, "accepted": row.accepted},
            self.protocol.version,
        )
        if not await self.repo.end(
            extract_id, "withdrawn", "withdrawn", reason, actor, published=row.published, audit_entry=withdrawn
        ):
            raise ExtractStateError(f"extract {extract_id} was ended by someone else just now")
        ended = await self.repo.get(extract_id)
        assert ended is not None
        await self._announce(ended)
        log.info("extract.withdrawn", extract_id=str(extract_id))
        return ended


_UNREACHABLE = ("KafkaError", "KafkaConnectionError", "PostgresConnectionError", "ConnectionError", "TimeoutError")


def failure_of(exc: BaseException) -> tuple[str, str, str]:
    """(status, code, reason) of an extract that stopped with ``exc``; the reason never quotes a value."""
    if isinstance(exc, ExtractFileError):
        return "refused", exc.code, str(exc)
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
        return (
            "failed",
            "interrupted",
            "the ingest was interrupted before the end of the extract; nothing of it is delivered",
        )
    names = {c.__name__ for c in type(exc).__mro__}
    what = type(exc).__name__
    if names & set(_UNREACHABLE) or isinstance(exc, OSError):
        return (
            "failed",
            "unreachable",
            (
                f"a server could not be reached or refused a write ({what}); nothing of it is delivered: ingest the "
                "file again"
            ),
        )
    return "failed", "error", f"the ingest failed ({what}); nothing of it is delivered"


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
    dry_run: bool = False
    sample: list[tuple[PupilRecorded, PupilPersonal]] = field(default_factory=list)
    candidates: list[_Candidate] = field(default_factory=list)  # accepted rows not yet checked for repeats
    rejects: list[tuple[bytes, RowRejected]] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    published: int = 0
    digest: int = 0  # records_digest of the pupil events published, kept as it goes
    writing: asyncio.Future[None] | None = None  # the chunk handed over, being indexed, published and stored

    def detach(self) -> _Chunk:
        """The chunk read so far, handed over to be written; the run reads on into a new one."""
        chunk = _Chunk(self.candidates, self.rejects, self.problems)
        self.candidates, self.rejects, self.problems = [], [], []
        return chunk

    @property
    def pending(self) -> int:
        """What the chunk holds: a run of rows out of scope (a census sorted by year group starts with
        thousands) is problems only, and is flushed as often as accepted rows are."""
        return len(self.candidates) + len(self.rejects) + len(self.problems)

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
            self.problems.append(
                RowProblem(
                    row_number,
                    "out-of-scope",
                    "row",
                    "row.not-requested",
                    f"year group {outcome.year_group or '?'}, sex {outcome.gender or '?'}: not requested from "
                    f"{report.source} by the protocol (ISP §6.1), so not shared",
                )
            )
        else:
            self._candidate(outcome)

    def _reject(self, row_number: int, outcome: Rejected) -> None:
        extract_id = self.report.extract_id
        for p in outcome.problems:
            ops.REJECTIONS.labels(p.field, p.code).inc()
            self.problems.append(RowProblem(row_number, "rejected", p.field, p.code, p.reason))
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

    def _candidate(self, row: CleanRow) -> None:
        """An accepted row, its event built; published once the chunk is checked for repeats."""
        report = self.report
        match_key = self.kek.blind_index(row.forename, row.surname, row.date_of_birth.isoformat())
        personal = _personal(row)
        plaintext = personal.model_dump_json()  # once: the content key and the sealed bytes are the same text
        content_key = self.kek.exact_index(  # every ISP field as it was read: a repeat is character for character
            "row:v1", row.school_dfe, row.school_name, row.year_group, row.gender, plaintext
        )
        event = _pupil_event(
            row,
            plaintext.encode(),
            self.key,
            report.extract_id,
            report.source,
            report.reference_date,
            self.protocol,
            match_key,
            self.now,
        )
        self.candidates.append(_Candidate(row, event, personal, match_key, content_key))

    def accept(self, c: _Candidate, chunk: _Chunk) -> None:
        report = self.report
        report.accepted += 1
        for w in c.row.warnings:
            report.warnings += 1
            chunk.problems.append(RowProblem(c.row.row_number, "warning", w.field, w.code, w.reason))
        chunk.pupils.append((c.child_key.encode(), c.event))
        self.digest = (self.digest + record_digest_part(c.event.record_id)) % 2**64
        if len(self.sample) < DIP_SAMPLE_SIZE:
            self.sample.append((c.event, c.personal))
        elif (j := self.sampler.randrange(report.accepted)) < DIP_SAMPLE_SIZE:
            self.sample[j] = (c.event, c.personal)


@dataclass
class _Chunk:
    """Up to CHUNK_ROWS rows read, as they are written: checked for repeats, published, their problems stored."""

    candidates: list[_Candidate]
    rejects: list[tuple[bytes, RowRejected]]
    problems: list[RowProblem]
    pupils: list[tuple[bytes, PupilRecorded]] = field(default_factory=list)  # what is new, to publish


@dataclass(frozen=True, slots=True)
class _Candidate:
    row: CleanRow
    event: PupilRecorded
    personal: PupilPersonal
    child_key: str  # the match key: keyed blind index of forename, surname, date of birth
    content_key: str  # keyed blind index of every ISP field of the row


async def _aiter(rows: Iterator | AsyncIterator) -> AsyncIterator[tuple[int, list[str]]]:
    if isinstance(rows, AsyncIterator):
        async for row in rows:
            yield row
    else:
        for row in rows:
            yield row


def _pupil_event(
    row: CleanRow,
    personal: bytes,  # the personal fields as JSON (PupilPersonal.model_dump_json)
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
    return PupilRecorded(**event, personal=key.seal(personal, aad))


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
        repeated=row.repeated,
        rejected=row.rejected,
        out_of_scope=row.out_of_scope,
        warnings=row.warnings,
        dropped_columns=list(row.dropped_columns),
        status=row.status,
    )
    rep.rejections = [r.shown() for r in await repo.problems(extract_id, "rejected")]
    rep.warning_rows = [r.shown() for r in await repo.problems(extract_id, "warning")]
    rep.out_of_scope_rows = [r.shown() for r in await repo.problems(extract_id, "out-of-scope")]
    if keys is not None:  # the dip sample is personal data: only for the data officer's own report
        rows = await repo.dip_sample(extract_id)
        sealed = {r.row_number: Sealed.model_validate_json(r.personal) for r in rows}
        opened = await keys.get_many({s.key_id for s in sealed.values()})
        for r in rows:
            s = sealed[r.row_number]
            p = opened[s.key_id].open_model(s, PupilPersonal, dip_sample_aad(extract_id, r.row_number))
            rep.dip_sample.append(
                {
                    "row_number": r.row_number,
                    "school_dfe": r.school_dfe,
                    "year_group": r.year_group,
                    "gender": r.gender,
                    **p.model_dump(mode="json"),
                }
            )
    return rep


__all__ = [
    "ExtractInput",
    "ExtractReport",
    "ExtractStateError",
    "Ingest",
    "Limits",
    "Publishers",
    "failure_of",
    "report_for",
]
