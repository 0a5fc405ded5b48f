"""delivery's rows deleted on retention's request (its own schema only). A batch keeps its
metadata (ids, counts, times: the record of the transfer) but loses its members and any message."""

from __future__ import annotations

import asyncpg
from sais_shared.deletion import deleted
from sais_shared.events import DeletionRequested


async def delete_rows(conn: asyncpg.Connection, req: DeletionRequested) -> dict[str, int]:
    counts: dict[str, int] = {}
    if req.scope == "inbound-staging":
        return counts
    await deleted(conn, counts, "delivery.members", "DELETE FROM delivery.members WHERE key_id = ANY($1)", req.key_ids)
    everything = req.scope == "party-left"
    await deleted(
        conn,
        counts,
        "delivery.batch_members",
        "DELETE FROM delivery.batch_members WHERE $2 OR batch_id = ANY($1)",
        req.batch_ids,
        everything,
    )
    await deleted(
        conn,
        counts,
        "delivery.batches",
        "UPDATE delivery.batches SET purged_at=now(), message=NULL "
        "WHERE ($2 OR batch_id = ANY($1)) AND purged_at IS NULL",
        req.batch_ids,
        everything,
    )
    return counts
