"""eligibility's rows deleted on retention's request (its own schema only)."""

from __future__ import annotations

import asyncpg
from sais_shared.deletion import deleted
from sais_shared.events import DeletionRequested

from .repository import lock_extracts


async def delete_rows(conn: asyncpg.Connection, req: DeletionRequested) -> dict[str, int]:
    """The records of these extracts; a child with no record left is gone from eligibility entirely."""
    counts: dict[str, int] = {}
    if req.scope == "inbound-staging":
        return counts
    await lock_extracts(conn, set(req.extract_ids), exclusive=True)  # waits for a batch of theirs in flight
    pupils = [
        r["pupil_id"]
        for r in await conn.fetch(
            "SELECT DISTINCT pupil_id FROM eligibility.records WHERE extract_id = ANY($1)", req.extract_ids
        )
    ]
    await deleted(
        conn,
        counts,
        "eligibility.records",
        "DELETE FROM eligibility.records WHERE extract_id = ANY($1)",
        req.extract_ids,
    )
    await deleted(
        conn,
        counts,
        "eligibility.extract_progress",
        "DELETE FROM eligibility.extract_progress WHERE extract_id = ANY($1)",
        req.extract_ids,
    )
    orphans = (
        [
            r["p"]
            for r in await conn.fetch(
                "SELECT p FROM unnest($1::uuid[]) p WHERE NOT EXISTS "
                "(SELECT 1 FROM eligibility.records r WHERE r.pupil_id = p)",
                pupils,
            )
        ]
        if pupils
        else []
    )
    await deleted(
        conn, counts, "eligibility.cohort", "DELETE FROM eligibility.cohort WHERE pupil_id = ANY($1)", orphans
    )
    await deleted(
        conn, counts, "eligibility.findings", "DELETE FROM eligibility.findings WHERE pupil_id = ANY($1)", orphans
    )
    return counts
