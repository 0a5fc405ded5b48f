"""Use case: extracts published by upstream systems on the inbound topic.

Records are staged as they arrive (still sealed); ``extract-completed`` is checked against them
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
from sais_shared.clock import Clock
from sais_shared.inbound import (
    InboundAuthenticationError,
    InboundExtractCompleted,
    InboundExtractReader,
    InboundExtractStarted,
    InboundRecord,
    PublisherRegistry,
)
from sais_shared.keystore import KeyStore, audit
from sais_shared.protocol import ProtocolError
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef

from ..adapters.repository import ExtractRepository
from ..domain.model import ExtractFileError
from .ingest_file import ExtractReport, Publishers, ingest_rows

log = structlog.get_logger("sais.ingest.inbound")


@dataclass
class InboundService(FollowsProtocol):
    repo: ExtractRepository
    keys: KeyStore
    protocol_ref: ProtocolRef
    publishers: Publishers
    clock: Clock
    private_key: Path
    publishers_registry: PublisherRegistry | None = None


    async def handle(self, messages: list) -> None:
        for m in messages:  # in order: one extract's messages share a key, hence a partition
            if isinstance(m, InboundExtractStarted):
                await self._started(m)
            elif isinstance(m, InboundRecord):
                await self._record(m)
            elif isinstance(m, InboundExtractCompleted):
                await self.complete(m)

    async def _started(self, m: InboundExtractStarted) -> None:
        await self.repo.pool.execute(
            "INSERT INTO ingest.inbound_extracts(extract_ref, source, reference_date, originator_system, started, "
            "status) VALUES ($1,$2,$3,$4,$5::jsonb,'receiving') ON CONFLICT (extract_ref) DO NOTHING",
            m.extract_ref, m.source, m.reference_date, m.originator_system, m.model_dump_json())

    async def _record(self, m: InboundRecord) -> None:
        status = await self.repo.pool.fetchval(
            "INSERT INTO ingest.inbound_records(extract_ref, seq, nonce, ciphertext) "
            "SELECT $1,$2,$3,$4 WHERE EXISTS (SELECT 1 FROM ingest.inbound_extracts WHERE extract_ref=$1) "
            "ON CONFLICT DO NOTHING RETURNING 'staged'", m.extract_ref, m.seq, m.nonce, m.ciphertext)
        if status is None and not await self.repo.pool.fetchval(
                "SELECT 1 FROM ingest.inbound_extracts WHERE extract_ref=$1", m.extract_ref):
            log.warning("inbound.record_without_start", extract_ref=m.extract_ref, seq=m.seq)

    async def complete(self, m: InboundExtractCompleted) -> ExtractReport | None:
        pool = self.repo.pool
        head = await pool.fetchrow("SELECT * FROM ingest.inbound_extracts WHERE extract_ref=$1", m.extract_ref)
        if head is None:
            await self._incomplete(m.extract_ref, "extract-completed without extract-started", create=False)
            return None
        if head["status"] == "ingested":
            return None  # a redelivered completion
        n, lo, hi = await pool.fetchrow("SELECT count(*), min(seq), max(seq) FROM ingest.inbound_records "
                                        "WHERE extract_ref=$1", m.extract_ref)
        if (n, lo or 1, hi or 0) != (m.record_count, 1, m.record_count):  # seq is unique: 1..n all there
            missing = [r["s"] for r in await pool.fetch(
                "SELECT s FROM generate_series(1, $2::int) s WHERE NOT EXISTS (SELECT 1 FROM ingest.inbound_records "
                "WHERE extract_ref=$1 AND seq=s) ORDER BY s LIMIT 10", m.extract_ref, m.record_count)]
            await self._incomplete(m.extract_ref, f"received {n} of {m.record_count} records"
                                   + (f"; missing seq {missing}" if missing else "; unexpected extra records"))
            return None
        digest = hashlib.sha256()
        async for i, r in _staged(pool, m.extract_ref):
            digest.update((b"\n" if i else b"") + r["ciphertext"].encode())
        if digest.hexdigest() != m.checksum:
            await self._incomplete(m.extract_ref, "checksum does not match the records received")
            return None
        started = InboundExtractStarted.model_validate_json(head["started"])
        try:
            if self.publishers_registry is None:
                raise InboundAuthenticationError("no publisher registry is configured (SAIS_INGEST_PUBLISHERS_FILE)")
            self.publishers_registry.verify(started, m)
        except InboundAuthenticationError as exc:
            await self._incomplete(m.extract_ref, f"refused: not authenticated: {exc}; nothing was ingested")
            return None
        try:
            reader = InboundExtractReader(self.private_key.read_bytes(), started)
        except ValueError:
            await self._incomplete(m.extract_ref, f"the extract key does not unwrap with inbound key "
                                   f"{started.encryption.recipient_key_id!r}: sealed for another key?")
            return None
        # Pass 1 (streamed): every record opens, the columns, and the content hash that recognises a re-send.
        headers: list[str] = []
        content = hashlib.sha256()
        async for _, r in _staged(pool, m.extract_ref):
            try:
                row = reader.open(r["seq"], r["nonce"], r["ciphertext"])
            except (InvalidTag, ValueError):
                await self._incomplete(m.extract_ref, f"record {r['seq']} cannot be opened (tampered, or sealed "
                                       "with another key); nothing was ingested")
                return None
            headers += [k for k in row if k not in headers]
            content.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode() + b"\n")

        async def table():  # pass 2 (streamed): the rows themselves
            yield 0, headers
            async for _, r in _staged(pool, m.extract_ref):
                row = reader.open(r["seq"], r["nonce"], r["ciphertext"])
                yield r["seq"], [row.get(h, "") for h in headers]

        try:
            report = await ingest_rows(
                table(), content_sha256=content.hexdigest(), encoding="inbound-event",
                file_name=f"inbound:{m.extract_ref}", source=started.source, reference_date=started.reference_date,
                protocol=self.protocol, repo=self.repo, keys=self.keys, publishers=self.publishers, clock=self.clock,
                actor=f"inbound:{started.originator_system}")
        except (ProtocolError, ExtractFileError) as exc:
            # Permanent for these records: report it; a matching extract-completed re-sent later (after the
            # protocol or the extract is fixed) completes it. Retrying now would block the partition.
            await self._incomplete(m.extract_ref, f"refused: {exc}")
            return None
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE ingest.inbound_extracts SET status='ingested', extract_id=$2, problem=NULL, "
                               "updated_at=now() WHERE extract_ref=$1", m.extract_ref, report.extract_id)
            await conn.execute("DELETE FROM ingest.inbound_records WHERE extract_ref=$1", m.extract_ref)
        log.info("inbound.ingested", extract_ref=m.extract_ref, extract_id=str(report.extract_id),
                 rows_in=report.rows_in, accepted=report.accepted)
        return report

    async def _incomplete(self, ref: str, problem: str, create: bool = True) -> None:
        if create:
            await self.repo.pool.execute("UPDATE ingest.inbound_extracts SET status='incomplete', problem=$2, "
                                         "updated_at=now() WHERE extract_ref=$1", ref, problem)
        ops.INBOUND_INCOMPLETE.inc()
        await audit(self.repo.pool, "ingest", "inbound.incomplete", f"inbound:{ref}", {"problem": problem},
                    self.protocol.version)
        log.warning("inbound.incomplete", extract_ref=ref, problem=problem)


async def _staged(pool, ref: str):
    """The staged records of an extract in order, streamed with a server-side cursor (memory stays flat)."""
    async with pool.acquire() as conn, conn.transaction():
        i = 0
        async for r in conn.cursor("SELECT seq, nonce, ciphertext FROM ingest.inbound_records WHERE extract_ref=$1 "
                                   "ORDER BY seq", ref, prefetch=1000):
            yield i, r
            i += 1
