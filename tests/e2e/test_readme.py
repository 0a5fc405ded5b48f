"""The README's "Operating it" block runs as written: every line but starting and stopping the local stack
(the test session's stack is shared), against this test's own database, topics and ports."""

import os
import re
import subprocess
from pathlib import Path

import asyncpg
import pytest

from tests.helpers import REPO, readme_block

pytestmark = pytest.mark.e2e
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# what the four services, started in the same shell, print beside the commands (uvicorn, aiokafka)
SERVER_LINE = re.compile(
    r"(Started server process|Waiting for application|Application (startup|shutdown)|Uvicorn running|"
    r"Shutting down|Heartbeat failed|Unclosed AIOKafka|consumer: <aiokafka)"
)


def operating_block() -> list[str]:
    return readme_block("## Operating it", "make stack-up")


def as_test_script(lines: list[str], own: dict[str, str]) -> str:
    """The block with the stack's start and stop left out and, right after the stack's environment is
    taken, this test's database, topic prefix, consumer groups and kernel-chosen HTTP ports."""
    out = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for line in lines:
        if line.startswith("make stack-up"):
            continue
        out.append(line.replace("; make stack-down", ""))
        if line.startswith("eval "):
            out += [f"export {k}='{v}'" for k, v in own.items()]
    return "\n".join(out) + "\n"


async def test_the_operating_block_runs_as_written(env):
    lines = operating_block()
    assert lines[-1].endswith("make stack-down") and any("-m sais_$s &" in x for x in lines)
    mine = ("SAIS_DATABASE_URL", "SAIS_TOPIC_PREFIX", "SAIS_TOPIC_PARTITIONS")
    own = {k: v for k, v in env.items() if k in mine or k.endswith("_GROUP_ID")} | {"SAIS_HTTP_PORT": "0"}
    done = subprocess.run(
        ["bash", "-c", as_test_script(lines, own)],
        cwd=REPO,
        # a fresh shell, as a person's: nothing of this session's SAIS_* but where the stack keeps its state
        env={k: v for k, v in os.environ.items() if not k.startswith("SAIS_") or k == "SAIS_STATE_DIR"}
        | {"COLUMNS": os.environ.get("README_COLUMNS", "80")},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    if os.environ.get("README_TRANSCRIPT"):  # to look at, or to paste into the README
        Path(os.environ["README_TRANSCRIPT"]).write_text(done.stdout)
    # what the commands said (the services, started in the same shell, log JSON lines beside them)
    said = " ".join(" ".join(x for x in done.stdout.splitlines() if not x.startswith("{")).split())
    assert "rows in 52 = accepted 49 + rejected 2 + out of scope 1" in said, said[:4000]
    assert re.search(r"batch [0-9a-f-]{36} → \S+@nhs\.net: sent", said), said[-3000:]
    assert "sharing SUSPENDED" in said and "sharing resumed" in said
    assert "9372000 Emscote Infant School" in said and "school not yet known: Rolled forward" in said  # names, words
    assert re.search(
        r"Out of scope: valid, not requested from this source.* 50 .*not requested .*year group 4", said
    ), said[:3000]
    assert re.search(
        r"batch:[0-9a-f-]{36} rule: 3 months after transfer \(§11\.1\) \(isp-11\.1[^)]*\) 1 data key destroyed", said
    ), said[-3000:]
    assert "certificate " in said and "audit trail intact" in said
    # At 80 columns (a terminal's default): nothing cut short, no id in two, times as a person reads them.
    shown = [x for x in done.stdout.splitlines() if not x.startswith("{") and not SERVER_LINE.match(x)]
    assert not [x for x in shown if "…" in x], [x for x in shown if "…" in x]
    cut = [x for x in shown for t in re.findall(r"(?<![0-9a-zA-Z])[0-9a-f]{8}-[0-9a-f-]*", x) if not UUID.fullmatch(t)]
    assert not cut, cut
    assert not [x for x in shown if re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", x)]  # no ISO 8601 times
    times = [t for x in shown for t in re.findall(r"\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?(?: \w+)?", x)]
    assert times and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d (GMT|BST)", t) for t in times), times
    conn = await asyncpg.connect(env["SAIS_DATABASE_URL"])
    try:
        actors = {r["actor"] for r in await conn.fetch("SELECT DISTINCT actor FROM shared.audit_log")}
        sent = await conn.fetchval("SELECT count(*) FROM delivery.batches WHERE status='sent'")
    finally:
        await conn.close()
    assert "Jo Bloggs" in actors and sent == 1  # the person named in the block is the one on record
