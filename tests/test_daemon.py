"""The daemon as users run it: real processes, real HTTP, signals, SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from support import (
    Project,
    assert_exactly_once,
    fault_rule,
    faults,
    make_project,
    stats,
    unsent,
    wait_for,
)
from support.daemon import daemon, every
from support.services import fresh_database

from integrator.sandbox import Sandbox, running_sandbox


def test_runs_on_schedule_with_health_and_metrics(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    every(project)
    with daemon(project) as d:
        wait_for(lambda: stats(sandbox.erp.url)["received"] == len(numbers), what="delivery")
        wait_for(lambda: len(d.named("run_ended")) >= 2, what="a second run")
        health = requests.get(d.url("/healthz"), timeout=5)
        assert health.status_code == 200 and health.json() == {
            "ok": True,
            "scheduler": True,
            "store": True,
        }
        m = d.metrics()
        flow = (("flow", "order_flow"),)
        assert m[("integrator_orders_total", (("flow", "order_flow"), ("outcome", "ok")))] == len(
            numbers
        )
        assert m[("integrator_runs_total", (("flow", "order_flow"), ("status", "ok")))] >= 2
        assert m[
            ("integrator_http_responses_total", (("connector", "erp"), ("status", "201")))
        ] == (len(numbers))
        assert m[
            ("integrator_stage_seconds_count", (("flow", "order_flow"), ("stage", "write")))
        ] == len(numbers)
        assert m[("integrator_last_success_timestamp_seconds", flow)] > time.time() - 60
        assert m[("integrator_quarantined_orders", flow)] == 0
        assert m[("integrator_oldest_unsent_order_age_seconds", flow)] == 0  # backlog gone
        assert m[("integrator_scheduler_up", ())] == 1
        ended = d.named("run_ended")[0]
        assert ended["flow"] == "order_flow" and ended["level"] == "info"
        assert d.stop() == 0
    assert_exactly_once(sandbox, numbers)


def test_sigterm_mid_run_lets_in_flight_orders_finish(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    every(project)
    project.edit_flow("concurrency: 4", "concurrency: 2")
    fault_rule(sandbox.erp.url, action="latency", route="create", seconds=0.4)
    with daemon(project) as d:
        wait_for(lambda: stats(sandbox.erp.url)["received"] >= 3, what="some writes")
        wait_for(lambda: d.named("fire_skipped"), what="a fire skipped: the run overran it")
        assert d.stop() == 0
        written = stats(sandbox.erp.url)["received"]
        assert 3 <= written < len(numbers)  # it stopped taking orders
        assert project.sql("SELECT COUNT(*) FROM journal WHERE state = 'sending'") == [(0,)]
        assert project.sql("SELECT COUNT(*) FROM runs WHERE ended_at IS NULL") == [(0,)]
        assert any(e["event"] == "daemon_stopped" for e in d.events)
    faults(sandbox.erp.url, {})
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)


def test_triggered_flow_bad_flow_at_start_and_reload(project: Project, sandbox: Sandbox) -> None:
    every(project)
    text = project.flow().read_text()
    after = text.replace("name: order_flow", "name: after_flow").replace(
        "  every: 1s", "  triggered_by: order_flow"
    )
    project.flow("after_flow").write_text(after)
    project.flow("broken").write_text("name: broken\nstages: [read, {write: {method: GET}}\n")
    with daemon(project) as d:
        issues = [e["issue"] for e in d.named("config_issue")]
        assert any("broken.yaml" in i for i in issues), issues
        wait_for(lambda: d.named("flow_triggered"), what="the triggered flow")
        wait_for(
            lambda: any(e["flow"] == "after_flow" for e in d.named("run_ended")),
            what="after_flow's run",
        )
        # A broken change keeps the old flow running.
        project.flow().write_text(text.replace("stages:", "stages: [oops"))
        wait_for(lambda: d.named("flow_kept"), what="the old flow kept")
        before = len([e for e in d.named("run_ended") if e["flow"] == "order_flow"])
        wait_for(
            lambda: (
                len([e for e in d.named("run_ended") if e["flow"] == "order_flow"]) >= before + 2
            ),
            what="more runs of the kept flow",
        )
        assert d.stop() == 0
    runs = [f for (f,) in project.sql("SELECT flow FROM runs ORDER BY id")]
    assert "after_flow" in runs and "broken" not in runs


def slow_first_run(project: Project, sb: Sandbox) -> None:
    """Every second, and a first run that lasts several seconds: the daemons must meet."""
    every(project)
    project.edit_flow("concurrency: 4", "concurrency: 2")
    fault_rule(sb.erp.url, action="latency", route="create", seconds=0.5)


def no_overlap(rows: list[tuple[Any, ...]]) -> None:
    """Runs of one flow, as (started_at, ended_at) ordered by start, never overlap."""
    for (_, end), (start, _) in itertools.pairwise(rows):
        assert start >= end, rows


def test_two_daemons_on_sqlite_never_overlap(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    slow_first_run(project, sandbox)
    with daemon(project) as a, daemon(project) as b:
        wait_for(lambda: stats(sandbox.erp.url)["received"] == len(numbers), 60, "delivery")
        wait_for(lambda: a.named("run_skipped") or b.named("run_skipped"), what="a skip")
        assert a.stop() == 0 and b.stop() == 0
    assert_exactly_once(sandbox, numbers)
    no_overlap(
        project.sql(
            "SELECT started_at, ended_at FROM runs WHERE flow='order_flow' ORDER BY started_at"
        )
    )


@pytest.mark.services
def test_two_daemons_on_postgresql_share_flows_without_overlap(tmp_path: Path) -> None:
    with running_sandbox(25) as sb, fresh_database() as url:
        numbers = unsent(sb)
        project = make_project(tmp_path, sb.env())
        project.use_state_url(url)
        slow_first_run(project, sb)
        with daemon(project) as a, daemon(project) as b:
            assert "postgresql" in a.named("daemon_started")[0]["state"]
            assert "postgres-secret" not in "".join(a.raw)
            wait_for(lambda: stats(sb.erp.url)["received"] == len(numbers), 60, "delivery")
            wait_for(lambda: a.named("run_skipped") or b.named("run_skipped"), what="a skip")
            assert a.stop() == 0 and b.stop() == 0
        assert_exactly_once(sb, numbers)
        from sqlalchemy import create_engine, text

        engine = create_engine(url)
        with engine.connect() as c:
            rows = [
                tuple(r)
                for r in c.execute(
                    text(
                        "SELECT started_at, ended_at FROM runs WHERE flow='order_flow' "
                        "ORDER BY started_at"
                    )
                )
            ]
            states: dict[str, int] = dict(
                c.execute(text("SELECT state, COUNT(*) FROM journal GROUP BY state")).all()
            )
        engine.dispose()
        no_overlap(rows)
        assert states == {"done": len(numbers)}


pytestmark = pytest.mark.slow


def test_sighup_reloads_and_flows_lists_schedules(project: Project, sandbox: Sandbox) -> None:
    (project.root / "flows" / "order_status.yaml").unlink()  # one flow: its three fire times
    every(project, "1h")
    r = project.run("flows")
    assert r.code == 0, r.err
    assert "order_flow" in r.out and "every 1h" in r.out and r.out.count(" UTC") == 3
    with daemon(project, watch=600) as d:  # only SIGHUP can make it reload
        project.edit_flow("  every: 1h", '  cron: "0 3 * * *"\n  timezone: Europe/Istanbul')
        d.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: d.named("reloaded"), what="the reload")
        scheduled = [e["schedule"] for e in d.named("flow_scheduled")]
        assert scheduled[-1] == "cron 0 3 * * * (Europe/Istanbul)", scheduled
        assert d.stop() == 0
    r = project.run("flows")
    assert "cron 0 3 * * * (Europe/Istanbul)" in r.out and r.out.count("03:00 +03") == 3


def test_a_busy_http_port_is_a_clear_error(project: Project) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = project.run("daemon", "--http", f"127.0.0.1:{port}", timeout=30)
    assert r.code == 2 and "cannot listen on" in r.err and "--http" in r.err
    assert f"port {port} is in use by another process" in r.err and "internal error" not in r.err
    assert "Traceback" not in r.err
