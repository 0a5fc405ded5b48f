"""Use case: deliver a window's cohorts to the SAIS mailbox, exactly once.

A batch is recorded (``prepared``, with its encrypted message) before anything is sent, set to
``sending`` just before the SMTP transaction and ``sent`` once the server accepted it. A batch
found ``prepared`` is safe to send; one found ``sending`` may or may not have been accepted, so
it is reported for an operator (``sais delivery resolve``) instead of being resent blindly. The
Message-ID is derived from the batch id, so a receiver can also recognise a repeat.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog
from dateutil.relativedelta import relativedelta
from sais_shared import ops
from sais_shared.crypto import Sealed
from sais_shared.errors import ConfigurationError
from sais_shared.events import (
    DeliveredFile,
    DeliveredPart,
    DeliveryCompleted,
    PupilPersonal,
    cohort_aad,
    stable_id,
)
from sais_shared.ports import Clock, Keys
from sais_shared.protocol import normalise_address
from sais_shared.protocol_registry import FollowsProtocol, ProtocolRef
from sais_shared.schoolyear import academic_year_label, parse_academic_year

from ..adapters import memory
from ..adapters.mailer import (
    Mailer,
    MessageMayHaveBeenSentError,
    SmtpRejectedError,
    SmtpTransientError,
)
from ..adapters.smime import Smime
from ..domain import mavis
from ..domain.errors import (
    DeliveryRefusedError,
    NothingToDeliverError,
    NothingToResolveError,
    PartTooLargeError,
    UncertainDeliveryError,
)
from ..domain.guards import Sharing, Verdict, may_send, stale_before, stale_refusal
from ..domain.mavis_rules import Team
from ..domain.parts import (
    DEFAULT_MAX_MESSAGE_BYTES,
    SchoolLoad,
    csv_budget,
    part_suffix,
    plan_parts,
)
from ..domain.render import (
    RenderedFile,
    Row,
    body_text,
    field_definitions,
    keyed_line,
    manifest,
    programme_file_from_lines,
    row_bytes,
)
from .ports import Store

log = structlog.get_logger("sais.delivery")


def member_aad(m: Mapping[str, Any]) -> bytes:
    """The context a member's sealed fields were sealed under (its cohort event's): a clear field altered
    on the way (school, year group, programme, lineage…) makes the record refuse to open."""
    return cohort_aad(
        m["academic_year"],
        m["pupil_id"],
        programme=m["programme"],
        dose=m["dose"],
        revision=m["revision"],
        school_dfe=m["school_dfe"],
        school_name=m["school_name"],
        year_group=m["year_group"],
        gender=m["gender"],
        source=m["source"],
        reference_date=m["reference_date"],
        received_at=m["received_at"],
        extract_ids=m["extract_ids"],
    )


def coverage_warnings(academic_year: str, protocol_version: str, gaps: list[str] | None) -> list[str]:
    """What the person sending must know about the cohort's completeness under the protocol version."""
    if gaps is None:
        return [f"eligibility has not reported its coverage check of {academic_year} under protocol "
                f"v{protocol_version}: the cohort may be incomplete (sais protocol check)"]  # fmt: skip
    return [
        f"cohort incomplete under protocol v{protocol_version}: {g} (the protocol does not request these "
        "children; a revision that does is needed)"
        for g in gaps
    ]


def mavis_warnings(left_out: list[dict]) -> list[str]:
    """One line per (programme, school, reason) of rows left out of the Mavis files."""
    return [
        f"{r['rows']} {r['programme']} row(s) of school {r['school_dfe'] or '(not yet known)'} left out of the Mavis "
        f"file: {r['reason']} (they are in the programme file; see the manifest)"
        for r in left_out
    ]


def mavis_upload_note(academic_year: str, upload_from: str) -> str:
    """For the sender to pass on: when the Mavis files may be uploaded (year groups are read against
    the academic year of the day of upload)."""
    return (
        f"the Mavis files are for {academic_year}: upload them on or after {upload_from} (Mavis reads year groups "
        f"against the academic year of the upload day; from 1 August that is the coming year; choose "
        f"{academic_year} if Mavis asks)"
    )


def message_id_of(batch_id: UUID, part_no: int, part_count: int) -> str:
    """Deterministic, so a receiver (and an operator) can recognise a repeat of any part."""
    return f"<{batch_id}{part_suffix(part_no, part_count)}@sais-datashare.invalid>"


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
    parts: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # for the person sending: the batch went, but…


@dataclass
class DeliveryService(FollowsProtocol):
    store: Store
    keys: Keys
    protocol_ref: ProtocolRef
    clock: Clock
    mailer: Mailer
    smime_factory: Any  # (recipient) -> Smime; certificates are checked when a batch is built
    sender: str
    publisher: Any
    attempts: int = 4
    backoff_s: float = 2.0
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    default_recipient: str | None = None  # SAIS_DELIVERY_RECIPIENT: before the protocol's first recipient
    mavis_max_rows: int = mavis.DEFAULT_FILE_ROWS  # SAIS_DELIVERY_MAVIS_MAX_ROWS

    # --- guards ---------------------------------------------------------------------------

    async def _refuse(self, actor: str, exc: DeliveryRefusedError, subject: str, **details) -> None:
        await self.store.audit(
            actor,
            "delivery.refused",
            subject,
            {"reason": type(exc).__name__, "message": str(exc), **details},
            self.protocol.version,
        )
        log.warning("delivery.refused", reason=type(exc).__name__, subject=subject)
        ops.DELIVERY_REFUSED.labels(type(exc).__name__).inc()
        raise exc

    async def is_suspended(self) -> tuple[bool, str | None]:
        suspended, reason = await self.store.sharing()
        ops.SHARING_SUSPENDED.set(1 if suspended else 0)
        return suspended, reason

    async def set_suspended(self, suspended: bool, reason: str, actor: str) -> None:
        await self.store.set_sharing(suspended, reason, actor, self.protocol.version)
        ops.SHARING_SUSPENDED.set(1 if suspended else 0)

    async def _check(self, window: str, recipient: str, actor: str, override_review: str | None) -> None:
        suspended, reason = await self.is_suspended()
        verdict = may_send(self.protocol, recipient, Sharing(suspended, reason), self.clock.today(), override_review)
        await self._enforce(verdict, actor, f"window:{window}")
        if verdict.review_overridden:
            await self.store.audit(
                actor,
                "protocol.review_overridden",
                f"window:{window}",
                {"reason": override_review},
                self.protocol.version,
            )

    async def _enforce(self, verdict: Verdict, actor: str, subject: str) -> None:
        if verdict.refusal is not None:
            await self._refuse(actor, verdict.refusal, subject, **(verdict.details or {}))

    # --- deliver --------------------------------------------------------------------------

    async def deliver(
        self,
        window: str,
        academic_year: str,
        *,
        actor: str,
        recipient: str | None = None,
        override_review: str | None = None,
    ) -> BatchResult:
        win = self.protocol.transfer.window(window)
        recipient = recipient or self.default_recipient or next(iter(self.protocol.transfer.recipients), None)
        if not self.sender:
            raise ConfigurationError("no sender address: set SAIS_DELIVERY_SENDER_ADDRESS (the authority's mailbox)")
        if recipient is None:
            raise ConfigurationError(
                f"no recipient: protocol {self.protocol.id} v{self.protocol.version} names none; set "
                "SAIS_DELIVERY_RECIPIENT (or --recipient) to the SAIS team's mailbox, within "
                f"{', '.join(self.protocol.transfer.allowed_recipient_domains)}"
            )
        await self._check(window, recipient, actor, override_review)
        recipient = normalise_address(recipient)  # exactly what was checked goes to RCPT TO and To:

        pending = await self.store.pending_batch(window, academic_year)
        if pending and not await self._replan_if_unsent(pending, actor):
            log.info("batch.resuming", batch_id=str(pending["batch_id"]))
            return await self._send_parts(pending["batch_id"], actor)

        n, content = await self.store.window_content(academic_year, win.sources)
        if not n:
            raise NothingToDeliverError(f"no cohort records for the {window} window of {academic_year}")
        limit = stale_before(self.clock.now(), self.protocol.staleness_months)
        stale = await self.store.extracts_received_before(academic_year, win.sources, limit)
        await self._enforce(stale_refusal(stale, self.protocol.staleness_months), actor, f"window:{window}")

        last = await self.store.last_sent(window, academic_year, recipient)
        if last and last["content_sha256"] == content:
            log.info("batch.already_sent", batch_id=str(last["batch_id"]))
            return await self.result(last["batch_id"], already_sent=True)

        installation = await self.store.installation_id()
        batch_id = stable_id("batch", installation, window, academic_year, recipient, content)
        self.smime_factory(recipient)  # certificate problems refuse before anything is recorded
        await self._plan(
            batch_id, window, academic_year, win.sources, recipient, last["batch_id"] if last else None, actor
        )
        self.fault("after-prepare")
        return await self._send_parts(batch_id, actor)

    async def _replan_if_unsent(self, pending: Mapping[str, Any], actor: str) -> bool:
        """A batch refused permanently before any part was accepted is planned afresh (the limit or
        the cohort may have changed since); one with parts already accepted resumes its plan."""
        if pending["status"] != "failed":
            return False
        if await self.store.count_parts(pending["batch_id"], status="sent"):
            await self.store.reopen_failed_parts(pending["batch_id"])
            return False
        await self.store.drop_batch(pending["batch_id"], actor, "refused before any part was accepted",
                                    self.protocol.version)  # fmt: skip
        return True

    async def _plan(
        self,
        batch_id: UUID,
        window: str,
        academic_year: str,
        sources: list[str],
        recipient: str,
        replaces: UUID | None,
        actor: str,
    ) -> None:
        """Record the batch and which children go in which part, from one snapshot of the members.
        Each school's rows are measured as rendered (a streamed pass; memory holds one school's sums)."""
        async with self.store.snapshot(academic_year, sources) as snap:
            keys = await self.keys.get_many(await snap.key_ids())
            with_mavis = self.protocol.transfer.window(window).mavis_cohort_import
            loads: list[SchoolLoad] = []
            cur: dict | None = None
            async for m in snap.members_by_school():
                row = self._row(m, keys, academic_year)
                size = row_bytes(row) + (mavis.line_bytes(row) if with_mavis else 0)
                if cur is None or cur["school_dfe"] != m["school_dfe"]:
                    if cur:
                        loads.append(SchoolLoad(**cur))
                    cur = {"school_dfe": m["school_dfe"], "rows": 0, "csv_bytes": 0, "max_row_bytes": 0}
                cur["rows"] += 1
                cur["csv_bytes"] += size
                cur["max_row_bytes"] = max(cur["max_row_bytes"], size)
            if cur:
                loads.append(SchoolLoad(**cur))
            plan = plan_parts(loads, csv_budget(self.max_message_bytes))
            content, key_ids, extract_ids, counts = await snap.summary()
            now = self.clock.now()
            n = len(plan)
            batch = {
                "batch_id": batch_id, "window": window, "recipient": recipient,
                "message_id": message_id_of(batch_id, 1, n), "content": content, "counts": counts,
                "extract_ids": extract_ids, "key_ids": key_ids, "replaces": replaces,
                "protocol_version": self.protocol.version, "protocol_sha256": self.protocol.sha256,
                "prepared_at": now,
                "delete_by": (now + relativedelta(months=self.protocol.retention_months)).date(),
            }  # fmt: skip
            parts = [(i, message_id_of(batch_id, i, n), [g.as_json() for g in segs]) for i, segs in enumerate(plan, 1)]
            if not await snap.record_batch(batch, parts):
                return
            gaps = await self.store.coverage_gaps(academic_year, self.protocol.id, self.protocol.version)
            await snap.audit(
                actor, "batch.prepared", f"batch:{batch_id}",
                {"window": window, "academic_year": academic_year, "recipient": recipient, "counts": counts,
                 "parts": n, "max_message_bytes": self.max_message_bytes, "coverage_gaps": gaps,
                 "protocol_sha256": self.protocol.sha256},
                self.protocol.version,
            )  # fmt: skip
        log.info("batch.prepared", batch_id=str(batch_id), counts=counts, parts=n)
        if gaps:  # the cohort is incomplete: the protocol does not request every child the rules need
            log.warning("batch.coverage_gap", batch_id=str(batch_id), academic_year=academic_year,
                        protocol_version=self.protocol.version, gaps=gaps)  # fmt: skip

    def mavis_upload(self, academic_year: str) -> mavis.Upload:
        """The Mavis import this batch's files are for: the batch's academic year, the team the protocol
        names, and the rows a file may hold."""
        t = self.protocol.transfer.mavis_team
        team = Team(
            schools=frozenset(t.schools) if t.schools is not None else None, year_groups=frozenset(t.year_groups)
        )
        return mavis.Upload(parse_academic_year(academic_year), team, self.mavis_max_rows)

    def _row(self, m: Mapping[str, Any], keys: dict, academic_year: str) -> Row:
        sealed = Sealed.model_validate_json(m["personal"])
        p = keys[sealed.key_id].open_model(sealed, PupilPersonal, member_aad(m))
        return Row(
            m["programme"],
            m["dose"],
            m["school_dfe"],
            m["school_name"],
            m["year_group"],
            p.surname,
            p.forename,
            p.date_of_birth,
            m["gender"],
            list(p.address_lines),
            p.postcode,
        )

    async def _render_part(self, b: Mapping[str, Any], part: Mapping[str, Any], smime: Smime) -> tuple[bytes, dict]:
        """One part as a complete message: its CSVs, field definitions and manifest, signed and encrypted.
        Rows are streamed from a server-side cursor; memory holds this part only."""
        n, i, year = b["part_count"], part["part_no"], b["academic_year"]
        by_programme: dict[str, list[bytes]] = {}
        sources: dict[tuple, set[str]] = {}
        keys = await self.keys.get_many(b["key_ids"])
        with_mavis = self.protocol.transfer.window(b["window_name"]).mavis_cohort_import
        register = (
            await self.store.school_register({g["school_dfe"] for g in json.loads(part["segments"])})
            if with_mavis
            else {}
        )
        for_mavis: dict[str, list[bytes]] = {}
        left_out: dict[tuple[str, str, str], int] = {}
        upload = self.mavis_upload(year)
        async for m in self.store.part_members(b["batch_id"], i, year):
            if m["key_id"] not in keys:
                # The child changed after the batch was planned: a newer revision, sealed under another
                # extract's key, is what goes. The batch records that key and extract, for its deletion.
                keys |= await self.keys.get_many([m["key_id"]])
                await self.store.widen_batch(b["batch_id"], [m["key_id"]], list(m["extract_ids"]))
                log.info("batch.widened", batch_id=str(b["batch_id"]), key_id=str(m["key_id"]))
            row = self._row(m, keys, year)
            by_programme.setdefault(m["programme_key"], []).append(keyed_line(row))
            sources.setdefault((m["source"], m["reference_date"]), set()).update(str(x) for x in m["extract_ids"])
            if with_mavis:
                v = mavis.verdict(row, register, upload)
                if v.line is not None:
                    for_mavis.setdefault(m["programme_key"], []).append(v.line)
                else:
                    k = (m["programme_key"], m["school_dfe"], v.reason or "")
                    left_out[k] = left_out.get(k, 0) + 1
        safe_year, suffix = year.replace("/", "-"), part_suffix(i, n)
        files = [
            programme_file_from_lines(f"{key}-{safe_year}{suffix}.csv", lines)
            for key, lines in sorted(by_programme.items())
        ]
        mavis_report = None
        if with_mavis:
            for key, lines in sorted(for_mavis.items()):
                written, repeated = mavis.files_from_lines(f"mavis-cohort-{key}-{safe_year}{suffix}", lines,
                                                           upload.max_rows)  # fmt: skip
                files += [RenderedFile(name, content, rows) for name, content, rows in written]
                for school in repeated:
                    k = (key, school, mavis.SAME_CHILD)
                    left_out[k] = left_out.get(k, 0) + 1
            del for_mavis
            first, last = upload.upload_window(self.clock.now().date())
            team = upload.team
            mavis_report = {
                "academic_year": upload.label,
                "upload_from": first.isoformat(),
                "upload_until": last.isoformat(),
                "team": {
                    "schools": sorted(team.schools) if team.schools is not None else None,
                    "schools_checked_against": "the SAIS team's schools (protocol)"
                    if team.schools is not None
                    else "the schools register (GIAS): the protocol names no team schools",
                    "year_groups": sorted(team.year_groups),
                },
                "max_rows_per_file": upload.max_rows,
                "rows": sum(f.rows for f in files if f.name.startswith("mavis-")),
                "left_out": [
                    {"programme": k, "school_dfe": school, "reason": why, "rows": rows}
                    for (k, school, why), rows in sorted(left_out.items())
                ],
            }
            if left_out:
                log.warning("mavis.rows_left_out", batch_id=str(b["batch_id"]), part=i,
                            rows=sum(left_out.values()), reasons=sorted({w for _, _, w in left_out}))  # fmt: skip
        files.append(field_definitions(self.protocol))
        counts = {key: len(rows) for key, rows in sorted(by_programme.items())}
        del by_programme
        src_list = [
            {"source": s, "reference_date": d.isoformat(), "extracts": sorted(x)}
            for (s, d), x in sorted(sources.items())
        ]
        delete_by = b["delete_by"]
        gaps = await self.store.coverage_gaps(year, self.protocol.id, b["protocol_version"])
        files.append(
            manifest(
                batch_id=str(b["batch_id"]),
                protocol=self.protocol,
                window=b["window_name"],
                academic_year=year,
                files=files,
                sources=src_list,
                counts=counts,
                delete_by=delete_by,
                prepared_at=b["prepared_at"].isoformat(),
                replaces_batch=str(b["replaces_batch"]) if b["replaces_batch"] else None,
                part={
                    "number": i,
                    "of": n,
                    "message_id": part["message_id"],
                    "batch_counts": json.loads(b["counts"]),
                    "schools": sorted({g["school_dfe"] or "not yet known" for g in json.loads(part["segments"])}),
                },
                coverage_gaps=gaps,
                mavis=mavis_report,
            )
        )
        subject = (
            f"[{self.protocol.protective_marking}] School immunisation cohort data {year} "
            f"({b['window_name']}) batch {str(b['batch_id'])[:8]}" + (f" part {i} of {n}" if n > 1 else "")
        )
        message = smime.build(
            subject=subject,
            message_id=part["message_id"],
            date=self.clock.now(),
            files=files,
            body=body_text(
                self.protocol,
                window=b["window_name"],
                academic_year=year,
                counts=counts,
                delete_by=delete_by,
                batch_id=str(b["batch_id"]),
                part_no=i,
                part_count=n,
            ),
        )
        meta = {
            "counts": counts,
            "files": [{"name": f.name, "sha256": f.sha256, "rows": f.rows} for f in files],
            "size_bytes": len(message),
            "mavis_left_out": mavis_report["left_out"] if mavis_report else [],
            "mavis_upload": {k: mavis_report[k] for k in ("academic_year", "upload_from")} if mavis_report else None,
        }
        return message, meta

    async def _send_parts(self, batch_id: UUID, actor: str) -> BatchResult:
        b = await self.store.batch(batch_id)
        parts = await self.store.parts(batch_id)
        for p in parts:
            if p["status"] == "sending":
                raise UncertainDeliveryError(
                    f"batch {batch_id} part {p['part_no']} of {b['part_count']} was interrupted while sending: it "
                    f"may have been accepted. Check the recipient's mailbox for Message-ID {p['message_id']}, then "
                    f"run `sais delivery resolve {batch_id} --part {p['part_no']} --sent` or `--not-sent`"
                )
        smime: Smime = self.smime_factory(b["recipient"])
        memory.keep_large_buffers_mapped()
        left_out: list[dict] = []
        upload_note: dict | None = None
        for p in parts:
            if p["status"] == "sent":
                continue
            message, meta = await self._render_part(b, p, smime)
            left_out += meta["mavis_left_out"]
            upload_note = meta["mavis_upload"] or upload_note
            memory.trim()  # what rendering used is handed back before the send makes its own copies
            if meta["size_bytes"] > self.max_message_bytes:
                await self._fail(batch_id, p["part_no"], f"{meta['size_bytes']} bytes is over the maximum message size")
                raise PartTooLargeError(
                    f"batch {batch_id} part {p['part_no']} of {b['part_count']} is {meta['size_bytes']} bytes on the "
                    f"wire, over the maximum message size of {self.max_message_bytes} bytes; nothing was sent. "
                    "This is a planning fault: report it, with the batch id"
                )
            await self._send_part(b, p, message, meta)
            del message
            memory.trim()  # the next part starts from what this one used, not more
        result = await self.mark_sent(batch_id, "all parts accepted", actor)
        result.warnings += mavis_warnings(left_out)
        if upload_note:
            result.warnings.append(mavis_upload_note(**upload_note))
        return result

    async def _send_part(self, b: Mapping[str, Any], p: Mapping[str, Any], message: bytes, meta: dict) -> None:
        batch_id, part_no = b["batch_id"], p["part_no"]
        for attempt in range(1, self.attempts + 1):
            if not await self.store.claim_part(batch_id, part_no, self.clock.now(), meta):
                raise UncertainDeliveryError(f"batch {batch_id} part {part_no} is no longer prepared (another sender?)")
            try:
                reply = await self.mailer.send(message, sender=self.sender, recipient=b["recipient"])
            except SmtpTransientError as exc:
                ops.SMTP_FAILURES.labels("transient").inc()
                await self._back_to_prepared(batch_id, part_no, str(exc))
                if attempt == self.attempts:
                    raise
                pause = self.backoff_s * 2 ** (attempt - 1)
                log.warning(
                    "smtp.retry", batch_id=str(batch_id), part=part_no, attempt=attempt, pause_s=pause, error=str(exc)
                )
                await asyncio.sleep(pause)
                continue
            except MessageMayHaveBeenSentError as exc:
                ops.SMTP_FAILURES.labels("uncertain").inc()
                await self.store.part_error(batch_id, part_no, str(exc))
                raise UncertainDeliveryError(
                    f"batch {batch_id} part {part_no}: {exc}; check the mailbox for {p['message_id']} and resolve"
                ) from None
            except SmtpRejectedError as exc:  # permanent: retrying the same message can never succeed
                ops.SMTP_FAILURES.labels("refused").inc()
                why = (
                    f"the mail server refused part {part_no} of {b['part_count']} of batch {batch_id} "
                    f"({meta['size_bytes']} bytes; maximum message size {self.max_message_bytes}): {exc}"
                )
                await self._fail(batch_id, part_no, why)
                raise SmtpRejectedError(why) from None
            except Exception as exc:
                ops.SMTP_FAILURES.labels("refused").inc()
                await self._back_to_prepared(batch_id, part_no, f"{type(exc).__name__}: {exc}")
                raise
            self.fault("after-send")
            await self.store.part_sent(batch_id, part_no, self.clock.now(), reply)
            log.info(
                "batch.part_sent",
                batch_id=str(batch_id),
                part=part_no,
                of=b["part_count"],
                size_bytes=meta["size_bytes"],
            )
            return
        raise AssertionError("unreachable")

    async def _back_to_prepared(self, batch_id: UUID, part_no: int, error: str) -> None:
        # The SMTP transaction never reached DATA, so nothing was accepted: safe to try again.
        await self._set_part(batch_id, part_no, "prepared", error)

    async def _fail(self, batch_id: UUID, part_no: int, error: str) -> None:
        await self._set_part(batch_id, part_no, "failed", error)
        log.error("batch.part_failed", batch_id=str(batch_id), part=part_no)

    async def _set_part(self, batch_id: UUID, part_no: int, status: str, error: str) -> None:
        await self.store.set_part(batch_id, part_no, status, error)

    async def mark_sent(self, batch_id: UUID, reply: str, actor: str) -> BatchResult:
        """The batch is sent once every part is: records it and publishes one event for the whole batch."""
        done = await self.store.finish_batch(
            batch_id, reply=reply, actor=actor, event_of=self._completed,
            delete_by_of=lambda transferred: (transferred + relativedelta(months=self.protocol.retention_months)).date(),
        )  # fmt: skip
        if done is None:
            raise UncertainDeliveryError(f"batch {batch_id} has parts not yet accepted, or is not awaiting a result")
        b, parts = done
        log.info("batch.sent", batch_id=str(batch_id), counts=json.loads(b["counts"]), parts=len(parts))
        ops.BATCHES_SENT.labels(b["window_name"]).inc()
        await self.flush_outbox()
        return await self.result(batch_id)

    def _completed(
        self, b: Mapping[str, Any], parts: list, transferred, delete_by, files: list[dict]
    ) -> DeliveryCompleted:
        """What retention schedules: the batch as transferred, every part of it."""
        return DeliveryCompleted(
            event_id=stable_id("delivery-completed", b["batch_id"]), occurred_at=self.clock.now(),
            batch_id=b["batch_id"], window=b["window_name"], academic_year=b["academic_year"],
            programmes=json.loads(b["counts"]), recipient=b["recipient"], message_id=b["message_id"],
            transferred_at=transferred, delete_by=delete_by, files=[DeliveredFile(**f) for f in files],
            extract_ids=list(b["extract_ids"]), key_ids=list(b["key_ids"]), protocol_version=b["protocol_version"],
            replaces_batch=b["replaces_batch"],
            parts=[
                DeliveredPart(part=p["part_no"], message_id=p["message_id"], size_bytes=p["size_bytes"] or 0,
                              programmes=json.loads(p["counts"] or "{}"), transferred_at=p["sent_at"])
                for p in parts
            ],
        )  # fmt: skip

    async def result(self, batch_id: UUID, *, already_sent: bool = False) -> BatchResult:
        b = await self.store.batch(batch_id)
        parts = await self.store.part_summaries(batch_id)
        gaps = await self.store.coverage_gaps(b["academic_year"], self.protocol.id, b["protocol_version"])
        return BatchResult(
            batch_id,
            b["status"],
            b["recipient"],
            json.loads(b["counts"]),
            b["message_id"],
            already_sent=already_sent,
            replaces_batch=b["replaces_batch"],
            files=json.loads(b["files"]),
            delete_by=str(b["delete_by"]),
            parts=[
                {
                    "part": p["part_no"],
                    "message_id": p["message_id"],
                    "status": p["status"],
                    "size_bytes": p["size_bytes"],
                    "counts": json.loads(p["counts"] or "{}"),
                }
                for p in parts
            ],
            warnings=coverage_warnings(b["academic_year"], b["protocol_version"], gaps),
        )

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

    async def resolve(self, batch_id: UUID, *, sent: bool, actor: str, part: int | None = None) -> BatchResult | None:
        """An operator's decision about an interrupted send of one part (the only interrupted one when
        ``part`` is not given). When every part is then sent, so is the batch."""
        interrupted = await self.store.interrupted_parts(batch_id)
        if part is None and len(interrupted) == 1:
            part = interrupted[0]
        if part is None or part not in interrupted:  # never attempted, already settled, or unknown
            raise NothingToResolveError(
                f"batch {batch_id} has no interrupted part{f' {part}' if part else ''} to resolve "
                f"(interrupted: {', '.join(map(str, interrupted)) or 'none'}); nothing was changed"
            )
        await self.store.audit(actor, "batch.resolved", f"batch:{batch_id}", {"sent": sent, "part": part},
                               self.protocol.version)  # fmt: skip
        await self.store.resolve_part(batch_id, part, sent)
        if sent and not await self.store.count_parts(batch_id, status="sent", negate=True):
            return await self.mark_sent(batch_id, "resolved by operator", actor)
        return None

    async def flush_outbox(self) -> int:
        return await self.store.flush_outbox(self.publisher)

    def fault(self, point: str) -> None:
        """A named point of the send (after-prepare, after-send) where a crash test injects a fault by
        replacing this method (tests/crash_cli.py). Nothing in production reaches it: no setting or
        variable turns it on."""


__all__ = ["BatchResult", "DeliveryService"]
