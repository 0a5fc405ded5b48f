"""Monitoring proven on the real tools: Debian's Prometheus scrapes the four running services and
evaluates deploy/monitoring/alerts.yml; the scraped series agree with what was ingested; every
Grafana panel's query returns data during a pipeline run; a SIGKILLed service's alert goes pending,
then firing."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.parse
import urllib.request

import pytest
import yaml
from sais_shared.topics import Topics

from tests.conftest import wait_until
from tests.e2e.test_resilience import start
from tests.helpers import REPO, free_port

pytestmark = pytest.mark.e2e
MON = REPO / "deploy" / "monitoring"
SERVICES = ("ingest", "eligibility", "delivery", "retention")
DOWN_FOR = "3s"  # SaisServiceDown's `for: 5m`, shortened in this test's copy of the rules (promtool tests the 5m)


def prometheus_query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def dashboard_queries() -> list[tuple[str, str]]:
    d = json.loads((MON / "grafana" / "dashboards" / "sais-pipeline.json").read_text())
    return [(p["title"], t["expr"]) for p in d["panels"] for t in p.get("targets", []) if t.get("expr")]


async def test_prometheus_scrapes_the_services_alerts_fire_and_every_panel_has_data(env, infra, tmp_path):
    prometheus = shutil.which("prometheus")
    assert prometheus, "Debian's prometheus package is missing (deploy/local/stack.py installs it)"
    ports = {svc: free_port() for svc in SERVICES}
    prom_port = free_port()

    rules = yaml.safe_load((MON / "alerts.yml").read_text())
    for r in rules["groups"][0]["rules"]:
        if r["alert"] == "SaisServiceDown":
            r["for"] = DOWN_FOR
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "alerts.yml")],
                "scrape_configs": [
                    {
                        "job_name": "sais",
                        "static_configs": [{"targets": [f"127.0.0.1:{p}" for p in ports.values()]}],
                    }
                ],
            }
        )
    )
    run_env = {**env, "SAIS_METRICS_INTERVAL_S": "1", "SAIS_RETENTION_INTERVAL_S": "2"}
    procs = {svc: start(svc, {**run_env, "SAIS_HTTP_PORT": str(port)}, tmp_path) for svc, port in ports.items()}
    prom = subprocess.Popen(
        [prometheus, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom_port}"],
        stdout=open(tmp_path / "prometheus.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,  # noqa: SIM115 - a child process's log, open as long as it runs
    )  # fmt: skip
    topics = Topics(env["SAIS_TOPIC_PREFIX"])
    q = lambda expr: prometheus_query(prom_port, expr)

    async def value(expr: str) -> float | None:
        try:
            result = q(expr)
        except OSError:  # Prometheus still starting
            return None
        return float(result[0]["value"][1]) if result else None

    try:
        await wait_until(
            lambda: _equals(value, 'count(up{job="sais"} == 1)', 4),
            timeout=90,
            what="Prometheus scraping four services",
        )

        # A May census arrives as events from an upstream system: the ingest service validates it
        # (rejections included), eligibility consumes what it published.
        sys.path.insert(0, str(REPO / "deploy" / "local"))
        import stack

        may = REPO / "data" / "samples" / "may-census-2017.csv"
        rows = list(csv.DictReader(may.read_text(encoding="utf-8-sig").splitlines()))
        await asyncio.to_thread(stack.publish_inbound, env, rows, extract_ref="mon-may", source="summer-census",
                                reference_date="2017-05-18", originator="MIS (test)")  # fmt: skip
        from tests.e2e.test_resilience import count

        dsn = env["SAIS_DATABASE_URL"]
        await wait_until(
            lambda: count(dsn, "SELECT count(*) FROM eligibility.extracts WHERE reconciled_at IS NOT NULL"),
            timeout=120,
            what="the extract reconciled",
        )
        accepted = await count(dsn, "SELECT sum(accepted) FROM ingest.extracts")
        assert accepted > 0

        # What Prometheus scraped agrees with what was ingested: every accepted row was published by
        # ingest and consumed by eligibility.
        consumed = f'sum(sais_records_consumed_total{{service="sais-eligibility", topic="{topics.pupil_recorded}"}})'
        published = f'sum(sais_records_published_total{{service="sais-ingest", topic="{topics.pupil_recorded}"}})'
        await wait_until(lambda: _equals(value, consumed, accepted), timeout=30, what="records consumed scraped")
        await wait_until(lambda: _equals(value, published, accepted), timeout=30, what="records published scraped")
        rows_accepted = 'sum(sais_ingest_rows_total{source="summer-census", outcome="accepted"})'
        await wait_until(lambda: _equals(value, rows_accepted, accepted), timeout=30, what="ingest rows scraped")
        # lag from committed offsets: the group has committed everything it consumed
        group_lag = f'sum(sais_consumer_group_lag{{group="{env["SAIS_ELIGIBILITY_GROUP_ID"]}"}})'
        await wait_until(lambda: _equals(value, group_lag, 0), timeout=30, what="eligibility's lag back to 0")

        # Every dashboard panel's query returns data during the run (a range query such as increase()
        # needs two scrapes of a series: polled until it has them).
        empty: list = []

        async def panels_have_data() -> bool:
            empty[:] = [(title, expr) for title, expr in dashboard_queries() if not q(expr)]
            return not empty

        try:
            await wait_until(panels_have_data, timeout=30, interval=1, what="every dashboard panel with data")
        except AssertionError:
            raise AssertionError(f"dashboard queries with no data: {empty}") from None

        # SIGKILL one service: its SaisServiceDown alert becomes pending, then firing.
        os.killpg(procs["retention"].pid, signal.SIGKILL)
        procs["retention"].wait()
        instance = f"127.0.0.1:{ports['retention']}"
        alert = f'ALERTS{{alertname="SaisServiceDown", instance="{instance}", alertstate="%s"}}'
        states = []

        async def seen(state: str) -> bool:
            if q(alert % state):
                states.append(state)
                return True
            return False

        await wait_until(lambda: seen("pending"), timeout=30, interval=0.2, what="service-down alert pending")
        await wait_until(lambda: seen("firing"), timeout=30, what="service-down alert firing")
        assert states == ["pending", "firing"]
        assert not q(f'ALERTS{{alertname="SaisServiceDown", alertstate="firing", instance!="{instance}"}}')
    finally:
        for p in [*procs.values(), prom]:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in [*procs.values(), prom]:
            p.wait(30)


async def _equals(value, expr: str, expected: float) -> bool:
    return await value(expr) == expected
