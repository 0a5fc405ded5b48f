"""Keeps delivery's view of the cohort from cohort events: latest revision per (programme, child)."""

from __future__ import annotations

import json

import asyncpg
from sais_shared.events import CohortMemberAdded, CohortMemberWithdrawn, CoverageChecked
from sais_shared.kafka import claim_new

UPSERT = (
    "INSERT INTO delivery.members(academic_year, programme, dose, pupil_id, status, revision, school_dfe, "
    "school_name, year_group, gender, source, reference_date, received_at, extract_ids, key_id, personal, "
    "window_source) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16::jsonb,$11) "
    "ON CONFLICT (academic_year, programme_key, pupil_id) DO UPDATE SET status=EXCLUDED.status, "
    "revision=EXCLUDED.revision, school_dfe=EXCLUDED.school_dfe, school_name=EXCLUDED.school_name, "
    "year_group=EXCLUDED.year_group, gender=EXCLUDED.gender, source=EXCLUDED.source, "
    "reference_date=EXCLUDED.reference_date, received_at=EXCLUDED.received_at, extract_ids=EXCLUDED.extract_ids, "
    "key_id=EXCLUDED.key_id, personal=EXCLUDED.personal, updated_at=now(), "
    # the window stays the one the child first came in through (a withdrawal carries no source)
    "window_source=CASE WHEN delivery.members.window_source = '' THEN EXCLUDED.window_source "
    "ELSE delivery.members.window_source END "
    "WHERE delivery.members.revision < EXCLUDED.revision"
)


async def apply_cohort_events(
    pool: asyncpg.Pool, events: list[CohortMemberAdded | CohortMemberWithdrawn | CoverageChecked]
) -> None:
    checks = [e for e in events if isinstance(e, CoverageChecked)]
    if checks:
        await apply_coverage(pool, checks)
    events = [e for e in events if not isinstance(e, CoverageChecked)]
    if not events:
        return
    added_keys = [e.personal.key_id for e in events if isinstance(e, CohortMemberAdded)]
    if added_keys:  # a replayed add whose data retention has since destroyed is not brought back
        gone = {
            r["key_id"]
            for r in await pool.fetch(
                "SELECT key_id FROM shared.wrapped_data_keys($1::uuid[]) WHERE wrapped IS NULL", added_keys
            )
        }
        events = [e for e in events if not (isinstance(e, CohortMemberAdded) and e.personal.key_id in gone)]
    async with pool.acquire() as conn, conn.transaction():
        fresh = await claim_new(conn, "delivery.processed", [e.event_id for e in events])
        rows = []
        for e in sorted((e for e in events if e.event_id in fresh), key=lambda e: e.revision):
            if isinstance(e, CohortMemberAdded):
                rows.append(
                    (
                        e.academic_year,
                        e.programme,
                        e.dose,
                        e.pupil_id,
                        "active",
                        e.revision,
                        e.school_dfe,
                        e.school_name,
                        e.year_group,
                        e.gender,
                        e.source,
                        e.reference_date,
                        e.received_at,
                        e.extract_ids,
                        e.personal.key_id,
                        e.personal.model_dump_json(),
                    )
                )
            else:  # a withdrawal keeps no personal data
                rows.append(
                    (
                        e.academic_year,
                        e.programme,
                        e.dose,
                        e.pupil_id,
                        "withdrawn",
                        e.revision,
                        "",
                        "",
                        "",
                        "",
                        "",
                        None,
                        None,
                        [],
                        None,
                        None,
                    )
                )
        for row in rows:  # in revision order: one statement per row keeps "latest wins" exact
            await conn.execute(UPSERT, *row)


async def apply_coverage(pool: asyncpg.Pool, checks: list[CoverageChecked]) -> None:
    """The latest coverage check per (academic year, protocol version); an older one never overwrites."""
    async with pool.acquire() as conn, conn.transaction():
        fresh = await claim_new(conn, "delivery.processed", [e.event_id for e in checks])
        for e in sorted((e for e in checks if e.event_id in fresh), key=lambda e: e.occurred_at):
            await conn.execute(
                "INSERT INTO delivery.coverage(academic_year, protocol_id, protocol_version, gaps, checked_at) "
                "VALUES ($1,$2,$3,$4::jsonb,$5) ON CONFLICT (academic_year, protocol_id, protocol_version) DO UPDATE "
                "SET gaps=EXCLUDED.gaps, checked_at=EXCLUDED.checked_at "
                "WHERE delivery.coverage.checked_at <= EXCLUDED.checked_at",
                e.academic_year,
                e.protocol_id,
                e.protocol_version,
                json.dumps([g.description for g in e.gaps]),
                e.occurred_at,
            )
