"""ingest's rows deleted on retention's request (its own schema only)."""

from __future__ import annotations

import asyncpg
from sais_shared.deletion import deleted
from sais_shared.events import DeletionRequested


async def delete_rows(conn: asyncpg.Connection, req: DeletionRequested) -> dict[str, int]:
    counts: dict[str, int] = {}
    if req.scope == "inbound-staging":
        # Unfinished or refused inbound extracts, still sealed to the long-lived inbound key.
        counts["ingest.inbound_records"] = await conn.fetchval(
            "SELECT count(*) FROM ingest.inbound_records r JOIN ingest.inbound_extracts e USING (extract_ref) "
            "WHERE e.status <> 'ingested' AND e.updated_at::date < $1",
            req.staged_before,
        )
        await deleted(
            conn,
            counts,
            "ingest.inbound_extracts",
            "DELETE FROM ingest.inbound_extracts WHERE status <> 'ingested' AND updated_at::date < $1",
            req.staged_before,
        )
        return counts
    # the inbound extracts these came from, with anything a re-send staged since
    counts["ingest.inbound_records"] = await conn.fetchval(
        "SELECT count(*) FROM ingest.inbound_records r JOIN ingest.inbound_extracts e USING (extract_ref) "
        "WHERE e.extract_id = ANY($1)",
        req.extract_ids,
    )
    await deleted(
        conn,
        counts,
        "ingest.inbound_extracts",
        "DELETE FROM ingest.inbound_extracts WHERE extract_id = ANY($1)",
        req.extract_ids,
    )
    for table in ("row_problems", "dip_samples", "row_index"):
        await deleted(
            conn, counts, f"ingest.{table}", f"DELETE FROM ingest.{table} WHERE extract_id = ANY($1)", req.extract_ids
        )
    await deleted(
        conn,
        counts,
        "ingest.extracts",
        "UPDATE ingest.extracts SET purged_at=now() WHERE extract_id = ANY($1) AND purged_at IS NULL",
        req.extract_ids,
    )
    if req.scope == "party-left":
        await deleted(conn, counts, "ingest.inbound_records", "DELETE FROM ingest.inbound_records")
        await deleted(
            conn, counts, "ingest.inbound_extracts", "DELETE FROM ingest.inbound_extracts WHERE status <> 'ingested'"
        )
    return counts
