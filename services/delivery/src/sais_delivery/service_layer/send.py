"""Use case: send a planned batch's parts, each rendered afresh from its members, signed and encrypted,
then marked sent once the server accepted it; the batch is sent, with its event and audit entry, when
every part is. A part is ``sending`` only while the SMTP transaction may accept it."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING
from uuid import UUID

import structlog
from sais_shared import memory, ops

from ..domain.batch import Batch, Part, SentMeta
from ..domain.errors import (
    MessageMayHaveBeenSentError,
    PartTooLargeError,
    SmtpRejectedError,
    SmtpTransientError,
    UncertainDeliveryError,
)
from ..domain.part_content import PartContent, PartMessage, compose
from ..domain.sender_notes import mavis_notes
from .ports import MessageBuilder
from .steps import move, open_row

if TYPE_CHECKING:
    from .deliver import DeliveryService
    from .views import BatchResult

log = structlog.get_logger("sais.delivery")


def refuse_interrupted(b: Batch) -> None:
    for p in b.interrupted():
        raise UncertainDeliveryError(
            f"batch {b.batch_id} part {p.part_no} of {b.part_count} was interrupted while sending: it may have been "
            f"accepted. Check the recipient's mailbox for Message-ID {p.message_id}, then run "
            f"`sais delivery resolve {b.batch_id} --part {p.part_no} --sent` or `--not-sent`"
        )


async def send_parts(svc: DeliveryService, batch_id: UUID, actor: str) -> BatchResult:
    async with svc.uow() as tx:
        b = await tx.batches.get(batch_id)
    assert b is not None, f"batch {batch_id} was recorded"
    refuse_interrupted(b)
    smime = svc.smime_factory(b.recipient)
    memory.keep_large_buffers_mapped()
    reports = []
    unsent = b.unsent()
    # Each part is rendered while the one before it is sent: the read of its members waits on PostgreSQL
    # and the send on the mail server, and each goes on while this process works on the other. Parts are
    # still sent one at a time and in order, and a part is only ever sent once it is rendered whole.
    rendering = _render_task(svc, b, unsent, 0, smime)
    try:
        for i, p in enumerate(unsent):
            assert rendering is not None
            message, meta, report = await rendering
            rendering = None
            reports.append(report)
            memory.trim()  # what rendering used is handed back before the send makes its own copies
            if meta.size_bytes > svc.max_message_bytes:
                await refuse_too_large(svc, b, p, meta)
            rendering = _render_task(svc, b, unsent, i + 1, smime)
            await send_part(svc, b, p, message, meta)
            del message
            memory.trim()  # the next part starts from what this one used, not more
    except BaseException:
        if rendering is not None:  # a failed send leaves no render running beside the error
            rendering.cancel()
            await asyncio.gather(rendering, return_exceptions=True)
        raise
    result = await mark_sent(svc, batch_id, "all parts accepted", actor)
    result.warnings += mavis_notes(reports)
    return result


def _render_task(
    svc: DeliveryService, b: Batch, parts: list[Part], i: int, smime: MessageBuilder
) -> asyncio.Task[tuple[bytes, SentMeta, dict | None]] | None:
    return asyncio.ensure_future(render_part(svc, b, parts[i], smime)) if i < len(parts) else None


async def render_part(
    svc: DeliveryService, b: Batch, part: Part, smime: MessageBuilder
) -> tuple[bytes, SentMeta, dict | None]:
    """One part as a complete message. Rows are streamed from a server-side cursor; memory holds this part."""
    with_mavis = svc.protocol.transfer.window(b.window).mavis_cohort_import
    keys = await svc.keys.get_many(b.key_ids)
    async with svc.uow() as tx:
        register = await tx.members.school_register({g["school_dfe"] for g in part.segments}) if with_mavis else {}
        content = PartContent(svc.mavis_upload(b.academic_year) if with_mavis else None, register)
        newer = []
        async for m in tx.members.of_part(b.batch_id, part.part_no, b.academic_year):
            if m.key_id not in keys:  # a newer revision, under another extract's key, goes as it is now
                keys |= await svc.keys.get_many([m.key_id])
                newer.append(m)
            content.add(m, open_row(m, keys))
        if newer:  # the batch records that key and extract, so that its transfer's deletion covers them
            held = await tx.batches.hold(b.batch_id)
            assert held is not None, f"batch {b.batch_id} was recorded"
            await tx.batches.save(
                held, held.widen({m.key_id for m in newer}, {x for m in newer for x in m.extract_ids})
            )
            log.info("batch.widened", batch_id=str(b.batch_id), key_ids=sorted(str(m.key_id) for m in newer))
        gaps = await tx.members.coverage_gaps(b.academic_year, svc.protocol.id, b.protocol_version)
    msg: PartMessage = compose(svc.protocol, b, part, content, gaps, svc.clock.now())
    message = smime.build(
        subject=msg.subject, message_id=part.message_id, date=svc.clock.now(), files=msg.files, body=msg.body
    )
    if msg.mavis and msg.mavis["left_out"]:
        log.warning(
            "mavis.rows_left_out",
            batch_id=str(b.batch_id),
            part=part.part_no,
            rows=sum(r["rows"] for r in msg.mavis["left_out"]),
            reasons=sorted({r["reason"] for r in msg.mavis["left_out"]}),
        )
    return message, SentMeta(msg.counts, msg.meta_files(), len(message)), msg.mavis


async def refuse_too_large(svc: DeliveryService, b: Batch, p: Part, meta: SentMeta) -> None:
    await fail(svc, b.batch_id, p.part_no, f"{meta.size_bytes} bytes is over the maximum message size")
    raise PartTooLargeError(
        f"batch {b.batch_id} part {p.part_no} of {b.part_count} is {meta.size_bytes} bytes on the wire, over the "
        f"maximum message size of {svc.max_message_bytes} bytes; nothing was sent. This is a planning fault: "
        "report it, with the batch id"
    )


async def send_part(svc: DeliveryService, b: Batch, p: Part, message: bytes, meta: SentMeta) -> None:
    """Claim, send, and record the server's answer; a deferral is tried again with a growing pause."""
    for attempt in range(1, svc.attempts + 1):
        await move(svc.uow, b.batch_id, lambda batch: batch.claim(p.part_no, svc.clock.now(), meta))
        try:
            reply = await svc.mailer.send(message, sender=svc.sender, recipient=b.recipient)
        except SmtpTransientError as exc:
            ops.SMTP_FAILURES.labels("transient").inc()
            await back_to_prepared(svc, b.batch_id, p.part_no, str(exc))
            if attempt == svc.attempts:
                raise
            pause = svc.backoff_s * 2 ** (attempt - 1)
            log.warning(
                "smtp.retry", batch_id=str(b.batch_id), part=p.part_no, attempt=attempt, pause_s=pause, error=str(exc)
            )
            await asyncio.sleep(pause)
            continue
        except Exception as exc:
            raise await settle_failure(svc, b, p, meta, exc) from None
        svc.fault("after-send")
        accepted = partial(Batch.accepted, part_no=p.part_no, at=svc.clock.now(), reply=reply)
        await move(svc.uow, b.batch_id, accepted)
        log.info(
            "batch.part_sent", batch_id=str(b.batch_id), part=p.part_no, of=b.part_count, size_bytes=meta.size_bytes
        )
        return
    raise AssertionError("unreachable")


async def settle_failure(svc: DeliveryService, b: Batch, p: Part, meta: SentMeta, exc: Exception) -> Exception:
    """What a send that did not succeed leaves the part as, and the error to raise."""
    if isinstance(exc, MessageMayHaveBeenSentError):
        ops.SMTP_FAILURES.labels("uncertain").inc()
        await move(svc.uow, b.batch_id, lambda batch: batch.uncertain(p.part_no, str(exc)))
        return UncertainDeliveryError(
            f"batch {b.batch_id} part {p.part_no}: {exc}; check the mailbox for {p.message_id} and resolve"
        )
    ops.SMTP_FAILURES.labels("refused").inc()
    if isinstance(exc, SmtpRejectedError):  # permanent: retrying the same message can never succeed
        why = (
            f"the mail server refused part {p.part_no} of {b.part_count} of batch {b.batch_id} "
            f"({meta.size_bytes} bytes; maximum message size {svc.max_message_bytes}): {exc}"
        )
        await fail(svc, b.batch_id, p.part_no, why)
        return SmtpRejectedError(why)
    await back_to_prepared(svc, b.batch_id, p.part_no, f"{type(exc).__name__}: {exc}")
    return exc


async def back_to_prepared(svc: DeliveryService, batch_id: UUID, part_no: int, error: str) -> None:
    await move(svc.uow, batch_id, lambda b: b.back_to_prepared(part_no, error))


async def fail(svc: DeliveryService, batch_id: UUID, part_no: int, error: str) -> None:
    await move(svc.uow, batch_id, lambda b: b.fail(part_no, error))
    log.error("batch.part_failed", batch_id=str(batch_id), part=part_no)


async def mark_sent(svc: DeliveryService, batch_id: UUID, reply: str, actor: str) -> BatchResult:
    """The batch is sent once every part is: recorded with one event for the whole batch and its audit
    entry, in one unit of work."""
    async with svc.uow() as tx:
        b = await tx.batches.hold(batch_id)
        done = b.complete(reply, svc.protocol.delete_by) if b else None
        if b is None or done is None:
            raise UncertainDeliveryError(f"batch {batch_id} has parts not yet accepted, or is not awaiting a result")
        await tx.batches.save(b, done)
        await tx.queue(done.completed_event(svc.clock.now()), batch_id.bytes)
        details = {
            "recipient": done.recipient,
            "message_ids": [p.message_id for p in done.parts],
            "counts": done.counts,
            "protocol_sha256": done.protocol_sha256,
        }
        await tx.audit(actor, "batch.sent", f"batch:{batch_id}", details, done.protocol_version)
    log.info("batch.sent", batch_id=str(batch_id), counts=done.counts, parts=done.part_count)
    ops.BATCHES_SENT.labels(done.window).inc()
    await svc.flush_outbox()
    return await svc.result(batch_id)
