"""The operator console (read views, JSON API, OpenAPI), through real HTTP: ``integrator
console`` in a subprocess, and the daemon serving it, over a store filled by sandbox runs."""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import sqlite3
from pathlib import Path
from typing import cast
from urllib.parse import quote

import requests
from support import Project, fault_rule, unsent
from support.console import ConsoleProcess, console
from support.daemon import daemon

from integrator.sandbox import Sandbox
from integrator.sandbox.seed import CHANNEL_SECRET

STATIC = Path(__file__).resolve().parents[1] / "integrator" / "console" / "static"


def _run(project: Project, *args: str) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert r.code in (0, 1), r.err


def test_dashboard_after_a_run(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    _run(project)
    with console(project) as c:
        flows = {f["flow"]: f for f in c.json("/api/flows")["flows"]}
        f = flows["order_flow"]
        assert f["last_run"]["status"] == "ok"
        assert f["last_run"]["orders_ok"] == len(numbers)
        assert f["last_run"]["duration_seconds"] > 0
        assert f["schedule"] == "cron */5 * * * * (Europe/Istanbul)"
        assert dt.datetime.fromisoformat(f["next_fire"]) > dt.datetime.now(dt.UTC)
        assert f["error_rate"] == 0.0 and f["window_runs"] == 1
        assert f["average_run_seconds"] == f["last_run"]["duration_seconds"]
        # the read measured the oldest unsent order (seeded days ago) and the run stored it
        assert f["oldest_unsent_seconds"] > 3600 and f["oldest_unsent_run"] == 1
        assert f["quarantined"] == 0 and f["states"] == {"done": len(numbers)}
        assert flows["order_status"]["last_run"] is None  # defined, never run
        html = c.page("/")
        row = re.search(r'<tr class="flow" data-flow="order_flow">(.*?)</tr>', html, re.S)
        assert row is not None, html
        assert 'class="ok">ok<' in row[1] and f">{len(numbers)} / 0 / 0<" in row[1]
        assert "0 %" in row[1]
        assert "Standalone console" in html and "need the daemon" in html
        assert c.json("/api/flows/order_flow")["last_run"]["id"] == 1
        assert c.get("/api/flows/nope").status_code == 404


def test_error_rate_and_average_over_the_window(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    # a run whose login is refused fails as a whole
    r = project.run("run-flow", "order_flow", "--no-progress", env={"ERP_TOKEN": "wrong-token"})
    assert r.code != 0
    _run(project, "--limit", "2")
    with console(project, ["--window", "2"]) as c:
        f = c.json("/api/flows/order_flow")
        assert f["window_runs"] == 2 and f["error_rate"] == 0.5
        f = c.json("/api/flows/order_flow?window=3")
        assert f["window_runs"] == 3 and abs(f["error_rate"] - 1 / 3) < 1e-9
        assert c.json("/api/flows/order_flow?window=1")["error_rate"] == 0.0
        bad = c.get("/api/flows?window=0")
        assert bad.status_code == 400 and "window" in bad.json()["detail"]


def test_runs_filters_and_a_runs_log(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "3")
    r = project.run("run-flow", "order_flow", "--no-progress", env={"ERP_TOKEN": "wrong-token"})
    assert r.code != 0
    _run(project)
    with console(project) as c:
        runs = c.json("/api/runs")["runs"]
        assert [x["id"] for x in runs] == [3, 2, 1]
        assert [x["status"] for x in c.json("/api/runs?status=failed")["runs"]] == ["failed"]
        assert c.json("/api/runs?flow=order_status")["runs"] == []
        assert len(c.json("/api/runs?flow=order_flow")["runs"]) == 3
        tomorrow = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).date().isoformat()
        yesterday = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).date().isoformat()
        assert c.json(f"/api/runs?since={tomorrow}")["runs"] == []
        assert len(c.json(f"/api/runs?since={yesterday}&until={tomorrow}")["runs"]) == 3
        assert c.json(f"/api/runs?until={yesterday}")["runs"] == []
        # a time with a zone is that instant: a minute before the first run, written in +05:00
        first = dt.datetime.fromisoformat(runs[-1]["started_at"]) - dt.timedelta(minutes=1)
        east = first.astimezone(dt.timezone(dt.timedelta(hours=5))).isoformat()
        assert len(c.json(f"/api/runs?since={quote(east)}")["runs"]) == 3
        assert c.json(f"/api/runs?until={quote(east)}")["runs"] == []
        page = c.json("/api/runs?limit=2")
        assert [x["id"] for x in page["runs"]] == [3, 2] and page["next_before"] == 2
        assert [x["id"] for x in c.json("/api/runs?limit=2&before=2")["runs"]] == [1]
        for query, word in (
            ("status=broken", "status"),
            ("since=yesterday", "since"),
            ("before=-1", "before"),
            ("limit=100000", "limit"),
        ):
            bad = c.get(f"/api/runs?{query}")
            assert bad.status_code == 400, query
            assert word in bad.json()["detail"], bad.text
        assert c.get("/runs?status=broken").status_code == 400
        assert "takes one of" in c.get("/runs?status=broken").text
        # the HTML list, whole and as the fragment htmx asks for
        html = c.page("/runs?status=failed")
        assert 'data-run="2"' in html and 'data-run="1"' not in html and "<form" in html
        part = c.get("/runs?flow=order_flow", headers={"HX-Request": "true"})
        assert part.status_code == 200 and "<html" not in part.text
        assert part.text.count('class="run"') == 3
        # a run's log: its JSON lines, what the run wrote
        log = c.json("/api/runs/1/log")
        assert log["truncated"] is False and log["size"] > 0
        assert sum(1 for x in log["lines"] if x.get("event") == "order_ok") == 3
        assert "order_ok" in c.page("/runs/1")
        failed = c.json("/api/runs/2")
        assert failed["status"] == "failed" and failed["error"]
        assert c.get("/api/runs/99").status_code == 404
        assert c.get("/runs/99").status_code == 404


def test_a_long_log_is_shown_by_its_end_only(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "1")
    path = project.root / "logs" / "order_flow" / "run-1.jsonl"
    with path.open("a") as fh:  # 1 MB more of lines, the last one known
        for i in range(4000):
            fh.write(json.dumps({"event": "filler", "i": i, "pad": "x" * 240}) + "\n")
    with console(project) as c:
        log = c.json("/api/runs/1/log")
        assert log["truncated"] is True and log["size"] > 1_000_000
        assert len(json.dumps(log["lines"])) <= 300 * 1024
        assert log["lines"][-1]["i"] == 3999
        assert all(isinstance(x, dict) for x in log["lines"])  # no half line at the cut
        assert "last 256 KiB" in c.page("/runs/1")


def test_a_hostile_flow_name_reads_no_file_outside_the_logs(
    project: Project, sandbox: Sandbox
) -> None:
    _run(project, "--limit", "1")
    (project.root / "outside.jsonl").write_text('{"event": "outside-the-logs"}\n')
    (project.root / "run-1.jsonl").write_text('{"event": "outside-the-logs"}\n')
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute("UPDATE runs SET flow = '..' WHERE id = 1")
    with console(project) as c:
        log = c.json("/api/runs/1/log")
        assert log["lines"] == [] and "not a folder name" in log["note"]


def test_order_timeline(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=422,
        body=json.dumps({"detail": "unknown product"}),
        numbers=[numbers[1]],
    )
    _run(project)
    with console(project) as c:
        t = c.json(f"/api/orders/{numbers[0]}")
        (j,) = t["journal"]
        assert j["flow"] == "order_flow" and j["state"] == "done"
        assert j["erp_request"] and j["erp_answer"]  # the ERP request and answer, as stored
        assert j["erp_ref"]
        facts = [e["fact"] for e in t["events"]]
        assert "write_answered" in facts and "done" in facts
        assert any(x["key"].startswith("log.") for x in t["log"])
        html = c.page(f"/orders/{numbers[0]}")
        assert 'class="erp-request"' in html and 'class="erp-answer"' in html
        assert html.count('class="event"') == len(t["events"])
        assert "log. attributes" in html
        failed = c.json(f"/api/orders/{numbers[1]}")
        assert failed["journal"][0]["last_error"]
        # search across flows by number, or its beginning
        found = c.json(f"/api/orders?q={numbers[0]}")["orders"]
        assert [o["number"] for o in found] == [numbers[0]]
        prefix = numbers[0][:-2]
        assert {o["number"] for o in c.json(f"/api/orders?q={prefix}")["orders"]} == {
            n for n in numbers if n.startswith(prefix)
        }
        assert c.json("/api/orders?q=nothing-like-it")["orders"] == []
        assert numbers[0] in c.page(f"/orders?q={prefix}")
        missing = c.get("/api/orders/000-none")
        assert missing.status_code == 404 and "not in the state store" in missing.json()["detail"]
        groups = c.json("/api/failures")["groups"]
        assert groups and groups[0]["example"] == numbers[1]
        assert numbers[1] in c.page("/failures")


def test_no_secret_in_any_page_or_answer(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    api_key = "X-api-key-5d2f9b7e1c"
    project.env["ERP_API_KEY"] = api_key
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "    CustomHeaders:\n", "    CustomHeaders:\n      X-Api-Key: ${ERP_API_KEY}\n"
        )
    )
    project.forward_channel_conf()
    secrets = [
        CHANNEL_SECRET,
        api_key,
        sandbox.credentials["OMNITRON_PASSWORD"],
        sandbox.credentials["ERP_TOKEN"],
    ]
    echo = " ".join(secrets[1:])  # an ERP that echoes the credentials it got
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="create",
        status=400,
        body=json.dumps({"detail": f"bad request from {echo}"}),
        numbers=[numbers[0]],
    )
    _run(project)
    # what a script logged and a hostile store row would show: the console masks again
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute(
            "UPDATE journal SET erp_ref = ?, response_json = ? WHERE order_number = ?",
            (
                f"ref {api_key}",
                json.dumps({"token": "plain-token-value-1", "x": api_key}),
                numbers[2],
            ),
        )
    with console(project) as c:
        paths = ["/", "/runs", "/failures", f"/orders?q={numbers[0][:-2]}", "/api/flows"]
        paths += ["/api/runs", "/api/failures", "/api/openapi.json", "/api/flows/order_flow"]
        for run in c.json("/api/runs")["runs"]:
            paths += [f"/runs/{run['id']}", f"/api/runs/{run['id']}", f"/api/runs/{run['id']}/log"]
        for n in numbers:
            paths += [f"/orders/{n}", f"/api/orders/{n}"]
        seen = 0
        for path in paths:
            r = c.get(path)
            assert r.status_code == 200, path
            for secret in [*secrets, "plain-token-value-1"]:
                assert secret not in r.text, (path, secret)
            seen += len(r.text)
        assert "last_error" in c.get(f"/api/orders/{numbers[0]}").text
        assert "bad request from" in c.get(f"/api/orders/{numbers[0]}").text
        assert seen > 50_000  # the pages were not empty


def _raw(c: ConsoleProcess, request: bytes) -> bytes:
    host, port = c.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(request)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    return out


def test_host_header_and_methods(project: Project, sandbox: Sandbox) -> None:
    with console(project) as c:
        port = c.url.rsplit(":", 1)[1]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", "localhost", "127.0.0.2"):
            assert c.get("/api/flows", headers={"Host": host}).status_code == 200, host
        for host in (
            "evil.example",
            f"evil.example:{port}",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            f"[::1]:{port}@evil.example",
            "0.0.0.0",
            "",
        ):
            r = c.get("/api/flows", headers={"Host": host})
            assert r.status_code == 421, host
            assert "loopback Host" in r.json()["detail"]
            assert c.get("/", headers={"Host": host}).status_code == 421
        # an HTTP/1.0 request without any Host header; two Host headers
        assert _raw(c, b"GET /api/flows HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 421")
        two = b"GET /api/flows HTTP/1.1\r\nHost: localhost\r\nHost: evil.example\r\n"
        assert _raw(c, two + b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 421")
        for method in ("POST", "PUT", "DELETE", "PATCH"):
            r = requests.request(method, c.url + "/api/flows", timeout=5)
            assert r.status_code == 405 and r.headers["Allow"] == "GET, HEAD", method
        r = c.get("/")
        assert r.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert "Access-Control-Allow-Origin" not in r.headers


def test_refuses_to_listen_beyond_loopback(project: Project) -> None:
    for where in ("0.0.0.0:0", "[::]:0"):
        r = project.run("console", "--http", where, timeout=30)
        assert r.code == 2, (where, r.out, r.err)
        assert "no login yet" in r.err and "loopback" in r.err
        assert "Traceback" not in r.err
    r = project.run("console", "--http", "nonsense", timeout=30)
    assert r.code == 2 and "HOST:PORT" in r.err
    # a port of digits int() refuses (a superscript): a usage error, not an internal one;
    # the daemon reads --http with the same check
    for command in ("console", "daemon"):
        r = project.run(command, "--http", "127.0.0.1:\u00b2", timeout=30)
        assert r.code == 2 and "HOST:PORT" in r.err, (command, r.err)
        assert "internal error" not in r.err


def test_openapi_document_describes_every_api_route(project: Project) -> None:
    from flask import Flask
    from openapi_spec_validator import validate

    from integrator.connectors.redact import Redactor
    from integrator.console.app import ConsoleSource, create_app

    with console(project) as c:
        doc = c.json("/api/openapi.json")
        assert c.json("/api/") == doc
    validate(doc)  # raises on a document that is not OpenAPI 3.1
    guard = create_app(
        ConsoleSource(
            store=lambda: None,  # type: ignore[arg-type, return-value]  # not asked
            redactor=Redactor,
            log_dir=Path,
            schedules=dict,
        )
    )
    routes = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in cast(Flask, guard.app).url_map.iter_rules()
        if rule.rule.startswith("/api/")
    }
    assert routes == set(doc["paths"]), routes ^ set(doc["paths"])
    for path, item in doc["paths"].items():
        # reads GET; the actions (/api/actions/) and the workbench's runs POST
        writes = path.startswith(("/api/actions/", "/api/workbench/"))
        (method,) = item
        assert method == ("post" if writes else "get"), path
        params = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in item[method].get("parameters", []) if p["in"] == "path"}
        assert params == declared, path
    # the document's roles are the role table's (security.ROUTE_ROLES decides; this describes)
    from integrator.console.security import LOCAL_WRITES, ROUTE_ROLES

    app = cast(Flask, guard.app)
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or "POST" not in (rule.methods or ()):
            continue
        op = doc["paths"][rule.rule]["post"]
        assert op["x-requires"]["role"] == ROUTE_ROLES[rule.endpoint], rule.rule
        local = "from the console's own pages only" in op["description"]
        assert local == (rule.endpoint in LOCAL_WRITES), rule.rule


def test_api_answers_match_their_schemas(project: Project, sandbox: Sandbox) -> None:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    _run(project, "--limit", "2")
    # an order the run took (with concurrent workers, not necessarily the first listed)
    number = str(project.sql("SELECT order_number FROM journal ORDER BY order_number")[0][0])
    with console(project) as c:
        doc = c.json("/api/openapi.json")
        for path, concrete in (
            ("/api/flows", "/api/flows"),
            ("/api/flows/{name}", "/api/flows/order_flow"),
            ("/api/runs", "/api/runs"),
            ("/api/runs/{run_id}", "/api/runs/1"),
            ("/api/runs/{run_id}/log", "/api/runs/1/log"),
            ("/api/orders", f"/api/orders?q={number}"),
            ("/api/orders/{number}", f"/api/orders/{number}"),
            ("/api/failures", "/api/failures"),
        ):
            schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"][
                "schema"
            ]
            whole = {**schema, "components": doc["components"]}
            errors = list(Draft202012Validator(whole).iter_errors(c.json(concrete)))
            assert not errors, (path, [e.message for e in errors])


def test_the_daemon_serves_the_console(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    with daemon(project) as d:
        assert requests.get(d.url("/healthz"), timeout=5).status_code == 200
        flows = requests.get(d.url("/api/flows"), timeout=5).json()
        assert flows["where"] == "daemon"
        by = {f["flow"]: f for f in flows["flows"]}
        assert by["order_flow"]["last_run"]["orders_ok"] == 2
        page = requests.get(d.url("/"), timeout=5)
        assert page.status_code == 200 and "Served by the daemon" in page.text
        assert requests.get(d.url("/runs/1"), timeout=5).status_code == 200
        evil = requests.get(d.url("/api/flows"), headers={"Host": "evil.example"}, timeout=5)
        assert evil.status_code == 421
        # its own routes keep their answers: an event without its secret is still refused
        assert requests.post(d.url("/events/order_flow"), timeout=5).status_code != 405
        assert requests.post(d.url("/api/flows"), timeout=5).status_code == 405


def test_the_daemon_beyond_loopback_does_not_serve_the_console(project: Project) -> None:
    with daemon(project, args=["--http", "0.0.0.0:0", "--behind-proxy"]) as d:
        assert d.named("console_not_served")
        port = d.named("daemon_started")[0]["http"].rsplit(":", 1)[1]
        base = f"http://127.0.0.1:{port}"
        r = requests.get(base + "/api/flows", timeout=5)
        assert r.status_code == 404 and "only when the daemon listens on loopback" in r.text
        assert requests.get(base + "/healthz", timeout=5).status_code == 200


def test_vendored_htmx_is_the_version_it_says() -> None:
    from integrator.console import HTMX_VERSION

    text = (STATIC / "htmx.min.js").read_text()
    assert f'version:"{HTMX_VERSION}"' in text
    licence = (STATIC / "htmx.LICENSE").read_text()
    assert "Zero-Clause BSD" in licence


def test_stored_text_is_escaped_not_run(project: Project, sandbox: Sandbox) -> None:
    _run(project, "--limit", "2")
    # the orders the run took (with concurrent workers, not necessarily the first listed)
    number = str(project.sql("SELECT order_number FROM journal ORDER BY order_number")[0][0])
    script = '<script>alert("x")</script>'
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute(
            "UPDATE journal SET last_error = ?, state = 'quarantined' WHERE order_number = ?",
            (f"ERP said {script}", number),
        )
        db.execute("UPDATE events SET message = ? WHERE order_number = ?", (script, number))
        db.execute("UPDATE runs SET error = ? WHERE id = 1", (script,))
    with console(project) as c:
        for path in (f"/orders/{number}", "/failures", "/runs", "/runs/1"):
            html = c.page(path)
            assert "<script>alert" not in html, path
            assert "&lt;script&gt;alert(" in html, path
        assert script in c.json(f"/api/orders/{number}")["events"][0]["message"]
