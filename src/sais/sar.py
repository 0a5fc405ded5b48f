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

import asyncpg
from sais_shared.crypto import Sealed
from sais_shared.errors import KeyDestroyedError
from sais_shared.events import PupilPersonal, pupil_aad
from sais_shared.keystore import KeyStore, audit


async def _exists(conn: asyncpg.Connection, table: str) -> bool:
    return await conn.fetchval("SELECT to_regclass($1)", table) is not None


async def subject_access(pool: asyncpg.Pool, keys: KeyStore, *, forename: str, surname: str, date_of_birth: date,
                         actor: str, protocol_version: str) -> dict[str, Any]:
    request_id = uuid.uuid4()
    match_key = keys.kek.blind_index(forename, surname, date_of_birth.isoformat())
    out: dict[str, Any] = {"request_id": str(request_id), "records": [], "cohorts": [], "batches": [],
                           "extracts": [], "deletion": []}
    async with pool.acquire() as conn:
        records = await conn.fetch("SELECT * FROM eligibility.records WHERE match_key=$1 ORDER BY received_at",
                                   match_key) if await _exists(conn, "eligibility.records") else []
        pupil_ids = sorted({r["pupil_id"] for r in records}, key=str)
        extract_ids = sorted({r["extract_id"] for r in records}, key=str)
        for r in records:
            sealed = Sealed.model_validate_json(r["personal"])
            try:
                key = (await keys.get_many([sealed.key_id]))[sealed.key_id]
                personal = key.open_model(sealed, PupilPersonal, pupil_aad(
                    r["extract_id"], r["record_id"], source=r["source"], reference_date=r["reference_date"],
                    school_dfe=r["school_dfe"], school_name=r["school_name"], year_group=r["recorded_year_group"],
                    gender=r["gender"], match_key=r["match_key"]))
                details = personal.model_dump(mode="json")
            except KeyDestroyedError:
                details = "deleted (data key destroyed)"
            out["records"].append({"source": r["source"], "reference_date": str(r["reference_date"]),
                                   "received_at": str(r["received_at"]), "school_dfe": r["school_dfe"],
                                   "school_name": r["school_name"], "year_group": r["year_group"],
                                   "gender": r["gender"], "extract_id": str(r["extract_id"]),
                                   "current": r["active"], "details": details})
        if pupil_ids and await _exists(conn, "eligibility.cohort"):
            out["cohorts"] = [{"academic_year": c["academic_year"], "programme": c["programme"], "status": c["status"],
                               "school_dfe": c["school_dfe"], "year_group": c["year_group"]}
                              for c in await conn.fetch("SELECT * FROM eligibility.cohort WHERE pupil_id = ANY($1) "
                                                        "ORDER BY programme", pupil_ids)]
        batch_ids = []
        if pupil_ids and await _exists(conn, "delivery.batches"):
            for b in await conn.fetch("SELECT batch_id, window_name, academic_year, recipient, status, sent_at, "
                                      "delete_by FROM delivery.batches WHERE pupil_ids && $1 ORDER BY prepared_at",
                                      pupil_ids):
                batch_ids.append(b["batch_id"])
                out["batches"].append({"batch_id": str(b["batch_id"]), "window": b["window_name"],
                                       "academic_year": b["academic_year"], "sent_to": b["recipient"],
                                       "status": b["status"], "sent_at": str(b["sent_at"]),
                                       "delete_by": str(b["delete_by"])})
        if extract_ids and await _exists(conn, "ingest.extracts"):
            out["extracts"] = [{"extract_id": str(e["extract_id"]), "source": e["source"],
                                "reference_date": str(e["reference_date"]), "file_name": e["file_name"],
                                "originator": e["originator"], "ingested_at": str(e["started_at"])}
                               for e in await conn.fetch("SELECT * FROM ingest.extracts WHERE extract_id = ANY($1)",
                                                         extract_ids)]
        if await _exists(conn, "retention.schedule"):
            subjects = [f"batch:{b}" for b in batch_ids] + [f"extract:{e}" for e in extract_ids]
            out["deletion"] = [{"subject": s["subject"], "delete_on": str(s["due_on"]),
                                "deleted_at": str(s["executed_at"]) if s["executed_at"] else None}
                               for s in await conn.fetch("SELECT * FROM retention.schedule WHERE subject = ANY($1) "
                                                         "ORDER BY due_on", subjects)]
        await audit(conn, actor, "sar.answered", f"sar:{request_id}",
                    {"records": len(out["records"]), "batches": len(out["batches"]),
                     "extracts": len(out["extracts"])}, protocol_version)
    return out


def render(answer: dict[str, Any]) -> str:
    lines = [f"Subject access request {answer['request_id']} (ISP §13)", ""]
    if not answer["records"]:
        lines.append("No personal data about this child is held.")
        return "\n".join(lines) + "\n"
    lines.append("Records held:")
    for r in answer["records"]:
        lines.append(f"  - from {r['source']} (reference date {r['reference_date']}, received {r['received_at']}), "
                     f"{r['school_name']} ({r['school_dfe']}), year {r['year_group']}, gender {r['gender']}"
                     f"{'' if r['current'] else ' [replaced by a later dataset]'}")
        d = r["details"]
        lines.append(f"      {d}" if isinstance(d, str) else
                     f"      {d['forename']} {d['surname']}, born {d['date_of_birth']}, "
                     f"{', '.join(d['address_lines'])}, {d['postcode']}")
    lines += ["", "Immunisation programme cohorts:"]
    lines += [f"  - {c['academic_year']} {c['programme']}: {c['status']}" for c in answer["cohorts"]] or ["  (none)"]
    lines += ["", "Shared with the SAIS:"]
    lines += [f"  - batch {b['batch_id']} ({b['window']} {b['academic_year']}) sent {b['sent_at']} to {b['sent_to']}; "
              f"to be deleted by {b['delete_by']}" for b in answer["batches"]] or ["  (not shared)"]
    lines += ["", "Deletion schedule:"]
    lines += [f"  - {d['subject']}: delete on {d['delete_on']}" + (f", deleted {d['deleted_at']}" if d["deleted_at"]
              else "") for d in answer["deletion"]] or ["  (none)"]
    return "\n".join(lines) + "\n"
