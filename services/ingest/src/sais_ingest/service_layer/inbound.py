"""Use case: extracts published by upstream systems on the inbound topic.

A start is checked on arrival: one a registered publisher did not sign for its source is refused and
audited, and never stored, so nothing is staged under it. Records are staged as they arrive (still
sealed), up to a size limit per extract; ``extract-completed`` is checked against them
— every sequence number 1..n present, the count and the checksum equal — and only then is the
extract opened and ingested exactly like a file (same validation, minimisation, events, report).
A partial extract is marked incomplete, reported and audited, and nothing of it is published; a
later ``extract-completed`` that matches (after the publisher re-sent what was missing) completes it.
Redelivered messages are harmless: staging is keyed by (extract, seq) and ingest by content hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidTag
from sais_shared import ops
from sais_shared.errors import ConfigurationError
from sais_shared.inbound import (
    InboundAuthenticationError,
    InboundExtractCompleted,
    InboundExtractReader,
    InboundExtractStarted,
    InboundRecord,
    PublisherRegistry,
)
from sais_shared.keystore import AuditEntry
from sais_shared.protocol import ProtocolError
from sais_shared.protocol_registry import FollowsProtocol

from ..domain.extracts import StagedRecord
from ..domain.model import ExtractFileError
from .ingest_file import ExtractInput, ExtractReport, Ingest
from .ports import InboundStore

log = structlog.get_logger("sais.ingest.inbound")


class _Refused(Exception):
    """An inbound extract that cannot be ingested as it stands (the reason is reported and audited); it
    keeps nothing, and is sent again whole."""


class _Incomplete(_Refused):
    """Records are missing: it keeps what it has, and the publisher may send what was missing."""


@dataclass
class InboundService(FollowsProtocol):
    ingest: Ingest
    staging: InboundStore
    private_key: Path
    publishers_registry: PublisherRegistry | None = None
    max_extract_bytes: int = 4 << 30

    @property
    def protocol_ref(self):  # the protocol in force is the ingest use case's
        return self.ingest.protocol_ref

    async def handle(self, messages: list) -> None:
        """In order (one extract's messages share a key, hence a partition): each run of records between a
        start and a completion is staged in one statement."""
        run: list[InboundRecord] = []
        for m in messages:
            if isinstance(m, InboundRecord):
                run.append(m)
                continue
            await self._stage(run)
            run = []
            if isinstance(m, InboundExtractStarted):
                try:
                    self._authenticate_start(m)
                except InboundAuthenticationError as exc:
                    await self._start_refused(m, exc)
                    continue
                how = await self.staging.started(
                    m.extract_ref, m.source, m.reference_date, m.originator_system, m.model_dump_json()
                )
                if how != "new":
                    log.info("inbound.started_again", extract_ref=m.extract_ref, effect=how)
            elif isinstance(m, InboundExtractCompleted):
                await self.complete(m)
        await self._stage(run)

    async def _stage(self, run: list[InboundRecord]) -> None:
        if not run:
            return
        done = await self.staging.stage(
            [StagedRecord(r.extract_ref, r.seq, r.nonce, r.ciphertext) for r in run], self.max_extract_bytes
        )
        unstarted = set(done.no_start)
        no_start = sum(1 for r in run if r.extract_ref in unstarted)
        ops.INBOUND_RECORDS_NOT_STAGED.labels("no-start").inc(no_start)
        ops.INBOUND_RECORDS_NOT_STAGED.labels("over-limit").inc(done.over_limit_records)
        for reason, refs in (("no-start", done.no_start), ("over-limit", done.over_limit)):
            for ref in refs:
                log.warning(
                    "inbound.records_not_staged",
                    extract_ref=ref,
                    reason="no verified extract-started" if reason == "no-start" else "over the extract's size limit",
                    limit_bytes=self.max_extract_bytes,
                )

    def _authenticate_start(self, m: InboundExtractStarted) -> None:
        if self.publishers_registry is None:
            raise InboundAuthenticationError("no publisher registry is configured (SAIS_INGEST_PUBLISHERS_FILE)")
        self.publishers_registry.verify_start(m)

    async def _start_refused(self, m: InboundExtractStarted, exc: InboundAuthenticationError) -> None:
        """Not stored at all: it holds no reference against the genuine extract, and nothing is staged under it."""
        problem = f"refused: extract-started not authenticated: {exc}; nothing was staged"
        ops.INBOUND_STARTS_REFUSED.inc()
        await self.staging.audit(
            AuditEntry(
                "ingest", "inbound.refused", f"inbound:{m.extract_ref}", {"problem": problem}, self.protocol.version
            ),
        )
        log.warning("inbound.start_refused", extract_ref=m.extract_ref, problem=problem)

    async def complete(self, m: InboundExtractCompleted) -> ExtractReport | None:
        """Check what was staged against the completion, authenticate and open it, then ingest it
        as a file is ingested. Anything wrong: reported, audited, nothing published."""
        head = await self.staging.head(m.extract_ref)
        if head is None:
            await self._incomplete(m.extract_ref, "extract-completed without extract-started", create=False)
            return None
        if head.status in ("ingested", "refused"):
            # ingested: a redelivered completion; refused: its records are gone (sent again whole, from
            # extract-started, it starts again)
            return None
        try:
            await self._check_staged(m)
            started = InboundExtractStarted.model_validate_json(head.started)
            reader = self._open(started, m)
            headers, content_sha256 = await self._scan(m.extract_ref, reader)
            report = await self._ingest(m.extract_ref, started, reader, headers, content_sha256)
        except _Incomplete as exc:
            await self._incomplete(m.extract_ref, str(exc))
            return None
        except _Refused as exc:
            await self._incomplete(m.extract_ref, str(exc), refused=True)
            return None
        await self.staging.ingested(m.extract_ref, report.extract_id)
        log.info(
            "inbound.ingested",
            extract_ref=m.extract_ref,
            extract_id=str(report.extract_id),
            rows_in=report.rows_in,
            accepted=report.accepted,
        )
        return report

    async def _check_staged(self, m: InboundExtractCompleted) -> None:
        """Every sequence number 1..n staged, and the checksum over the sealed records equal."""
        n, lo, hi = await self.staging.count(m.extract_ref)
        if (n, lo or 1, hi or 0) != (m.record_count, 1, m.record_count):  # seq is unique: 1..n all there
            missing = await self.staging.missing(m.extract_ref, m.record_count)
            raise _Incomplete(
                f"received {n} of {m.record_count} records"
                + (f"; missing seq {missing}" if missing else "; unexpected extra records")
            )
        digest = hashlib.sha256()
        first = True
        async for r in self.staging.records(m.extract_ref):
            digest.update((b"" if first else b"\n") + r.ciphertext.encode())
            first = False
        if digest.hexdigest() != m.checksum:
            raise _Refused("checksum does not match the records received")

    def _open(self, started: InboundExtractStarted, m: InboundExtractCompleted) -> InboundExtractReader:
        """Authenticate the publisher, then unwrap the extract's key with ingest's inbound key."""
        try:
            if self.publishers_registry is None:
                raise InboundAuthenticationError("no publisher registry is configured (SAIS_INGEST_PUBLISHERS_FILE)")
            self.publishers_registry.verify(started, m)
        except InboundAuthenticationError as exc:
            raise _Refused(f"refused: not authenticated: {exc}; nothing was ingested") from None
        for pem in inbound_private_keys(self.private_key):  # during a rotation: the new key and the old one
            try:
                return InboundExtractReader(pem, started)
            except ValueError:
                continue
        raise _Refused(
            f"the extract key does not unwrap with inbound key "
            f"{started.encryption.recipient_key_id!r}: sealed for another key?"
        )

    async def _scan(self, ref: str, reader: InboundExtractReader) -> tuple[list[str], str]:
        """Pass 1 (streamed): every record opens; the columns, and the content hash that recognises a re-send."""
        headers: list[str] = []
        content = hashlib.sha256()
        async for r in self.staging.records(ref):
            try:
                row = reader.open(r.seq, r.nonce, r.ciphertext)
            except (InvalidTag, ValueError):
                raise _Refused(
                    f"record {r.seq} cannot be opened (tampered, or sealed with another key); nothing was ingested"
                ) from None
            headers += [k for k in row if k not in headers]
            content.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")
        return headers, content.hexdigest()

    async def _ingest(
        self,
        ref: str,
        started: InboundExtractStarted,
        reader: InboundExtractReader,
        headers: list[str],
        content_sha256: str,
    ) -> ExtractReport:
        async def table():  # pass 2 (streamed): the rows themselves
            yield 0, headers
            async for r in self.staging.records(ref):
                row = reader.open(r.seq, r.nonce, r.ciphertext)
                yield r.seq, [row.get(h, "") for h in headers]

        try:
            return await self.ingest.extract(
                ExtractInput(
                    table(), content_sha256, "inbound-event", f"inbound:{ref}", started.source, started.reference_date
                ),
                actor=f"inbound:{started.originator_system}",
            )
        except (ProtocolError, ExtractFileError) as exc:
            # Permanent for these records: report it; a matching extract-completed re-sent later (after the
            # protocol or the extract is fixed) completes it. Retrying now would block the partition.
            raise _Refused(f"refused: {exc}") from None

    async def _incomplete(self, ref: str, problem: str, create: bool = True, refused: bool = False) -> None:
        entry = AuditEntry(
            "ingest",
            "inbound.refused" if refused else "inbound.incomplete",
            f"inbound:{ref}",
            {"problem": problem},
            self.protocol.version,
        )
        if create:  # the status and its audit entry in one transaction
            await (self.staging.refused if refused else self.staging.incomplete)(ref, problem, entry)
        else:
            await self.staging.audit(entry)
        ops.INBOUND_INCOMPLETE.inc()
        log.warning("inbound.refused" if refused else "inbound.incomplete", extract_ref=ref, problem=problem)


def inbound_private_keys(path: Path) -> list[bytes]:
    """The inbound private key(s): one PEM file, or every *.pem / *.key in a folder (newest first, so the key
    publishers move to is tried first). A folder with none is a configuration error, named."""
    if not path.is_dir():
        return [path.read_bytes()]
    files = sorted(
        (p for p in path.iterdir() if p.suffix in (".pem", ".key") and p.is_file()),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    if not files:
        raise ConfigurationError(f"no inbound private key (*.pem, *.key) in {path} (SAIS_INGEST_INBOUND_PRIVATE_KEY)")
    return [p.read_bytes() for p in files]
