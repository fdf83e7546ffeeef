"""The live view of a run: the daemon publishes each order's end in memory, its console reads
it while the run goes, and falls back to the stored run when it ends; the standalone console
says that the live view needs the daemon. Through real HTTP, against the sandbox."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any, cast

import requests
from support import Project, faults, fresh_python, unsent, wait_for
from support.console import console
from support.daemon import daemon, every

from integrator.sandbox import Sandbox


def _get(url: str, **kwargs: Any) -> requests.Response:
    return requests.get(url, timeout=5, allow_redirects=False, **kwargs)


def test_daemon_shows_orders_finishing_before_the_run_ends(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    project.edit_flow("concurrency: 4", "concurrency: 1")
    every(project, "1s")
    faults(sandbox.erp.url, {"latency_ms": {"create": 150}})  # a run of a few seconds
    with daemon(project) as d:

        def live_run() -> dict[str, Any] | None:
            runs = _get(d.url("/api/live")).json()["runs"]
            return runs[0] if runs else None

        first = wait_for(live_run, 20, "a run in progress in /api/live")
        run_id = int(first["run"])
        assert first["flow"] == "order_flow" and first["status"] == "running"

        # orders finish, one by one, while the stored run still says "running" with 0 orders
        def midway() -> dict[str, Any] | None:
            answer: dict[str, Any] = _get(d.url(f"/api/runs/{run_id}/live")).json()
            live = answer["live"]
            if answer["source"] != "live" or live["ok"] < 2:
                return None
            return answer

        answer = wait_for(midway, 20, "two orders done while the run goes")
        live = answer["live"]
        assert answer["run"]["status"] == "running" and answer["run"]["orders_ok"] == 0
        assert live["ok"] < len(numbers), "the run ended before the live view saw it go"
        assert live["total"] == len(numbers)  # the listing's count
        assert [o["seq"] for o in live["orders"]] == sorted(
            (o["seq"] for o in live["orders"]), reverse=True
        )
        assert {o["number"] for o in live["orders"]} <= set(numbers)
        assert all(o["status"] == "ok" and o["state"] == "done" for o in live["orders"])
        # ?after= gives only what came since
        since = _get(d.url(f"/api/runs/{run_id}/live?after={live['last_seq']}")).json()
        assert all(o["seq"] > live["last_seq"] for o in since["live"]["orders"])
        assert _get(d.url(f"/api/runs/{run_id}/live?after=x")).status_code == 400

        # the run's page polls its live part with htmx while it runs
        page = _get(d.url(f"/runs/{run_id}")).text
        assert f'hx-get="/runs/{run_id}/live"' in page and 'hx-trigger="every 1s"' in page
        fragment = _get(d.url(f"/runs/{run_id}/live"), headers={"HX-Request": "true"})
        assert fragment.status_code == 200 and "<progress" in fragment.text

        # once it has ended: the stored run, and the polling page is told to reload
        def ended() -> dict[str, Any] | None:
            a: dict[str, Any] = _get(d.url(f"/api/runs/{run_id}/live")).json()
            return a if a["source"] == "store" else None

        done = wait_for(ended, 30, "the run's end")
        assert done["run"]["status"] == "ok" and done["run"]["orders_ok"] == len(numbers)
        assert done["live"]["ok"] == len(numbers) and "note" not in done
        last = max(dt.datetime.fromisoformat(o["at"]) for o in done["live"]["orders"])
        # every order was published before the run's end was stored
        assert last.replace(microsecond=0) <= dt.datetime.fromisoformat(done["run"]["ended_at"])
        r = _get(d.url(f"/runs/{run_id}/live"), headers={"HX-Request": "true"})
        assert r.headers.get("HX-Refresh") == "true"
        page = _get(d.url(f"/runs/{run_id}")).text
        assert "hx-trigger" not in page
        assert run_id not in [r["run"] for r in _get(d.url("/api/live")).json()["runs"]]
        assert _get(d.url("/api/runs/999/live")).status_code == 404


def test_standalone_console_says_the_live_view_needs_the_daemon(
    project: Project, sandbox: Sandbox
) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", "--limit", "2")
    assert r.code == 0, r.err
    # a run another process has in progress, as the store shows it
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute("UPDATE runs SET status = 'running', ended_at = NULL WHERE id = 1")
    with console(project) as c:
        live = c.json("/api/live")
        assert live["where"] == "standalone" and live["runs"] == []
        assert "needs the daemon" in live["note"]
        answer = c.json("/api/runs/1/live")
        assert answer["source"] == "store" and answer["live"] is None
        assert "needs the daemon" in answer["note"]
        page = c.page("/runs/1")
        assert "needs the daemon" in page and "hx-trigger" not in page
        assert c.get("/api/runs/2/live").status_code == 404


def test_publishing_an_order_touches_no_store() -> None:
    """The per-order path of the live view is memory only: publishing 5,000 orders through
    the hooks imports no database library (so it cannot commit) and keeps 200 of them. (The
    runner's ``Outcome`` is stood in for: importing the runner imports the store.)"""
    out = fresh_python(
        "import sys\n"
        "from integrator.console.live import LiveRuns\n"
        "from integrator.metrics import Metrics\n"
        "from types import SimpleNamespace as Outcome\n"
        "runs = LiveRuns()\n"
        "h = runs.hooks(Metrics(), 'f')\n"
        "h.listed('f', 5000); h.run_started('f', 7)\n"
        "for i in range(5000):\n"
        "    h.order_ended(Outcome(number=str(i), status='ok' if i % 10 else 'failed',"
        " state='done', message='', reason=''))\n"
        "s = runs.snapshot(7)\n"
        "print(s['ok'], s['failed'], s['total'], len(s['orders']), s['orders'][0]['number'])\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('sqlalchemy', 'flask', 'sqlite3', 'psycopg') or m.startswith('integrator.state')))\n"
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "4500 500 5000 200 4999"
    assert lines[1] == "[]", lines[1]


def test_the_polled_live_part_renders_only_the_latest_orders(tmp_path: Path) -> None:
    """The page's live part, polled every second, renders the latest ``LIVE_ROWS`` orders,
    not the whole buffer (its cost in the daemon while a run goes: issue 16's benchmark found
    the 200-row fragment the biggest share); the API still gives the buffer."""
    from types import SimpleNamespace as Outcome

    from flask import Flask

    from integrator.connectors.redact import Redactor
    from integrator.console.app import LIVE_ROWS, ConsoleSource, create_app
    from integrator.console.live import BUFFER, LiveRuns
    from integrator.metrics import Metrics
    from integrator.state.store import Store

    store = Store(f"sqlite:///{tmp_path}/state.db")
    runs = LiveRuns()
    hooks = runs.hooks(Metrics(), "order_flow")
    hooks.listed("order_flow", 500)
    hooks.run_started("order_flow", 7)
    for i in range(300):
        hooks.order_ended(Outcome(number=f"N{i}", status="ok", state="done", message="", reason=""))  # type: ignore[arg-type]
    source = ConsoleSource(
        store=lambda: store,
        redactor=Redactor,
        log_dir=lambda: tmp_path,
        schedules=dict,
        where="daemon",
        live=runs,
    )
    guard = create_app(source)
    app = cast(Flask, guard.app)
    client = app.test_client()
    head = {"Host": "127.0.0.1", "HX-Request": "true"}
    fragment = client.get("/runs/7/live", headers=head).get_data(as_text=True)
    assert fragment.count("<tr data-seq=") == LIVE_ROWS < BUFFER
    assert ">N299</a>" in fragment and f">N{300 - LIVE_ROWS}</a>" in fragment
    assert f">N{299 - LIVE_ROWS}</a>" not in fragment
    assert f"The latest {LIVE_ROWS} orders are shown" in fragment
    answer = client.get("/api/runs/7/live", headers={"Host": "127.0.0.1"}).get_json()
    assert len(answer["live"]["orders"]) == BUFFER and answer["live"]["done"] == 300
    store.close()
