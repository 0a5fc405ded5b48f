"""The owner's side of deletion by events, written once for ingest, eligibility and delivery.

Retention publishes a :class:`DeletionRequested`; each owner deletes its own rows in one
transaction that also records the counts in ``<schema>.deletions``, then publishes a
:class:`DeletionConfirmed`. A redelivered request (a crash between commit and publish, a
rebalance) finds the stored counts and confirms again with the same event id: retention
certifies once, with the counts of the one deletion that happened.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import structlog

from .events import DeletionConfirmed, DeletionRequested, stable_id
from .kafka import ConsumerTuning, publish_many

log = structlog.get_logger("sais.deletion")

DeleteRows = Callable[[asyncpg.Connection, DeletionRequested], Awaitable[dict[str, int]]]


async def confirm_deletions(
    pool: asyncpg.Pool,
    *,
    service: str,
    schema: str,
    requests: list[DeletionRequested],
    delete: DeleteRows,
    publisher: Any,
    now: Callable[[], Any],
) -> list[DeletionConfirmed]:
    confirmations: list[DeletionConfirmed] = []
    for req in requests:
        if service not in req.owners:
            continue
        async with pool.acquire() as conn, conn.transaction():
            stored = await conn.fetchval(
                f"SELECT rows_deleted FROM {schema}.deletions WHERE request_id=$1", req.request_id
            )
            if stored is None:
                counts = await delete(conn, req)
                await conn.execute(
                    f"INSERT INTO {schema}.deletions(request_id, subject, rows_deleted) VALUES ($1, $2, $3::jsonb)",
                    req.request_id,
                    req.subject,
                    json.dumps(counts),
                )
                log.info("deletion.done", subject=req.subject, request_id=str(req.request_id), rows=counts)
            else:
                counts = json.loads(stored)
        confirmations.append(
            DeletionConfirmed(
                event_id=stable_id("deletion-confirmed", req.request_id, service),
                occurred_at=now(),
                request_id=req.request_id,
                service=service,
                rows_deleted=counts,
            )
        )
    await publish_many(publisher, ((c.request_id.bytes, c) for c in confirmations))
    return confirmations


async def deleted(conn: asyncpg.Connection, counts: dict[str, int], table: str, sql: str, *args: Any) -> None:
    """Run a DELETE/UPDATE and add its row count to ``counts[table]``."""
    status = await conn.execute(sql, *args)
    counts[table] = counts.get(table, 0) + int(status.rsplit(" ", 1)[1])


def register_deletion_consumer(
    broker: Any,
    *,
    topics: Any,
    group_id: str,
    service: str,
    schema: str,
    delete: DeleteRows,
    pool: Callable[[], asyncpg.Pool],
    now: Callable[[], Any],
    tuning: ConsumerTuning | None = None,
) -> None:
    """Subscribe an owner to retention's deletion requests and give it a confirmation publisher; ``tuning``
    is the consumer's (:func:`sais_shared.kafka.consumer_tuning`)."""
    from .kafka import batch_consumer

    publisher = broker.publisher(
        topics.deletion_confirmed_by(service),
        schema=DeletionConfirmed,
        title=f"{topics.deletion_confirmed_by(service)}:publish",
        description=f"{service}'s confirmation of a deletion request: rows deleted per table of its own schema. "
        f"Only {service} may write this topic. Key: request id.",
    )

    async def handle(requests: list[DeletionRequested]) -> None:
        await confirm_deletions(
            pool(), service=service, schema=schema, requests=requests, delete=delete, publisher=publisher, now=now
        )

    batch_consumer(
        broker,
        topic=topics.deletion_requested,
        group_id=group_id,
        parse=DeletionRequested.model_validate_json,
        payload=DeletionRequested,
        handle=handle,
        dead_letter_topic=topics.dead_letter,
        max_records=50,
        tuning=tuning,
        title=f"{topics.deletion_requested}:{service}",
        description=f"Deletes {service}'s own rows for retention and confirms with counts per table.",
    )
