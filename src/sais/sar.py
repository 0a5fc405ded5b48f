"""Subject access requests (ISP §13): everything held about one child, across every service.

Given names and date of birth, the child's keyed match index finds their records (no clear-text
search); each is opened with its extract's data key. The export lists the extracts the child
came from, the cohorts they are in, the batches they were sent in (when, to whom) and when the
data will be or was deleted. The request and its answer are audited — by ids and counts only.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from sais_delivery import queries as delivery
from sais_eligibility import queries as eligibility
from sais_ingest import queries as ingest
from sais_retention import queries as retention
from sais_shared.keystore import audit

from .owners import Owners


async def subject_access(
    owners: Owners, *, forename: str, surname: str, date_of_birth: date, actor: str
) -> dict[str, Any]:
    """Each service answers for its own data: eligibility finds and opens the child's records,
    delivery the batches that carried them, ingest the extracts, retention the deletion dates."""
    request_id = uuid.uuid4()
    keys = owners.keys()
    match_key = keys.kek.blind_index(forename, surname, date_of_birth.isoformat())
    held = await eligibility.child_records(owners.eligibility, keys, match_key)
    batches = await delivery.batches_carrying(owners.delivery, held["pupil_ids"]) if held["pupil_ids"] else []
    extracts = await ingest.extracts_by_id(owners.ingest, held["extract_ids"]) if held["extract_ids"] else []
    subjects = [f"batch:{b['batch_id']}" for b in batches] + [f"extract:{e}" for e in held["extract_ids"]]
    out: dict[str, Any] = {
        "request_id": str(request_id),
        "records": held["records"],
        "cohorts": held["cohorts"],
        "batches": [
            {
                "batch_id": str(b["batch_id"]),
                "window": b["window_name"],
                "academic_year": b["academic_year"],
                "sent_to": b["recipient"],
                "status": b["status"],
                "sent_at": str(b["sent_at"]),
                "delete_by": str(b["delete_by"]),
            }
            for b in batches
        ],
        "extracts": [
            {
                "extract_id": str(e["extract_id"]),
                "source": e["source"],
                "reference_date": str(e["reference_date"]),
                "file_name": e["file_name"],
                "originator": e["originator"],
                "ingested_at": str(e["started_at"]),
            }
            for e in extracts
        ],
        "deletion": [
            {
                "subject": s["subject"],
                "delete_on": str(s["due_on"]),
                "deleted_at": str(s["executed_at"]) if s["executed_at"] else None,
            }
            for s in (await retention.schedule_for(owners.retention, subjects) if subjects else [])
        ],
    }
    await audit(
        owners.eligibility,
        actor,
        "sar.answered",
        f"sar:{request_id}",
        {"records": len(out["records"]), "batches": len(out["batches"]), "extracts": len(out["extracts"])},
        owners.protocol.version,
    )
    return out


def render(answer: dict[str, Any]) -> str:
    lines = [f"Subject access request {answer['request_id']} (ISP §13)", ""]
    if not answer["records"]:
        lines.append("No personal data about this child is held.")
        return "\n".join(lines) + "\n"
    lines.append("Records held:")
    for r in answer["records"]:
        lines.append(
            f"  - from {r['source']} (reference date {r['reference_date']}, received {r['received_at']}), "
            f"{r['school_name']} ({r['school_dfe']}), year {r['year_group']}, gender {r['gender']}"
            f"{'' if r['current'] else ' [replaced by a later dataset]'}"
        )
        d = r["details"]
        lines.append(
            f"      {d}"
            if isinstance(d, str)
            else f"      {d['forename']} {d['surname']}, born {d['date_of_birth']}, "
            f"{', '.join(d['address_lines'])}, {d['postcode']}"
        )
    lines += ["", "Immunisation programme cohorts:"]
    lines += [f"  - {c['academic_year']} {c['programme']}: {c['status']}" for c in answer["cohorts"]] or ["  (none)"]
    lines += ["", "Shared with the SAIS:"]
    lines += [
        f"  - batch {b['batch_id']} ({b['window']} {b['academic_year']}) sent {b['sent_at']} to {b['sent_to']}; "
        f"to be deleted by {b['delete_by']}"
        for b in answer["batches"]
    ] or ["  (not shared)"]
    lines += ["", "Deletion schedule:"]
    lines += [
        f"  - {d['subject']}: delete on {d['delete_on']}" + (f", deleted {d['deleted_at']}" if d["deleted_at"] else "")
        for d in answer["deletion"]
    ] or ["  (none)"]
    return "\n".join(lines) + "\n"
