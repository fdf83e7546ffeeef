"""The standalone console knows when a daemon runs over the same state store: the daemon's
heartbeat in the store names its console's URL, and the standalone console links there for
"run now" and the live view; without a live daemon it says that they need one. Real
processes: ``integrator daemon`` and ``integrator console`` over one project's store."""

from __future__ import annotations

import re
import sqlite3
import time
from typing import Any

import pytest
import requests
from support import Project, faults, unsent, wait_for
from support.console import PASSWORDS, TOKENS, ConsoleProcess, console, with_users
from support.daemon import DaemonProcess, daemon, every
from support.services import fresh_database

from integrator.sandbox import Sandbox

NEEDS = "need the daemon"
BEAT = ["--heartbeat", "0.2"]  # valid for 3 beats: a killed daemon is forgotten in 0.6 s


def _linked(c: ConsoleProcess) -> dict[str, Any] | None:
    """The daemon the standalone console links to, from /api/flows (None: none)."""
    found: dict[str, Any] | None = c.json("/api/flows")["daemon"]
    return found


def _schema_errors(c: ConsoleProcess, path: str, concrete: str) -> list[str]:
    """What in ``concrete``'s answer does not match ``path``'s schema in /api/openapi.json."""
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    doc = c.json("/api/openapi.json")
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]
    whole = {**schema["schema"], "components": doc["components"]}
    return [e.message for e in Draft202012Validator(whole).iter_errors(c.json(concrete))]


def _rows(project: Project) -> list[tuple[Any, ...]]:
    return project.sql("SELECT name, holder, expires_at FROM leases WHERE name LIKE 'daemon:%'")


def _says_it_needs_the_daemon(c: ConsoleProcess) -> None:
    flows = c.json("/api/flows")
    assert flows["where"] == "standalone" and flows["daemon"] is None
    assert NEEDS in flows["note"] and "no daemon runs" in flows["note"]
    page = c.page("/")
    assert NEEDS in page and 'id="reach"' not in page
    assert "needs the daemon" in c.json("/api/live")["note"]
    assert not _schema_errors(c, "/api/flows", "/api/flows")


def test_standalone_links_to_the_daemon_while_it_runs(project: Project) -> None:
    with console(project) as c:
        _says_it_needs_the_daemon(c)  # alone

        d = DaemonProcess(project, args=BEAT)
        try:
            wait_for(lambda: d.named("daemon_started") or d.proc.poll() is not None, 20, "start")
            assert d.proc.poll() is None, "".join(d.raw)
            url = d.url("/")
            found = wait_for(lambda: _linked(c), 10, "the link to the daemon")
            assert found["url"] == url and found["others"] == 0
            assert url in found["note"] and "run now and the live view are there" in found["note"]
            flows = c.json("/api/flows")
            assert f"the daemon at {url} runs the flows" in flows["note"]
            page = c.page("/")
            assert f'<a href="{url}">{url}</a> runs the flows' in page and NEEDS not in page
            live = c.json("/api/live")
            assert live["runs"] == [] and live["daemon"]["url"] == url and url in live["note"]
            assert not _schema_errors(c, "/api/flows", "/api/flows")
            assert not _schema_errors(c, "/api/live", "/api/live")
            # the URL answers: the daemon's own console, with its run-now buttons
            there = requests.get(url, timeout=10)
            assert there.status_code == 200 and "Served by the daemon" in there.text
            assert requests.get(d.url("/api/flows"), timeout=10).json()["where"] == "daemon"

            # the heartbeat is renewed: the console still links once the first has expired
            first = _rows(project)[0][2]
            assert len(_rows(project)) == 1
            wait_for(lambda: time.time() > first + 0.1, 10, "the first heartbeat's expiry")
            assert _linked(c) is not None and _rows(project)[0][2] > first

            # an orderly stop deletes the record: no wait, the old text at once
            assert d.stop() == 0, "".join(d.raw)
            assert _rows(project) == []
            _says_it_needs_the_daemon(c)
        finally:
            d.kill()
            if d.proc.stderr is not None:
                d.proc.stderr.close()


def test_a_killed_daemons_record_expires(project: Project) -> None:
    with console(project) as c, daemon(project, args=BEAT) as d:
        wait_for(lambda: _linked(c), 10, "the link to the daemon")
        d.proc.kill()  # SIGKILL: no orderly stop
        d.proc.wait(10)
        (row,) = _rows(project)  # still there: nobody deleted it
        assert row[1] == d.url("/")
        wait_for(lambda: _linked(c) is None, 10, "the killed daemon's record to expire")
        assert time.time() >= row[2]  # forgotten because it expired, not removed
        assert len(_rows(project)) == 1
        _says_it_needs_the_daemon(c)


def test_a_run_in_progress_links_to_its_live_page_on_the_daemon(
    project: Project, sandbox: Sandbox
) -> None:
    assert len(unsent(sandbox)) > 2  # one by one, 150 ms each: a run of a few seconds
    project.edit_flow("concurrency: 4", "concurrency: 1")
    every(project, "1s")
    faults(sandbox.erp.url, {"latency_ms": {"create": 150}})  # a run of a few seconds
    with daemon(project, args=BEAT) as d, console(project) as c:

        def running() -> int | None:
            runs = requests.get(d.url("/api/live"), timeout=5).json()["runs"]
            return int(runs[0]["run"]) if runs else None

        run_id = wait_for(running, 20, "a run in progress")

        def while_running() -> tuple[str, dict[str, Any]] | None:
            """The standalone console's run page and live answer, both while the run goes
            (the page first: when the later answer still says running, so did the page)."""
            page = c.page(f"/runs/{run_id}")
            answer: dict[str, Any] = c.json(f"/api/runs/{run_id}/live")
            return (page, answer) if answer["run"]["status"] == "running" else None

        page, answer = wait_for(while_running, 20, "the run's pages while it runs")
        assert answer["source"] == "store" and answer["live"] is None
        assert answer["daemon"]["run_url"] == d.url(f"/runs/{run_id}")
        assert d.url("/") in answer["note"]
        assert f'href="{d.url(f"/runs/{run_id}")}"' in page and "needs the daemon" not in page
        assert "Follow this run live on the daemon" in page
        assert not _schema_errors(c, "/api/runs/{run_id}/live", f"/api/runs/{run_id}/live")
        there = requests.get(d.url(f"/runs/{run_id}"), timeout=10)
        assert there.status_code == 200 and f"Run #{run_id}" in there.text


def test_run_now_refused_by_the_standalone_console_names_the_daemon(project: Project) -> None:
    with_users(project)
    bearer = {"Authorization": f"Bearer {TOKENS['otto']}"}
    run = {"flow": "order_flow"}
    with console(project) as c:
        r = requests.post(c.url + "/api/actions/run", json=run, headers=bearer, timeout=10)
        assert r.status_code == 409 and "needs the daemon" in r.json()["detail"]
        assert "daemon" not in r.json()
        with daemon(project, args=BEAT) as d:
            url = d.url("/")
            wait_for(
                lambda: c.get("/api/flows", headers=bearer).json()["daemon"],
                10,
                "the link to the daemon",
            )
            r = requests.post(c.url + "/api/actions/run", json=run, headers=bearer, timeout=10)
            assert r.status_code == 409, r.text
            assert r.json()["daemon"] == url and f"the daemon at {url}" in r.json()["detail"]
            # the form, from a logged-in browser: the refusal's page links to the daemon
            s = requests.Session()
            token = re.compile(r'name="csrf_token" value="([^"]+)"')
            form = s.get(c.url + "/login", timeout=10).text
            login = {"name": "otto", "password": PASSWORDS["otto"], "next": "/"}
            login["csrf_token"] = token.findall(form)[0]
            assert s.post(c.url + "/login", data=login, timeout=10).status_code == 200
            csrf = token.findall(s.get(c.url + "/", timeout=10).text)[0]
            r = s.post(c.url + "/actions/run", data={**run, "csrf_token": csrf}, timeout=10)
            assert r.status_code == 409 and "the daemon's console" in r.text
            assert f'<a href="{url}">' in r.text and f"the daemon at {url}" in r.text
            # the daemon takes it
            r = requests.post(d.url("/api/actions/run"), json=run, headers=bearer, timeout=10)
            assert r.status_code == 200 and "queued" in r.json()["message"]


def test_the_recorded_url_is_the_public_one_or_none(project: Project) -> None:
    public = ["--behind-proxy", "--public-host", "console.example.com", *BEAT]
    with console(project) as c:
        with daemon(project, args=public) as d:
            found = wait_for(lambda: _linked(c), 10, "the link to the daemon")
            assert found["url"] == "https://console.example.com/"
            assert d.stop() == 0
        assert _linked(c) is None
        # beyond loopback without users the daemon serves no console: it runs, no link
        with daemon(project, args=["--http", "0.0.0.0:0", "--behind-proxy", *BEAT]) as d:
            assert d.named("console_not_served")
            found = wait_for(lambda: _linked(c), 10, "the daemon's record")
            assert found["url"] is None and "serves no console" in found["note"]
            page = c.page("/")
            assert 'id="reach"' in page and "serves no console this one can link to" in page
            assert NEEDS not in page


def test_hostile_records_in_the_store_are_not_links(project: Project) -> None:
    """Whoever writes the store could forge a daemon's row: the console makes a link of an
    http(s) URL with a host only; an expired row and another lease are no daemon."""
    with console(project):
        pass  # the store, created
    far = time.time() + 3600
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.executemany(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)",
            [
                ("daemon:old", "http://127.0.0.1:1/", time.time() - 1),  # expired
                ("alarms", "http://127.0.0.1:2/", far),  # the alarms' lease: no daemon
                ("daemonX", "http://127.0.0.1:3/", far),  # not the prefix
            ],
        )
    with console(project) as c:
        _says_it_needs_the_daemon(c)
    for holder in (
        "javascript:alert(1)//",
        "http://user:pw@127.0.0.1:4/",
        'http://127.0.0.1:5/"><script>alert(1)</script>',
        "data:text/html,<b>x</b>",
        "http:///nohost",
        "http://127.0.0.1:notaport/",
    ):
        with sqlite3.connect(project.root / "state" / "integrator.db") as db:
            db.execute("DELETE FROM leases WHERE name = 'daemon:evil'")
            db.execute(
                "INSERT INTO leases (name, holder, expires_at) VALUES ('daemon:evil', ?, ?)",
                (holder, far),
            )
        with console(project) as c:
            found = _linked(c)
            assert found is not None and found["url"] is None, (holder, found)
            page = c.page("/")
            assert "serves no console this one can link to" in page
            for bad in ("javascript:", "user:pw", "<script>alert", "data:text"):
                assert bad not in page, (holder, bad)
    # a good row beside a bad one: the good one is the link
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute(
            "INSERT INTO leases (name, holder, expires_at) VALUES ('daemon:good', ?, ?)",
            ("http://127.0.0.1:6", far - 10),
        )
    with console(project) as c:
        found = _linked(c)
        assert found is not None and found["url"] == "http://127.0.0.1:6/"
        assert found["others"] == 1


def test_two_daemons_on_one_store_the_standalone_links_to_one_that_runs(
    project: Project,
) -> None:
    with console(project) as c, daemon(project, args=BEAT) as a, daemon(project, args=BEAT) as b:
        both = wait_for(
            lambda: (found := _linked(c)) and found["others"] == 1 and found, 10, "two daemons"
        )
        assert both["url"] in (a.url("/"), b.url("/"))
        first, second = (a, b) if both["url"] == a.url("/") else (b, a)
        assert first.stop() == 0
        found = _linked(c)  # at once: the stopped one's record is gone
        assert found is not None and found["url"] == second.url("/") and found["others"] == 0


def test_a_heartbeat_out_of_range_is_refused_clearly(project: Project) -> None:
    for bad in ("0", "-1", "soon"):
        r = project.run("daemon", "--heartbeat", bad, timeout=30)
        assert r.code == 2 and "--heartbeat" in r.err and "Traceback" not in r.err, r.err


@pytest.mark.services
def test_on_postgresql_the_console_finds_the_daemon(project: Project) -> None:
    """Several daemons share a PostgreSQL store: the heartbeat is a row there too."""
    with fresh_database() as url:
        project.use_state_url(url)
        with console(project) as c:
            _says_it_needs_the_daemon(c)
            with daemon(project, args=BEAT) as d:
                found = wait_for(lambda: _linked(c), 10, "the link to the daemon")
                assert found["url"] == d.url("/")
                assert requests.get(found["url"], timeout=10).status_code == 200
                assert d.stop() == 0
            _says_it_needs_the_daemon(c)
            with daemon(project, args=BEAT) as d:
                wait_for(lambda: _linked(c), 10, "the link to the second daemon")
                d.proc.kill()
                d.proc.wait(10)
                wait_for(lambda: _linked(c) is None, 10, "the killed daemon's record to expire")
