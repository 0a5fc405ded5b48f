"""eligibility's read functions for ``sais status``, SAR and the quality view (callers pass a pool
opened as eligibility's role; sealed fields are opened with the key store, never by SQL)."""

from __future__ import annotations

from typing import Any

import asyncpg
from sais_shared.crypto import Sealed
from sais_shared.errors import KeyDestroyedError
from sais_shared.events import PupilPersonal
from sais_shared.keystore import KeyStore

from .domain.model import Record, school_flags


async def active_cohort_sizes(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in await pool.fetch(
            "SELECT academic_year, programme, count(*) n FROM eligibility.cohort WHERE status='active' "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        )
    ]


async def work_in_hand(pool: asyncpg.Pool) -> dict[str, int]:
    """What eligibility will still publish without new input: extracts whose records are all in but not yet
    released (or withdrawn, not yet taken back), and cohort events in its outbox."""
    r = await pool.fetchrow(
        "SELECT (SELECT count(*) FROM eligibility.extracts e LEFT JOIN eligibility.extract_progress p "
        "USING (extract_id) WHERE e.reconciled_at IS NULL AND (e.status = 'withdrawn' OR (e.status = 'completed' "
        "AND e.accepted = coalesce(p.recorded, 0)))) AS extracts_to_release, "
        "(SELECT count(*) FROM eligibility.outbox) AS outbox"
    )
    return {"eligibility extracts to release": r["extracts_to_release"], "eligibility outbox": r["outbox"]}


async def quality(pool: asyncpg.Pool, academic_year: str, la_codes: list[str]) -> dict[str, Any]:
    """Cohort counts per programme × school × year group, the schools register's flags on the cohort's
    schools, findings, and extracts not yet reconciled."""
    counts = await pool.fetch(
        "SELECT programme, school_dfe, year_group, count(*) n FROM eligibility.cohort "
        "WHERE academic_year=$1 AND status='active' GROUP BY 1,2,3 ORDER BY 1,2,3",
        academic_year,
    )
    findings = await pool.fetch(
        "SELECT split_part(code, ':', 1) AS code, school_dfe, count(*) n FROM eligibility.findings "
        "WHERE academic_year=$1 GROUP BY 1,2 ORDER BY 1,2",
        academic_year,
    )
    incomplete = await pool.fetch(  # completed extracts whose pupil events have not all come: held
        "SELECT e.extract_id, e.accepted, coalesce(p.recorded, 0) received FROM eligibility.extracts e "
        "LEFT JOIN eligibility.extract_progress p USING (extract_id) "
        "WHERE e.academic_year=$1 AND e.reconciled_at IS NULL AND e.status = 'completed'",
        academic_year,
    )
    schools = await pool.fetch(
        "SELECT c.school_dfe, c.year_group, count(*) n, s.dfe IS NOT NULL AS registered, s.status, s.la_code, "
        "s.first_year, s.last_year FROM eligibility.cohort c LEFT JOIN shared.schools s ON s.dfe = c.school_dfe "
        "WHERE c.academic_year=$1 AND c.status='active' AND c.school_dfe <> '' "
        "GROUP BY c.school_dfe, c.year_group, s.dfe, s.status, s.la_code, s.first_year, s.last_year",
        academic_year,
    )
    return {
        "cohort": [dict(r) for r in counts],
        "schools": school_flags([dict(r) for r in schools], la_codes),
        "findings": [dict(r) for r in findings],
        "incomplete_extracts": [{**dict(r), "extract_id": str(r["extract_id"])} for r in incomplete],
    }


async def child_records(pool: asyncpg.Pool, keys: KeyStore, match_key: str) -> dict[str, Any]:
    """Everything eligibility holds about one child (by keyed match index), opened with the data keys."""
    records = await pool.fetch("SELECT * FROM eligibility.records WHERE match_key=$1 ORDER BY received_at", match_key)
    out = [await _opened(r, keys) for r in records]
    pupil_ids = sorted({r["pupil_id"] for r in records}, key=str)
    rows = (
        await pool.fetch("SELECT * FROM eligibility.cohort WHERE pupil_id = ANY($1) ORDER BY programme", pupil_ids)
        if pupil_ids
        else []
    )
    shown = ("academic_year", "programme", "status", "school_dfe", "year_group")
    cohorts = [{k: c[k] for k in shown} for c in rows]
    return {
        "records": out,
        "cohorts": cohorts,
        "pupil_ids": pupil_ids,
        "extract_ids": sorted({r["extract_id"] for r in records}, key=str),
    }


async def _opened(r: asyncpg.Record, keys: KeyStore) -> dict[str, Any]:
    """A record as a subject access request shows it: its clear fields and its personal ones opened."""
    sealed = Sealed.model_validate_json(r["personal"])
    details: Any
    try:
        key = (await keys.get_many([sealed.key_id]))[sealed.key_id]
        details = key.open_model(sealed, PupilPersonal, Record.of(r).aad()).model_dump(mode="json")
    except KeyDestroyedError:
        details = "deleted (data key destroyed)"
    return {
        "source": r["source"],
        "reference_date": str(r["reference_date"]),
        "received_at": str(r["received_at"]),
        **{k: r[k] for k in ("school_dfe", "school_name", "year_group", "gender")},
        "extract_id": str(r["extract_id"]),
        "current": r["active"],
        "details": details,
    }
