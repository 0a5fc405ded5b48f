"""Two instances of a consumer service share the work without duplicating effects."""

import pytest
from faststream import TestApp
from sais_eligibility.app import build_app
from sais_eligibility.config import EligibilitySettings
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.helpers import cohort_member_events, oracle
from tests.integration.test_pipeline_services import fetchval, ingest
from tests.synthetic import REFERENCE_DATES, write_samples

pytestmark = pytest.mark.integration


async def test_two_eligibility_instances_share_partitions_and_never_duplicate(settings_env, infra, tmp_path):
    files = write_samples(tmp_path, seed=7, per_year=150)
    dsn = settings_env["SAIS_DATABASE_URL"]
    topics = Topics(settings_env["SAIS_TOPIC_PREFIX"])
    a, b = build_app(EligibilitySettings()), build_app(EligibilitySettings())
    async with TestApp(a), TestApp(b):
        for source, path in files.items():
            await ingest(path, source, REFERENCE_DATES[source].isoformat())
        await wait_until(
            lambda: fetchval(dsn, "SELECT count(*) = 4 FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            timeout=120,
            what="reconciled",
        )
        await wait_until(lambda: fetchval(dsn, "SELECT count(*) = 0 FROM eligibility.outbox"), what="outbox drained")
        assigned = [_assigned(app) for app in (a, b)]
    # both instances were given partitions of the pupil topic (2 partitions, 2 instances)
    assert all(assigned) and not (assigned[0] & assigned[1]), assigned

    events = await cohort_member_events(infra.kafka, topics.cohort)
    ids = [e.event_id for e in events]
    assert len(ids) == len(set(ids))  # no cohort event emitted twice
    got = {}
    for e in {(e.programme, e.dose, e.pupil_id): e for e in sorted(events, key=lambda e: e.revision)}.values():
        key = e.programme if e.dose is None else f"{e.programme}-dose-{e.dose}"
        got[key] = got.get(key, 0) + 1
    assert got == oracle(files)


def _assigned(app) -> set[tuple[str, int]]:
    parts = set()
    for sub in app.broker.subscribers:
        consumer = getattr(sub, "consumer", None)
        if consumer is not None and "pupil-recorded" in str(getattr(sub, "topics", "")) + str(sub):
            parts |= {(tp.topic, tp.partition) for tp in consumer.assignment()}
    return parts
