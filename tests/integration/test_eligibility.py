"""eligibility on the real broker and database: thousands of generated children against an
independent oracle; a replacement dataset withdraws and updates, and leaves the unchanged alone."""

import csv
import io

import asyncpg
import pytest
from faststream import TestApp
from sais_eligibility.app import build_app
from sais_eligibility.config import EligibilitySettings
from sais_shared.events import (
    CohortMemberAdded,
    CohortMemberWithdrawn,
)
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import REPO, cohort_member_events, oracle
from tests.integration.test_pipeline_services import fetchval, ingest
from tests.synthetic import REFERENCE_DATES, write_samples

pytestmark = pytest.mark.integration


async def test_cohorts_match_an_independent_oracle_on_thousands_of_children(settings_env, tmp_path):
    files = write_samples(tmp_path, seed=99, per_year=450)
    rows = sum(len(p.read_bytes().splitlines()) - 1 for p in files.values())
    assert rows > 4000
    dsn = settings_env["SAIS_DATABASE_URL"]
    async with TestApp(build_app(EligibilitySettings())):
        for source, path in files.items():
            await ingest(path, source, REFERENCE_DATES[source].isoformat())
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 4 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            timeout=120,
            what="reconciled",
        )
    conn = await asyncpg.connect(dsn)
    try:
        got = {
            r["programme"]: r["n"]
            for r in await conn.fetch(
                "SELECT programme, count(*) n FROM eligibility.cohort WHERE status='active' GROUP BY 1"
            )
        }
    finally:
        await conn.close()
    assert got == oracle(files)


async def test_replacement_dataset_withdraws_updates_and_leaves_unchanged_alone(settings_env, infra, tmp_path):
    dsn = settings_env["SAIS_DATABASE_URL"]
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    may = REPO / "data" / "samples" / "may-census-2017.csv"
    async with TestApp(build_app(EligibilitySettings())):
        await ingest(may, "summer-census", "2017-05-18")
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 1 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            what="first extract",
        )
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 0 FROM eligibility.outbox"), what="outbox")
        before = len(await cohort_member_events(infra.kafka, topics.cohort))

        # The corrected file: the first child is gone, the second moved school, everyone else unchanged.
        table = list(csv.reader(io.StringIO(may.read_text(encoding="utf-8-sig"))))
        header, moved, rest = table[0], table[2], table[3:]  # table[1]: the child who is gone
        moved = list(moved)
        moved[header.index("School DfE Number")], moved[header.index("School Name")] = "9372999", "Newbury Primary"
        corrected = tmp_path / "may-census-2017-corrected.csv"
        with open(corrected, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([header, moved, *rest])
        rep = await ingest(corrected, "summer-census", "2017-05-18")
        assert rep.supersedes is not None
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 2 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            what="replacement reconciled",
        )
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 0 FROM eligibility.outbox"), what="outbox")

    events = await cohort_member_events(infra.kafka, topics.cohort)
    assert len(events) == before + 2  # unchanged children produced no new events
    fresh = [e for e in events if e.revision == 2]
    withdrawn = [e for e in fresh if isinstance(e, CohortMemberWithdrawn)]
    updated = [e for e in fresh if isinstance(e, CohortMemberAdded)]
    assert len(withdrawn) == 1 and len(updated) == 1, [type(e).__name__ for e in fresh]
    assert updated[0].change == "updated" and updated[0].school_dfe == "9372999"
    assert updated[0].revision == 2 and withdrawn[0].revision == 2
    assert rep.extract_id in updated[0].extract_ids  # lineage names the replacement
    assert await fetchval(dsn, "SELECT count(*) FROM eligibility.cohort WHERE status='withdrawn'") == 1


HEAD = "School DfE Number,School Name,Year Group,Surname,Forename,DOB,Gender,Address Line 1,Postcode\n"


async def test_data_quality_findings_are_reported_not_hidden(settings_env, tmp_path):
    import json
    import os
    import subprocess

    dsn = settings_env["SAIS_DATABASE_URL"]
    october = tmp_path / "oct.csv"
    october.write_text(
        HEAD + "9374001,Myton School,8,Hall,Robin,01/02/2005,,1 Mill Lane,CV34 5AB\n"
        "9374001,Myton School,9,Khan,Amira,01/02/2003,F,2 Mill Lane,CV34 5AB\n"
    )
    may = tmp_path / "may.csv"
    may.write_text(
        HEAD + "9372001,Emscote Infant School,2,Smith,Jack,01/03/2010,M,1 High St,CV34 4RL\n"
        "9372002,Telford Infant School,2,Smith,Jack,01/03/2010,M,9 Low Rd,CV32 5JX\n"
    )
    transfer = tmp_path / "y3.csv"
    transfer.write_text(HEAD + "9372003,Brookhurst Junior School,3,Smith,Jack,01/03/2010,M,5 Elm Rd,CV8 2YN\n")
    async with TestApp(build_app(EligibilitySettings())):
        await ingest(october, "autumn-census", "2017-10-05")
        await ingest(may, "summer-census", "2017-05-18")
        await ingest(transfer, "admissions-year3-transfer", "2017-04-18")
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 3 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            what="reconciled",
        )
    r = subprocess.run(
        [str(REPO / ".venv" / "bin" / "sais"), "eligibility", "quality", "2017/18", "--json"],
        env={**os.environ, **settings_env},
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    findings = {(f["code"], f["school_dfe"]): f["n"] for f in view["findings"]}
    assert findings[("unknown-sex", "9374001")] == 1  # Y8, sex not known: not in girls-only HPV
    assert findings[("out-of-year-group", "9374001")] == 1  # taught in Y9, born for Y10
    assert findings[("ambiguous-match", "9372003")] == 1  # two Jack Smiths born 1/3/2010, a third postcode
    cohort = {(c["programme"], c["school_dfe"]): c["n"] for c in view["cohort"]}
    # the two Jacks at infant schools go into Year 3 elsewhere: in the cohort with the school not yet known,
    # and each a finding at the infant school they left, for the data officer
    assert cohort[("flu", "9372003")] == 1 and cohort[("flu", "")] == 2 and ("flu", "9372001") not in cohort
    assert findings[("school-not-yet-known", "9372001")] == 1 and findings[("school-not-yet-known", "9372002")] == 1
    assert ("hpv-dose-1", "9374001") not in cohort and cohort[("hpv-dose-2", "9374001")] == 1


async def _a_second_extract_recorded_while_the_first_is_held(dsn: str, held, go, not_moved: str):
    """The May census ingested and its release held (``held`` is set by the test's hold); then the reception
    admissions ingested, and recorded and completed by the consumers meanwhile; ``not_moved`` (SQL, a count)
    is still 0; then the hold let go (``go``) and both extracts released. The second extract's report."""
    import asyncio

    await ingest("may-census-2017.csv", "summer-census", "2017-05-18")
    await asyncio.wait_for(held.wait(), 60)
    second = await ingest("admissions-reception-2017.csv", "admissions-reception", "2017-04-18")

    async def second_recorded_and_completed():
        return await fetchval(
            dsn,
            "SELECT e.completed_at IS NOT NULL AND p.recorded = e.accepted FROM eligibility.extracts e "
            "JOIN eligibility.extract_progress p USING (extract_id) WHERE e.extract_id = $1",
            second.extract_id,
        )

    await wait_until(second_recorded_and_completed, what="the second extract recorded while the first is held")
    assert await fetchval(dsn, not_moved) == 0
    go.set()
    await wait_until(
        lambda: fetchval(dsn, "SELECT count(*) = 2 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
        what="both released",
    )
    return second


async def test_the_consumers_go_on_recording_while_an_extract_is_released(settings_env, monkeypatch):
    """A release walks a whole extract (a million children at the largest): it runs beside the consumers, so
    no batch waits on it past the broker's poll interval. Here the first release is held until the second
    extract has been recorded and completed by the consumers."""
    import asyncio

    from sais_eligibility.service_layer.handlers import EligibilityService

    walking, go, walked = asyncio.Event(), asyncio.Event(), []
    real = EligibilityService._walk

    async def first_walk_held(self, year, ready):
        if not walked:
            walked.append(ready.extract_id)
            walking.set()
            await go.wait()
        return await real(self, year, ready)

    monkeypatch.setattr(EligibilityService, "_walk", first_walk_held)
    async with TestApp(build_app(EligibilitySettings())):
        second = await _a_second_extract_recorded_while_the_first_is_held(
            settings_env["SAIS_DATABASE_URL"],
            walking,
            go,
            "SELECT count(*) FROM eligibility.extracts WHERE reconciled_at IS NOT NULL",
        )
    assert walked and walked[0] != second.extract_id


async def test_the_consumers_go_on_recording_while_a_chunk_of_a_release_is_being_worked(settings_env, monkeypatch):
    """A chunk of a walk holds the year's lock shared, as a batch does, not exclusively: the consumers record
    and complete a second extract of the same year while a chunk of the first one's release is held open in
    its transaction (its locks taken). With the lock exclusive, every batch of the year waited for each chunk."""
    import asyncio

    from sais_eligibility.service_layer.handlers import EligibilityService

    inside, go, held = asyncio.Event(), asyncio.Event(), []
    real = EligibilityService._recompute

    async def first_chunk_held(self, repo, year, pupil_ids, why=None):
        if not held:
            held.append(len(pupil_ids))
            inside.set()
            await go.wait()
        return await real(self, repo, year, pupil_ids, why=why)

    monkeypatch.setattr(EligibilityService, "_recompute", first_chunk_held)
    async with TestApp(build_app(EligibilitySettings())):
        await _a_second_extract_recorded_while_the_first_is_held(
            settings_env["SAIS_DATABASE_URL"],
            inside,
            go,
            "SELECT count(*) FROM eligibility.extracts WHERE released_through IS NOT NULL",
        )
    assert held
