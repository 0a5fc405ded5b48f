"""Use case: deliver a window's cohorts to the SAIS mailbox, exactly once.

A batch is recorded (``prepared``, with its encrypted message) before anything is sent, set to
``sending`` just before the SMTP transaction and ``sent`` once the server accepted it. A batch
found ``prepared`` is safe to send; one found ``sending`` may or may not have been accepted, so
it is reported for an operator (``sais delivery resolve``) instead of being resent blindly. The
Message-ID is derived from the batch id, so a receiver can also recognise a repeat.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from dateutil.relativedelta import relativedelta
from sais_shared import ops
from sais_shared.clock import Clock
from sais_shared.crypto import Sealed
from sais_shared.events import (
    DeliveredFile,
    DeliveryCompleted,
    PupilPersonal,
    cohort_aad,
    stable_id,
)
from sais_shared.keystore import KeyStore, audit
from sais_shared.outbox import flush_outbox
from sais_shared.protocol import recipient_allowed
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import academic_year_label

from ..adapters.mailer import Mailer, MessageMayHaveBeenSentError, SmtpTransientError
from ..adapters.smime import Smime
from ..domain.errors import (
    DeliveryRefusedError,
    NothingToDeliverError,
    RecipientNotAllowedError,
    ReviewOverdueError,
    SharingSuspendedError,
    StaleDataError,
    TransferMethodNotAllowedError,
    UncertainDeliveryError,
)
from ..domain.render import Row, body_text, field_definitions, manifest, programme_file

log = structlog.get_logger("sais.delivery")


@dataclass
class BatchResult:
    batch_id: UUID
    status: str
    recipient: str
    counts: dict[str, int]
    message_id: str
    already_sent: bool = False
    replaces_batch: UUID | None = None
    files: list[dict] = field(default_factory=list)
    delete_by: str = ""


@dataclass
class DeliveryService(FollowsProtocol):
    pool: asyncpg.Pool
    keys: KeyStore
    protocol_ref: ProtocolRef
    clock: Clock
    mailer: Mailer
    smime_factory: Any  # (recipient) -> Smime; certificates are checked when a batch is built
    sender: str
    publisher: Any
    attempts: int = 4
    backoff_s: float = 2.0


    # --- guards ---------------------------------------------------------------------------

    async def _refuse(self, actor: str, exc: DeliveryRefusedError, subject: str, **details) -> None:
        await audit(self.pool, actor, "delivery.refused", subject,
                    {"reason": type(exc).__name__, "message": str(exc), **details}, self.protocol.version)
        log.warning("delivery.refused", reason=type(exc).__name__, subject=subject)
        ops.DELIVERY_REFUSED.labels(type(exc).__name__).inc()
        raise exc

    async def is_suspended(self) -> tuple[bool, str | None]:
        r = await self.pool.fetchrow("SELECT suspended, reason FROM delivery.control WHERE id=1")
        ops.SHARING_SUSPENDED.set(1 if r["suspended"] else 0)
        return bool(r["suspended"]), r["reason"]

    async def set_suspended(self, suspended: bool, reason: str, actor: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("UPDATE delivery.control SET suspended=$1, reason=$2, changed_by=$3, changed_at=now() "
                               "WHERE id=1", suspended, reason, actor)
            await audit(conn, actor, "sharing.suspended" if suspended else "sharing.resumed", "sharing",
                        {"reason": reason}, self.protocol.version)
        ops.SHARING_SUSPENDED.set(1 if suspended else 0)

    async def _check(self, window: str, recipient: str, actor: str, override_review: str | None) -> None:
        subject = f"window:{window}"
        if self.protocol.transfer.method != "smime-email":
            await self._refuse(actor, TransferMethodNotAllowedError(
                f"transfer method {self.protocol.transfer.method!r} is not supported"), subject)
        if not recipient_allowed(recipient, self.protocol.transfer.allowed_recipient_domains):
            await self._refuse(actor, RecipientNotAllowedError(
                f"{recipient} is not in an allow-listed domain {self.protocol.transfer.allowed_recipient_domains} "
                "(ISP §7.2, §8.2, §8.3); nothing was sent"), subject, recipient=recipient)
        suspended, reason = await self.is_suspended()
        if suspended:
            await self._refuse(actor, SharingSuspendedError(
                f"sharing is suspended (ISP §16.4): {reason}; an operator must resume it first"), subject)
        if self.protocol.review_overdue(self.clock.today()):
            if not override_review:
                await self._refuse(actor, ReviewOverdueError(
                    f"protocol v{self.protocol.version} was due for review on {self.protocol.review_date} (ISP §15); "
                    "load a reviewed version, or pass an override with a reason"), subject)
            await audit(self.pool, actor, "protocol.review_overridden", subject, {"reason": override_review},
                        self.protocol.version)

    # --- deliver --------------------------------------------------------------------------

    async def deliver(self, window: str, academic_year: str, *, actor: str, recipient: str | None = None,
                      override_review: str | None = None) -> BatchResult:
        win = self.protocol.transfer.window(window)
        recipient = recipient or self.protocol.transfer.recipients[0]
        await self._check(window, recipient, actor, override_review)

        pending = await self.pool.fetchrow(
            "SELECT batch_id, status FROM delivery.batches WHERE window_name=$1 AND academic_year=$2 "
            "AND status IN ('prepared', 'sending') ORDER BY prepared_at DESC LIMIT 1", window, academic_year)
        if pending and pending["status"] == "sending":
            raise UncertainDeliveryError(
                f"batch {pending['batch_id']} was interrupted while sending: it may have been accepted. Check the "
                f"recipient's mailbox for its Message-ID, then run `sais delivery resolve {pending['batch_id']} "
                "--sent` or `--not-sent`")
        if pending:
            log.info("batch.resuming", batch_id=str(pending["batch_id"]))
            return await self._send(pending["batch_id"], actor)

        members = await self.pool.fetch(
            "SELECT * FROM delivery.members WHERE academic_year=$1 AND status='active' AND source = ANY($2) "
            "ORDER BY programme_key, pupil_id", academic_year, win.sources)
        if not members:
            raise NothingToDeliverError(f"no cohort records for the {window} window of {academic_year}")

        limit = self.clock.now() - relativedelta(months=self.protocol.staleness_months)
        stale = sorted({str(x) for m in members if m["received_at"] < limit for x in m["extract_ids"]})
        if stale:
            await self._refuse(actor, StaleDataError(
                f"data held for longer than {self.protocol.staleness_months} months (ISP §9.5) from extract(s) "
                f"{', '.join(stale)}: ingest a refreshed extract before delivering"), f"window:{window}",
                extracts=stale)

        content = hashlib.sha256("\n".join(
            f"{m['programme_key']}|{m['pupil_id']}|{m['revision']}" for m in members).encode()).hexdigest()
        last = await self.pool.fetchrow(
            "SELECT batch_id, content_sha256, counts, message_id, files, delete_by FROM delivery.batches "
            "WHERE window_name=$1 AND academic_year=$2 AND recipient=$3 AND status='sent' "
            "ORDER BY sent_at DESC LIMIT 1", window, academic_year, recipient)
        if last and last["content_sha256"] == content:
            log.info("batch.already_sent", batch_id=str(last["batch_id"]))
            return BatchResult(last["batch_id"], "sent", recipient, json.loads(last["counts"]), last["message_id"],
                               already_sent=True, files=json.loads(last["files"]), delete_by=str(last["delete_by"]))

        installation = await self.pool.fetchval("SELECT installation_id FROM shared.installation")
        batch_id = stable_id("batch", installation, window, academic_year, recipient, content)
        await self._prepare(batch_id, window, academic_year, recipient, members, content,
                            last["batch_id"] if last else None, actor)
        return await self._send(batch_id, actor)

    async def _prepare(self, batch_id: UUID, window: str, academic_year: str, recipient: str,
                       members: list[asyncpg.Record], content: str, replaces: UUID | None, actor: str) -> None:
        smime: Smime = self.smime_factory(recipient)  # certificate problems refuse before anything is recorded
        keys = await self.keys.get_many({m["key_id"] for m in members})
        by_programme: dict[str, list[Row]] = {}
        for m in members:
            sealed = Sealed.model_validate_json(m["personal"])
            p = keys[sealed.key_id].open_model(sealed, PupilPersonal,
                                               cohort_aad(academic_year, m["pupil_id"]))
            by_programme.setdefault(m["programme_key"], []).append(Row(
                m["programme"], m["dose"], m["school_dfe"], m["school_name"], m["year_group"], p.surname,
                p.forename, p.date_of_birth, m["gender"], list(p.address_lines), p.postcode))
        safe_year = academic_year.replace("/", "-")
        files = [programme_file(f"{key}-{safe_year}.csv", rows) for key, rows in sorted(by_programme.items())]
        files.append(field_definitions(self.protocol))
        counts = {key: len(rows) for key, rows in sorted(by_programme.items())}
        now = self.clock.now()
        delete_by = (now + relativedelta(months=self.protocol.retention_months)).date()
        sources: dict[tuple, set[str]] = {}
        for m in members:
            sources.setdefault((m["source"], m["reference_date"]), set()).update(str(x) for x in m["extract_ids"])
        src_list = [{"source": s, "reference_date": d.isoformat(), "extracts": sorted(x)}
                    for (s, d), x in sorted(sources.items())]
        extract_ids = sorted({x for m in members for x in m["extract_ids"]}, key=str)
        man = manifest(batch_id=str(batch_id), protocol=self.protocol, window=window, academic_year=academic_year,
                       files=files, sources=src_list, counts=counts, delete_by=delete_by,
                       prepared_at=now.isoformat(), replaces_batch=str(replaces) if replaces else None)
        files.append(man)
        message_id = f"<{batch_id}@sais-datashare.invalid>"
        subject = (f"[{self.protocol.protective_marking}] School immunisation cohort data {academic_year} "
                   f"({window}) batch {str(batch_id)[:8]}")
        message = smime.build(subject=subject, message_id=message_id, date=now, files=files,
                              body=body_text(self.protocol, window=window, academic_year=academic_year,
                                             counts=counts, delete_by=delete_by, batch_id=str(batch_id)))
        file_meta = [{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in files]
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO delivery.batches(batch_id, window_name, academic_year, recipient, message_id, status, "
                "content_sha256, counts, files, extract_ids, key_ids, pupil_ids, replaces_batch, protocol_version, "
                "delete_by, message, prepared_at) VALUES ($1,$2,$3,$4,$5,'prepared',$6,$7::jsonb,$8::jsonb,$9,$10,"
                "$11,$12,$13,$14,$15,$16) ON CONFLICT (batch_id) DO NOTHING RETURNING batch_id",
                batch_id, window, academic_year, recipient, message_id, content, json.dumps(counts),
                json.dumps(file_meta), extract_ids, sorted(keys, key=str),
                sorted({m["pupil_id"] for m in members}, key=str), replaces, self.protocol.version, delete_by,
                message, now)
            if inserted:
                await audit(conn, actor, "batch.prepared", f"batch:{batch_id}",
                            {"window": window, "academic_year": academic_year, "recipient": recipient,
                             "counts": counts}, self.protocol.version)
        log.info("batch.prepared", batch_id=str(batch_id), counts=counts)
        _fault_point("after-prepare")

    async def _send(self, batch_id: UUID, actor: str) -> BatchResult:
        b = await self.pool.fetchrow("SELECT * FROM delivery.batches WHERE batch_id=$1", batch_id)
        for attempt in range(1, self.attempts + 1):
            claimed = await self.pool.execute(
                "UPDATE delivery.batches SET status='sending', attempts=attempts+1 WHERE batch_id=$1 AND "
                "status='prepared'", batch_id)
            if claimed != "UPDATE 1":
                raise UncertainDeliveryError(f"batch {batch_id} is no longer prepared (another sender?)")
            try:
                reply = await self.mailer.send(bytes(b["message"]), sender=self.sender, recipient=b["recipient"])
            except SmtpTransientError as exc:
                ops.SMTP_FAILURES.labels("transient").inc()
                await self._back_to_prepared(batch_id, str(exc))
                if attempt == self.attempts:
                    raise
                pause = self.backoff_s * 2 ** (attempt - 1)
                log.warning("smtp.retry", batch_id=str(batch_id), attempt=attempt, pause_s=pause, error=str(exc))
                await asyncio.sleep(pause)
                continue
            except MessageMayHaveBeenSentError as exc:
                ops.SMTP_FAILURES.labels("uncertain").inc()
                await self.pool.execute("UPDATE delivery.batches SET last_error=$2 WHERE batch_id=$1", batch_id,
                                        str(exc))
                raise UncertainDeliveryError(
                    f"batch {batch_id}: {exc}; check the mailbox for {b['message_id']} and resolve") from None
            except Exception as exc:
                ops.SMTP_FAILURES.labels("refused").inc()
                await self._back_to_prepared(batch_id, f"{type(exc).__name__}: {exc}")
                raise
            _fault_point("after-send")
            return await self.mark_sent(batch_id, reply, actor)
        raise AssertionError("unreachable")

    async def _back_to_prepared(self, batch_id: UUID, error: str) -> None:
        # The SMTP transaction never reached DATA, so nothing was accepted: safe to try again.
        await self.pool.execute("UPDATE delivery.batches SET status='prepared', last_error=$2 WHERE batch_id=$1",
                                batch_id, error[:500])

    async def mark_sent(self, batch_id: UUID, reply: str, actor: str) -> BatchResult:
        now = self.clock.now()
        async with self.pool.acquire() as conn, conn.transaction():
            b = await conn.fetchrow(
                "UPDATE delivery.batches SET status='sent', sent_at=$2, smtp_reply=$3, message=NULL, last_error=NULL "
                "WHERE batch_id=$1 AND status IN ('sending', 'prepared') RETURNING *", batch_id, now, reply[:500])
            if b is None:
                raise UncertainDeliveryError(f"batch {batch_id} is not awaiting a send result")
            delete_by = (now + relativedelta(months=self.protocol.retention_months)).date()
            counts = json.loads(b["counts"])
            event = DeliveryCompleted(
                event_id=stable_id("delivery-completed", batch_id), occurred_at=now, batch_id=batch_id,
                window=b["window_name"], academic_year=b["academic_year"], programmes=counts,
                recipient=b["recipient"], message_id=b["message_id"], transferred_at=now, delete_by=delete_by,
                files=[DeliveredFile(**f) for f in json.loads(b["files"])], extract_ids=list(b["extract_ids"]),
                key_ids=list(b["key_ids"]), protocol_version=b["protocol_version"],
                replaces_batch=b["replaces_batch"])
            await conn.execute("INSERT INTO delivery.outbox(event_id, key, payload) VALUES ($1,$2,$3)",
                               event.event_id, batch_id.bytes, event.model_dump_json())
            await audit(conn, actor, "batch.sent", f"batch:{batch_id}",
                        {"recipient": b["recipient"], "message_id": b["message_id"], "counts": counts},
                        b["protocol_version"])
        log.info("batch.sent", batch_id=str(batch_id), counts=counts)
        ops.BATCHES_SENT.labels(b["window_name"]).inc()
        await self.flush_outbox()
        return BatchResult(batch_id, "sent", b["recipient"], counts, b["message_id"],
                           replaces_batch=b["replaces_batch"], files=json.loads(b["files"]),
                           delete_by=delete_by.isoformat())

    async def deliver_due_windows(self, actor: str = "delivery-scheduler") -> list[BatchResult]:
        """Deliver every window whose month it is (July: the coming year; December: the current one).
        A window already delivered with unchanged content sends nothing; refusals are audited by deliver()."""
        today = self.clock.today()
        results = []
        for win in self.protocol.transfer.windows:
            if win.month != today.month:
                continue
            year = academic_year_label(today.year if win.month >= 7 else today.year - 1)
            try:
                results.append(await self.deliver(win.name, year, actor=actor))
            except NothingToDeliverError:
                continue
        return results

    async def resolve(self, batch_id: UUID, *, sent: bool, actor: str) -> BatchResult | None:
        """An operator's decision about an interrupted send."""
        await audit(self.pool, actor, "batch.resolved", f"batch:{batch_id}", {"sent": sent}, self.protocol.version)
        if sent:
            return await self.mark_sent(batch_id, "resolved by operator", actor)
        await self.pool.execute("UPDATE delivery.batches SET status='prepared' WHERE batch_id=$1 AND status='sending'",
                                batch_id)
        return None

    async def flush_outbox(self) -> int:
        return await flush_outbox(self.pool, "delivery.outbox", self.publisher, DeliveryCompleted.model_validate_json)


def _fault_point(name: str) -> None:
    """Fault injection for crash tests: SAIS_DELIVERY_CRASH_AT=<name> kills the process here."""
    if os.environ.get("SAIS_DELIVERY_CRASH_AT") == name:
        os._exit(70)


__all__ = ["BatchResult", "DeliveryService"]
