"""The README's first command: `make demo` runs `deploy/local/demo.py`, which must end with exit 0 and
every number agreeing. Here it runs against the test session's stack (left running, as the demo does
with a stack it did not start), with this test's own database, topics, consumer groups and ports."""

import os
import re
import subprocess
import sys
import uuid

import asyncpg
import pytest

from tests.helpers import REPO

pytestmark = pytest.mark.e2e


async def test_make_demo_runs_the_whole_pipeline_and_every_number_agrees(infra):
    run = f"t{uuid.uuid4().hex[:10]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAIS_") or k == "SAIS_STATE_DIR"} | {
        "SAIS_DEMO_DATABASE": f"demo_{run}",
        "SAIS_DEMO_TOPIC_PREFIX": run,  # the consumer groups' names follow it (the ACLs allow only those)
        "SAIS_HTTP_PORT": "0",
    }
    try:
        done = subprocess.run(
            [sys.executable, "deploy/local/demo.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
        )
        said = done.stdout
        assert done.returncode == 0, said[-4000:] + done.stderr[-2000:]
        assert "[stack] left running: it was running before the demo" in said
        assert re.search(r"Done in \d+s: every step happened and the numbers agree", said), said[-2000:]
        assert "DEMO FAILED" not in said
        # both windows reached the SAIS mailbox, decrypted and verified by openssl, and Mavis's rules passed
        assert len(re.findall(r"openssl: decrypted, (CMS )?Verification successful", said)) == 2, said
        assert "Mavis's import rules: pass" in said and "REFUSED" not in said
        assert "after the December transfer's deletion: cohort records held 0" in said
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(**infra.kafka)
        await admin.start()
        try:  # its topics went with it; the stack it did not start is still up
            assert not [t for t in await admin.list_topics() if t.startswith(f"{run}.")]
        finally:
            await admin.close()
    finally:
        conn = await asyncpg.connect(infra.pg_admin_dsn)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "demo_{run}" WITH (FORCE)')
        finally:
            await conn.close()
