"""``benchmarks/order_flow_console.py``: the order-flow benchmark with the console open and
polling. Its figures are for a quiet machine; these tests check that it measures what it says:
each setup sends the same orders, and the browser really polls what an open dashboard and an
open run page poll (the daemon's live fragment, the standalone console's run page)."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from support import ROOT

SCRIPT = ROOT / "benchmarks" / "order_flow_console.py"


def _bench() -> ModuleType:
    """The benchmark's module (benchmarks/ on the path only while it is imported)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(SCRIPT.parent))
        return importlib.import_module("order_flow_console")


def test_polled_follows_htmx_every_triggers_only() -> None:
    polled = _bench().polled
    html = (
        '<section id="live" hx-get="/runs/7/live" hx-trigger="every 1s" hx-swap="outerHTML">'
        '<div id="alarms" hx-get="/alarms" hx-trigger="load, every 500ms"></div>'
        '<form hx-get="/runs" hx-trigger="change, submit"></form>'
        '<div hx-trigger="every 2s"></div></section>'
    )
    assert polled(html) == [("live", "/runs/7/live", 1.0), ("alarms", "/alarms", 0.5)]
    assert polled('<section id="live"><p class="note">needs the daemon</p></section>') == []


def test_running_run_reads_the_flows_row_only() -> None:
    running_run = _bench().running_run
    row = (
        '<tr class="flow" data-flow="{flow}">\n  <td><a href="/runs?flow={flow}">{flow}</a></td>'
        '<td><a href="/runs/{rid}">#{rid}</a> 2026-01-01</td><td class="{status}">{status}</td>'
        "</tr>"
    )
    page = row.format(flow="order_status", rid=3, status="running") + row.format(
        flow="order_flow", rid=4, status="ok"
    )
    assert running_run(page, "order_flow") is None  # another flow's run is running, not ours
    page += row.format(flow="order_flow_2", rid=5, status="running")
    assert running_run(page, "order_flow") is None
    page = row.format(flow="order_flow", rid=9, status="running")
    assert running_run(page, "order_flow") == 9


@pytest.mark.slow
def test_benchmark_runs_every_setup_with_the_browser_polling(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    # one order at a time: each run lasts seconds, so the browser sees it running
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            *("--orders", "60", "--concurrency", "1", "--repeat", "1"),
            "--json",
            str(out),
        ],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "b/a: orders/s" in proc.stdout and "c/c0: orders/s" in proc.stdout, proc.stdout
    (figures,) = json.loads(out.read_text())
    assert set(figures) == {"a", "b", "c0", "c"}
    sent = {s: d["ok"] for s, d in figures.items()}
    assert len(set(sent.values())) == 1 and sent["a"] > 0, sent
    assert all(d["failed"] == 0 and d["cpu"] > 0 for d in figures.values()), figures
    assert "browser" not in figures["a"] and "browser" not in figures["c0"]
    b, c = figures["b"]["browser"], figures["c"]["browser"]
    assert figures["b"]["browser_errors"] == [] and figures["c"]["browser_errors"] == []
    # standalone: the run page has no live part to poll, so the browser reloads it while the
    # dashboard shows the run running
    assert b["dashboard"] >= 2 and b["run page"] >= 2 and "live fragment" not in b, b
    # daemon: the run page's live part is polled (hx-trigger every 1s) until the run ends
    assert c["dashboard"] >= 2 and c["run page"] >= 1 and c["live fragment"] >= 1, c
    assert figures["b"]["console_cpu"] > 0  # the standalone console's process answered
    # the daemon's threads older than the run (HTTP server, scheduler) are measured apart
    assert 0 <= figures["c0"]["console_cpu"] < figures["c0"]["cpu"], figures["c0"]
    assert 0 <= figures["c"]["console_cpu"] < figures["c"]["cpu"], figures["c"]
