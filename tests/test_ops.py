"""Operating the integrator (issue 15, items 6-8), through the CLI against the sandbox:
``runs`` and ``--limit``, the daemon's reloads, gauge and retry logs, and reconcile windows."""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import partial

import requests
from support import Project, fault_rule, stats, unsent, wait_for
from support.daemon import DaemonProcess, daemon, every

from integrator.sandbox import Sandbox

# ----------------------------------------------------------------------- runs and --limit


def test_runs_show_time_zones_and_an_unknown_flow_is_an_error(
    project: Project, sandbox: Sandbox
) -> None:
    # A fresh store: an unknown flow is named as such, with the flows the project defines.
    nope = project.run("runs", "--flow", "nope")
    assert nope.code == 2, nope.out + nope.err
    assert "nope" in nope.err and "order_flow" in nope.err and "order_status" in nope.err
    assert "no runs yet" not in nope.out
    # A flow the project defines, that has not run yet, is no error.
    quiet = project.run("runs", "--flow", "order_status")
    assert quiet.code == 0, quiet.out + quiet.err
    assert "no runs of order_status yet" in quiet.out

    assert project.run("run-flow", "order_flow", "--no-progress", "--limit", "1").code == 0
    shown = project.run("runs")
    assert shown.code == 0, shown.err
    row = next(line for line in shown.out.splitlines() if "order_flow" in line)
    assert row.count("+00:00") == 2, row  # started and ended, in UTC, saying so
    assert "(times in UTC)" in project.run("runs", "--help").out
    again = project.run("runs", "--flow", "nope")
    assert again.code == 2 and "order_flow" in again.err


def test_limit_counts_the_orders_processed_not_the_skipped_ones(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    stuck = numbers[:2]  # first in the list, and backing off after a failure
    for number in stuck:
        project.misbehave_for(number, 'raise ValueError("no ERP customer")')
    for number in stuck:
        first = project.run("run-flow", "order_flow", "--no-progress", "--order", number)
        assert first.code == 1, first.out + first.err
    assert [project.state(n) for n in stuck] == ["failed", "failed"]
    assert stats(sandbox.erp.url)["received"] == 0

    r = project.run("run-flow", "order_flow", "--no-progress", "--limit", "3")
    assert r.code == 0, r.out + r.err
    # Three orders processed, not one: the two stuck ones in front are skipped, not counted
    # (which three is the workers' race).
    assert len(sandbox.erp.received) == 3 and not set(stuck) & set(sandbox.erp.received)
    r = project.run("run-flow", "order_flow", "--no-progress", "--limit", "3")
    assert r.code == 0, r.out + r.err
    assert len(sandbox.erp.received) == 6 and set(sandbox.erp.received) <= set(numbers[2:])
    skipped = project.sql("SELECT orders_skipped, orders_ok FROM runs ORDER BY id DESC LIMIT 1")
    assert skipped == [(2, 3)]


# ------------------------------------------------------------------------------- daemon


def _reloaded(d: DaemonProcess, n: int) -> bool:
    return len(d.named("reloaded")) >= n


def test_a_reload_keeps_the_timers_of_flows_that_did_not_change(
    project: Project, sandbox: Sandbox
) -> None:
    every(project, "2s")
    status = project.flow("order_status")
    text = status.read_text()
    assert "  every: 5m\n" in text
    with daemon(project) as d:
        start = d.named("daemon_started")[0]["next_runs"]
        t0 = dt.datetime.fromisoformat(start["order_flow"])
        # Reload over and over, faster than order_flow's 2 s timer: each reload changes
        # order_status's schedule and nothing of order_flow. A timer restarted at every reload
        # would never fire.
        deadline = time.monotonic() + 15
        reloads = 0
        while not d.named("run_ended") and time.monotonic() < deadline:
            reloads += 1
            status.write_text(text.replace("  every: 5m\n", f"  every: {5 + reloads % 2}m\n"))
            wait_for(partial(_reloaded, d, reloads), 10, f"reload {reloads}")
        ran = [e for e in d.named("run_ended") if e["flow"] == "order_flow"]
        assert ran, f"order_flow never ran in {reloads} reloads"
        reloaded = d.named("reloaded")
        assert reloads >= 2
        for event in reloaded:
            assert "order_flow" in event["timers_kept"], event
            assert "reconcile order_flow" in event["timers_kept"], event
            assert event["timers_reset"] == ["order_status"], event
            # The kept timer still fires on the beat it started on.
            t = dt.datetime.fromisoformat(event["next_runs"]["order_flow"])
            assert (t - t0).total_seconds() % 2 == 0, (t0, t)
        # A changed schedule is a new timer; a removed flow has none any more.
        project.edit_flow("  every: 2s", "  every: 1h")
        n = len(reloaded) + 1
        wait_for(lambda: len(d.named("reloaded")) >= n, 10, "the reload")
        assert d.named("reloaded")[-1]["timers_reset"] == ["order_flow"]
        status.unlink()
        wait_for(lambda: len(d.named("reloaded")) >= n + 1, 10, "the reload")
        last = d.named("reloaded")[-1]
        assert (
            last["timers_removed"] == ["order_status"] and "order_status" not in last["next_runs"]
        )
        assert d.stop() == 0


def test_the_oldest_unsent_gauge_falls_to_zero_when_the_backlog_is_gone(
    project: Project, sandbox: Sandbox
) -> None:
    every(project, "1s")
    # The ERP refuses every order: the backlog stays, and every run lists it.
    fault_rule(sandbox.erp.url, action="status", route="create", status=400)
    gauge = ("integrator_oldest_unsent_order_age_seconds", (("flow", "order_flow"),))
    with daemon(project) as d:
        wait_for(lambda: d.metrics().get(gauge, 0) > 0, 20, "the gauge to show the backlog")
        ended = len(d.named("run_ended"))
        with sandbox.omnitron.lock:  # the backlog is cleared (a person marked them sent)
            for o in sandbox.omnitron.orders.values():
                o["is_send"] = True
        wait_for(lambda: len(d.named("run_ended")) >= ended + 2, 20, "a run after the clearing")
        assert d.metrics()[gauge] == 0
        assert d.stop() == 0
    assert stats(sandbox.erp.url)["received"] == 0


def test_the_retry_log_shows_the_wait_of_a_429(project: Project, sandbox: Sandbox) -> None:
    number = unsent(sandbox)[0]
    cfg = project.root / "config.yaml"
    text = cfg.read_text()
    anchor = "    BearerToken: ${ERP_TOKEN}\n"
    assert anchor in text
    cfg.write_text(text.replace(anchor, anchor + "    Retry: {CapSeconds: 0.3}\n"))
    # Retry-After: 2, capped at 0.3 s by the connector: the host pauses 0.3 s, and says so.
    fault_rule(
        sandbox.erp.url, action="status", route="create", status=429, retry_after="2", count=1
    )
    r = project.run("run-flow", "order_flow", "--no-progress", "--order", number)
    assert r.code == 0, r.out + r.err
    lines = [line for line in r.err.splitlines() if "retrying" in line]
    assert len(lines) == 1, r.err
    assert "delay=0.3" in lines[0] and "429" in lines[0], lines[0]
    assert "delay=0.0" not in r.err
    assert sandbox.erp.received == {number: 1}
    # What it waited, from the journal: the write started, then was answered after the pause.
    at = dict(project.sql(f"SELECT fact, at FROM events WHERE order_number = '{number}'"))
    waited = dt.datetime.fromisoformat(at["write_answered"]) - dt.datetime.fromisoformat(
        at["write_started"]
    )
    assert 0.3 <= waited.total_seconds() < 2, waited


# ---------------------------------------------------------------------- reconcile windows


def _stamp(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_reconcile_since_compares_one_window_on_both_sides(
    project: Project, sandbox: Sandbox
) -> None:
    assert project.run("run-flow", "order_flow", "--no-progress").code == 0
    omnitron, erp = sandbox.omnitron, sandbox.erp
    start = (dt.datetime.now(dt.UTC) - dt.timedelta(days=10)).replace(microsecond=0)
    hour, day = dt.timedelta(hours=1), dt.timedelta(days=1)
    by_number = {o["number"]: o for o in omnitron.orders.values()}
    sent = sorted(n for n, o in by_number.items() if o["is_send"])
    assert sorted(erp.orders) == sent and len(sent) >= 15
    # A backlog that spans the window's start, and an ERP whose clock is an hour behind.
    groups = {
        "placed before, created after": (sent[0:4], start - 2 * hour, start + hour),
        "placed long before, created after": (sent[4:6], start - 3 * day, start + 5 * hour),
        "placed after, created before": (sent[6:9], start + hour, start - hour),
        "inside": (sent[9:15], start + 2 * hour, start + 3 * hour),
        "outside": (sent[15:], start - 5 * day, start - 5 * day),
    }
    with omnitron.lock, erp.lock:
        for numbers, placed, created in groups.values():
            for n in numbers:
                by_number[n]["date_placed"] = _stamp(placed)
                erp.orders[n]["created_at"] = _stamp(created)
    since = start.strftime("%Y-%m-%dT%H:%M:%SZ")
    in_window = len(sent[6:15])

    r = project.run("reconcile", "order_flow", "--since", since, "--json")
    assert r.code == 0, r.out + r.err
    found = json.loads(r.out)
    assert found["oms_sent"] == in_window and found["erp_orders"] == in_window, found
    assert found["outside_window"] == 6
    table = project.run("reconcile", "order_flow", "--since", since)
    assert table.code == 0 and "no differences" in table.out, table.out + table.err
    assert "6 order(s) placed before" in table.out

    # Real differences inside the window are found; the same kinds just outside it are not.
    behind, inside, before = sent[6], sent[9:11], sent[0:2]
    with omnitron.lock, erp.lock:
        del erp.orders[behind]  # sent, missing in the ERP
        del erp.orders[inside[0]]
        by_number[inside[1]]["is_send"] = False  # in the ERP, not marked sent
        del erp.orders[before[0]]  # placed before the window
        by_number[before[1]]["is_send"] = False
    requests.post(  # an order the ERP got from somewhere else, created in the window
        f"{erp.url}/api/orders/",
        json={"order_number": "POS-0002", "total": "10.00"},
        headers={"Authorization": f"Bearer {sandbox.credentials['ERP_TOKEN']}"},
        timeout=5,
    ).raise_for_status()
    r = project.run("reconcile", "order_flow", "--since", since, "--json")
    assert r.code == 1, r.out + r.err
    found = json.loads(r.out)
    assert found["missing_in_erp"] == sorted([behind, inside[0]])
    assert found["not_marked_in_oms"] == [inside[1]]
    assert found["unknown_to_oms"] == ["POS-0002"]
    assert found["amount_mismatches"] == []
    # Without --since, everything: the two outside the window are differences too.
    whole = json.loads(project.run("reconcile", "order_flow", "--json").out)
    assert whole["missing_in_erp"] == sorted([behind, inside[0], before[0]])
    assert whole["not_marked_in_oms"] == sorted([inside[1], before[1]])
