"""deploy/'s Prometheus alert rules (checked and unit-tested by promtool) and Grafana dashboard
(valid JSON; every metric it queries is one the daemon exports)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from support import ROOT

from integrator.metrics import PrometheusMetrics

RULES = ROOT / "deploy" / "prometheus" / "integrator-alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "integrator-alerts-test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "integrator-dashboard.json"
METRIC = re.compile(r"\bintegrator_[a-z_]+\b")

# .ci/run installs promtool and sets INTEGRATOR_TEST_PROMTOOL: there a missing promtool fails.
needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None and not os.environ.get("INTEGRATOR_TEST_PROMTOOL"),
    reason="promtool is not installed (.ci/promtool.sh installs Debian's prometheus)",
)


def exported() -> set[str]:
    """The sample names the daemon's /metrics has once every hook was called."""
    m = PrometheusMetrics()
    m.order("f", "ok")
    m.stage("f", "read", 0.1)
    m.http_status("erp", 200)
    m.run("f", "ok")
    m.oldest_unsent("f", 1.0)
    m.journal_states("f", {"quarantined": 1})
    m.reconciled("f", {"missing": 1})
    m.alarms([("f", "a", True)])
    m.up.set(1)
    return {s.name for family in m.registry.collect() for s in family.samples}


def queried(exprs: list[str]) -> set[str]:
    return {name for e in exprs for name in METRIC.findall(e)}


@needs_promtool
def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    """`promtool check rules` accepts the file; `promtool test rules` fires each rule on the
    series it is meant for and keeps it quiet otherwise."""
    for args in (["check", "rules", str(RULES)], ["test", "rules", RULE_TESTS.name]):
        p = subprocess.run(
            ["promtool", *args], cwd=RULES.parent, capture_output=True, text=True, timeout=60
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert "SUCCESS" in p.stdout


@needs_promtool
def test_promtool_refuses_a_broken_rule(tmp_path: Path) -> None:
    """The check can fail: a typo in an expression is refused."""
    broken = tmp_path / "rules.yml"
    broken.write_text(RULES.read_text().replace("> 3600", "> > 3600"))
    p = subprocess.run(["promtool", "check", "rules", str(broken)], capture_output=True, text=True)
    assert p.returncode != 0


def test_alert_rules_query_only_exported_metrics() -> None:
    """Every metric the rules use is one integrator/metrics.py exports, and the rules cover
    the error rate, the oldest unsent order, the quarantine and the last success."""
    rules = [r for g in yaml.safe_load(RULES.read_text())["groups"] for r in g["rules"]]
    used = queried([r["expr"] for r in rules])
    assert used <= exported(), used - exported()
    assert {
        "integrator_orders_total",
        "integrator_oldest_unsent_order_age_seconds",
        "integrator_quarantined_orders",
        "integrator_last_success_timestamp_seconds",
    } <= used


def test_grafana_dashboard_queries_only_exported_metrics() -> None:
    """The dashboard is JSON with panels, each with a query, and every metric it queries is
    one the daemon exports (a renamed metric fails here)."""
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert exprs and all(p["targets"] for p in dash["panels"])
    exprs += [v["definition"] for v in dash["templating"]["list"] if "definition" in v]
    used = queried(exprs)
    assert used <= exported(), used - exported()
    assert len(used) >= 9
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])
