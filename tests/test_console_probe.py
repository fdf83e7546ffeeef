"""An adversarial probe of the whole console, through real HTTP against ``integrator console``
over a store filled by sandbox runs: every route guarded, hostile parameters and bodies
answered with a 4xx that says what was expected (never a 500), a 405 that names what the path
takes, and the OpenAPI document's bounds the console's own."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import pytest
import requests
from support import Project, fault_rule, faults, unsent
from support.console import PASSWORDS, TOKENS, ConsoleProcess, console, with_users

from integrator.sandbox import Sandbox


def _run(project: Project, *args: str) -> None:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert r.code in (0, 1), r.err


def _filled(project: Project, sandbox: Sandbox) -> str:
    """Two runs, one order quarantined (returned); users declared."""
    bad = unsent(sandbox)[1]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[bad])
    _run(project, "--limit", "4")
    _run(project, "--limit", "4")
    assert project.state(bad) == "quarantined"
    faults(sandbox.erp.url, {})
    with_users(project)
    return bad


def _rules() -> list[tuple[str, str, frozenset[str]]]:
    """Every route of the console's app: (endpoint, rule, methods but HEAD/OPTIONS)."""
    from flask import Flask

    from integrator.connectors.redact import Redactor
    from integrator.console.app import ConsoleSource, create_app

    guard = create_app(
        ConsoleSource(
            store=lambda: None,  # type: ignore[arg-type, return-value]  # not asked
            redactor=Redactor,
            log_dir=Path,
            schedules=dict,
        )
    )
    return [
        (r.endpoint, r.rule, frozenset(r.methods or ()) - {"HEAD", "OPTIONS"})
        for r in cast(Flask, guard.app).url_map.iter_rules()
    ]


def _concrete(rule: str, number: str) -> str:
    values = {"run_id": "1", "number": number, "name": "order_flow", "filename": "htmx.min.js"}
    return re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values[m[1]], rule)


def _login(c: ConsoleProcess, name: str) -> tuple[requests.Session, str]:
    s = requests.Session()
    form = s.get(c.url + "/login", timeout=10).text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token, form
    r = s.post(
        c.url + "/login",
        data={"name": name, "password": PASSWORDS[name], "csrf_token": token[1]},
        allow_redirects=False,
        timeout=30,
    )
    assert r.status_code == 303, r.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', s.get(c.url + "/", timeout=10).text)
    assert csrf
    return s, csrf[1]


# ------------------------------------------------------------------ every route guarded
def test_every_route_refuses_without_a_session_and_below_its_role(
    project: Project, sandbox: Sandbox
) -> None:
    """Walks the app's url_map: every endpoint, every method it takes. Without a session a
    page sends to the login, anything else is 401; a viewer (token, or session with its CSRF
    token, form and JSON) is 403 on the operator's and the admin's routes, an operator on the
    admin's. Nothing changes in the store."""
    from integrator.console.security import ROUTE_ROLES

    bad = _filled(project, sandbox)
    events = project.sql("SELECT COUNT(*) FROM events")
    runs = project.sql("SELECT COUNT(*) FROM runs")
    rules = _rules()
    assert {e for e, _r, _m in rules} == set(ROUTE_ROLES)
    rank = {"viewer": 1, "operator": 2, "admin": 3}
    body = {"flow": "order_flow", "number": bad, "as": "resend", "force": "true"}
    with console(project) as c:
        vera, vera_csrf = _login(c, "vera")
        otto, otto_csrf = _login(c, "otto")
        checked = 0
        for endpoint, rule, methods in rules:
            role = ROUTE_ROLES[endpoint]
            if role is None:
                continue  # the login, the logout, static files
            url = c.url + _concrete(rule, bad)
            for method in methods:
                # no session, no token: never the route's answer
                r = requests.request(method, url, json=body, timeout=30, allow_redirects=False)
                page = not rule.startswith("/api/") and method == "GET"
                want = 303 if page else 401
                assert r.status_code == want, (method, rule, r.status_code, r.text[:200])
                if page:
                    assert r.headers["Location"].startswith("/login?next=/"), rule
                # a forged or unknown token is not a session either
                r = requests.request(
                    method, url, headers={"Authorization": "Bearer " + "z" * 40}, timeout=30
                )
                assert r.status_code == 401, (method, rule, r.status_code)
                below = [
                    (who, s, csrf)
                    for who, s, csrf in (("vera", vera, vera_csrf), ("otto", otto, otto_csrf))
                    if rank[{"vera": "viewer", "otto": "operator"}[who]] < rank[role]
                ]
                for who, s, csrf in below:
                    r = requests.request(
                        method,
                        url,
                        json=body,
                        headers={"Authorization": f"Bearer {TOKENS[who]}"},
                        timeout=30,
                    )
                    assert r.status_code == 403, (who, method, rule, r.status_code)
                    assert role in r.json()["detail"], r.text
                    # a session with its CSRF token: as a form and as JSON, still refused
                    r = s.request(method, url, data={**body, "csrf_token": csrf}, timeout=30)
                    assert r.status_code == 403, (who, method, rule, r.status_code)
                    r = s.request(
                        method, url, json=body, headers={"X-CSRF-Token": csrf}, timeout=30
                    )
                    assert r.status_code == 403, (who, method, rule, r.status_code)
                    checked += 1
        assert checked >= 9  # 8 operator routes for vera, /api/users for both
    assert project.state(bad) == "quarantined"
    assert project.sql("SELECT COUNT(*) FROM events") == events
    assert project.sql("SELECT COUNT(*) FROM runs") == runs


# ------------------------------------------------------------------ never a 500
HOSTILE = [
    # str.isdigit says yes, int() says no: was a 500
    ("/api/flows?window=²", 400, "?window= takes a whole number"),
    ("/?window=²", 400, "?window= takes a whole number"),
    ("/api/runs?limit=¹", 400, "?limit= takes a whole number"),
    ("/api/alarms?limit=³", 400, "?limit= takes a whole number"),
    ("/api/runs/1/live?after=⁴", 400, "?after= takes a whole number"),
    # more digits than int() reads (4300): was a 500
    ("/api/runs?before=" + "9" * 5000, 400, "?before= takes a whole number"),
    # a zone that puts the instant outside the years 1-9999: was a 500 (OverflowError)
    ("/api/runs?since=9999-12-31T23:59:59-23:59", 400, "?since= is out of range"),
    ("/api/runs?until=0001-01-01T00:00%2B23:00", 400, "?until= is out of range"),
    ("/runs?since=9999-12-31T23:59:59-23:59", 400, "?since= is out of range"),
    # a run id beyond SQLite's 64-bit integers: was a 500 (OverflowError), now no such run
    ("/api/runs/99999999999999999999999", 404, "there is no run"),
    ("/api/runs/99999999999999999999999/log", 404, "there is no run"),
    ("/api/runs/99999999999999999999999/live", 404, "there is no run"),
    ("/runs/99999999999999999999999", 404, "there is no run"),
    ("/runs/99999999999999999999999/live", 404, "there is no run"),
    ("/api/runs/9223372036854775807", 404, "there is no run"),
]


def test_hostile_query_values_are_a_clear_4xx_never_a_500(
    project: Project, sandbox: Sandbox
) -> None:
    _filled(project, sandbox)
    with console(project) as c:
        headers = {"Authorization": f"Bearer {TOKENS['vera']}"}
        for path, status, words in HOSTILE:
            r = c.get(path, headers=headers)
            assert r.status_code == status, (path[:80], r.status_code, r.text[:200])
            assert words in r.text.replace("&#39;", "'"), (path[:80], r.text[:300])
            assert "Traceback" not in r.text
        # in range, they still answer
        assert c.get("/api/runs?since=9999-12-30T00:00-23:59", headers=headers).status_code == 200
        assert c.get("/api/flows?window=1000", headers=headers).status_code == 200


def test_hostile_json_bodies_are_a_400_never_a_500(project: Project, sandbox: Sandbox) -> None:
    bad = _filled(project, sandbox)
    deep = "[" * 20000 + "]" * 20000
    with console(project) as c:
        otto = {"Authorization": f"Bearer {TOKENS['otto']}", "Content-Type": "application/json"}
        for path, data in (
            # nesting beyond the parser's recursion: was a 500 (RecursionError)
            ("/api/actions/release", '{"flow": ' + deep + "}"),
            ("/api/workbench/run", '{"flow": "order_flow", "input": ' + deep + "}"),
            ("/api/workbench/golden", deep),
        ):
            r = requests.post(c.url + path, data=data, headers=otto, timeout=60)
            assert r.status_code == 400, (path, r.status_code, r.text[:200])
            assert "nests too deeply" in r.json()["detail"], r.text
        # an object where a name goes: was str() of it, a 409 "flow \"{'a': 1}\" is in..."
        for field in ({"flow": {"a": 1}}, {"flow": ["order_flow"]}):
            r = requests.post(c.url + "/api/actions/release", json=field, headers=otto, timeout=30)
            assert r.status_code == 400, r.text
            assert "'flow': expected text" in r.json()["detail"], r.text
        r = requests.post(
            c.url + "/api/actions/replay",
            json={"number": bad, "force": {"yes": True}},
            headers=otto,
            timeout=30,
        )
        assert r.status_code == 400 and "'force'" in r.json()["detail"], r.text
        # the workbench's stage index and status code in Unicode digits (str.isdigit takes
        # "²", int() does not)
        for key in ("stage", "status"):
            body = {"flow": "order_flow", "input": "{}", key: "\u00b2"}
            r = requests.post(c.url + "/api/workbench/run", json=body, headers=otto, timeout=30)
            assert r.status_code == 400 and f"{key}:" in r.json()["detail"], (key, r.text[:200])
    assert project.state(bad) == "quarantined"


# ------------------------------------------------------------------ 405 names what is taken
@pytest.mark.parametrize("users", [True, False])
def test_a_405_names_the_methods_the_path_takes(project: Project, users: bool) -> None:
    """RFC 9110: a 405 carries Allow. Flask's was dropped by the console's error handler; the
    guard said "GET, HEAD, POST" of every path, a POST-only action included."""
    if users:
        with_users(project)
    auth = {"Authorization": f"Bearer {TOKENS['otto']}"} if users else {}
    with console(project) as c:
        cases: list[tuple[str, str, str]] = [
            ("PUT", "/api/flows", "GET, HEAD"),
            ("OPTIONS", "/api/workbench/run", "POST"),
            ("DELETE", "/", "GET, HEAD"),
        ]
        if users:
            cases += [
                ("POST", "/api/flows", "GET, HEAD, OPTIONS"),  # Flask's own 405
                ("GET", "/api/actions/run", "OPTIONS, POST"),
                ("OPTIONS", "/api/actions/release", "POST"),
            ]
        else:
            cases += [("POST", "/api/flows", "GET, HEAD")]
        for method, path, allow in cases:
            r = requests.request(method, c.url + path, headers=auth, timeout=10)
            assert r.status_code == 405, (method, path, r.status_code, r.text)
            assert r.headers.get("Allow") == allow, (method, path, r.headers.get("Allow"))
            assert r.json()["detail"], r.text


# ------------------------------------------------------------------ the document's bounds
def test_the_documents_bounds_and_refusals_are_the_consoles(project: Project) -> None:
    """Every integer query parameter the document bounds is refused just outside its bounds
    and taken at them; every operation documents 401 and 403 (with users) and a required
    name is at least one character. Schemathesis found these (ST202, ST103)."""
    with_users(project)
    with console(project) as c:
        headers = {"Authorization": f"Bearer {TOKENS['otto']}"}
        doc = c.get("/api/openapi.json", headers=headers).json()
        bounded = 0
        for path, item in doc["paths"].items():
            for method, op in item.items():
                assert {"401", "403"} <= set(op["responses"]), (method, path)
                for p in op.get("parameters", []):
                    if p["in"] != "query" or p["schema"]["type"] != "integer":
                        continue
                    low, high = p["schema"]["minimum"], p["schema"]["maximum"]
                    concrete = path.replace("{run_id}", "1").replace("{name}", "order_flow")
                    for value, ok in (
                        (low, True),
                        (high, True),
                        (low - 1, False),
                        (high + 1, False),
                    ):
                        if value < 0:
                            continue  # not digits: refused as such
                        r = c.get(f"{concrete}?{p['name']}={value}", headers=headers)
                        assert (r.status_code != 400) == ok, (path, p["name"], value, r.text)
                    bounded += 1
            if "post" in item and path.startswith("/api/actions/"):
                body = item["post"]["requestBody"]["content"]["application/json"]["schema"]
                for name in body["required"]:
                    if (
                        body["properties"][name].get("type") == "string"
                        and "enum" not in (body["properties"][name])
                    ):
                        assert body["properties"][name]["minLength"] == 1, (path, name)
        assert bounded == 6  # window twice, limit twice, before, after
