"""Alerts and the dashboard only query metrics the services really export, and cover what on-call needs."""

import json
import re
from pathlib import Path

import pytest
import sais_shared.ops  # noqa: F401  (registers the metrics)
import yaml
from prometheus_client import REGISTRY

pytestmark = pytest.mark.deploy
MON = Path(__file__).resolve().parents[2] / "deploy" / "monitoring"


def exported() -> set[str]:
    names = set()
    for metric in REGISTRY.collect():
        for s in metric.samples:
            names.add(s.name)
        names.add(metric.name)
        if metric.type == "counter":
            names.add(metric.name + "_total")
        if metric.type == "histogram":
            names |= {metric.name + x for x in ("_bucket", "_sum", "_count")}
    return names


def used(expr: str) -> set[str]:
    return set(re.findall(r"\b(sais_[a-z_]+)\b", expr))


def test_alert_rules_use_exported_metrics_and_cover_the_issue():
    rules = yaml.safe_load((MON / "alerts.yml").read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert {
        "SaisDeletionOverdue",
        "SaisSmtpFailures",
        "SaisConsumerLag",
        "SaisDeadLetters",
        "SaisSharingSuspended",
    } <= names
    for r in rules:
        assert used(r["expr"]) <= exported(), r["alert"]
        assert r["annotations"]["runbook"].startswith("docs/runbook.md#")


def test_dashboard_panels_use_exported_metrics():
    dash = json.loads((MON / "grafana" / "dashboards" / "sais-pipeline.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 15
    for e in exprs:
        assert used(e) and used(e) <= exported(), e


def test_runbook_has_every_anchor_the_alerts_link_to():
    runbook = (MON.parents[1] / "docs" / "runbook.md").read_text()
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).strip().replace(" ", "-") for h in re.findall(r"^#+ (.+)$", runbook, re.M)
    }
    rules = yaml.safe_load((MON / "alerts.yml").read_text())["groups"][0]["rules"]
    for r in rules:
        assert r["annotations"]["runbook"].split("#")[1] in anchors, r["alert"]


def _promtool(*args: str):
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs Debian's prometheus package (deploy/local/stack.py)"
    return subprocess.run([promtool, *args], capture_output=True, text=True, cwd=MON)


def test_promtool_accepts_the_alert_rules():
    r = _promtool("check", "rules", "alerts.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_unit_tests_of_every_alert_pass():
    r = _promtool("test", "rules", "alerts_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_has_a_firing_and_a_silent_case():
    alerts = {r["alert"] for r in yaml.safe_load((MON / "alerts.yml").read_text())["groups"][0]["rules"]}
    fires, silent = set(), set()
    for t in yaml.safe_load((MON / "alerts_test.yml").read_text())["tests"]:
        for case in t["alert_rule_test"]:
            (fires if case["exp_alerts"] else silent).add(case["alertname"])
    assert alerts - fires == set(), "alerts with no case that must fire"
    assert alerts - silent == set(), "alerts with no case that must stay silent"
