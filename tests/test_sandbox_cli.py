"""The sandbox as a newcomer meets it: its fault route refuses what it cannot use (curl's form
bodies, unknown keys) and says what it takes, `integrator sandbox fault` sets faults from the
command line, `--help` documents the body and the route names, and a stop is immediate."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
from support import Project, free_port

from integrator.sandbox import ErpSandbox, OmnitronSandbox, OmniumSandbox, Sandbox, running_sandbox

FORM = {"Content-Type": "application/x-www-form-urlencoded"}  # what curl -d sends by default
A_RULE = {"rules": [{"action": "status", "route": "query", "status": 502, "count": 2}]}


def table(url: str) -> dict[str, Any]:
    resp = requests.get(f"{url}/_sandbox/faults", timeout=5)
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


def create(sb: Sandbox, number: str) -> int:
    """One real create on the sandbox ERP: its status code."""
    resp = requests.post(
        f"{sb.erp.url}/api/orders/",
        json={"order_number": number, "lines": []},
        headers={"Authorization": f"Bearer {sb.credentials['ERP_TOKEN']}"},
        timeout=5,
    )
    return resp.status_code


# ------------------------------------------------------------------ the HTTP route
@pytest.mark.parametrize(
    ("body", "headers", "says"),
    [
        # curl -d 'action=status&status=503': used to clear every fault and answer ok
        (b"action=status&status=503", FORM, "the body is not JSON"),
        (b"", FORM, "got nothing"),  # curl -X POST with no body: used to clear every fault
        (b"not json", {"Content-Type": "application/json"}, "the body is not JSON"),
        (b"\xff\xfe{", {}, "the body is not JSON"),
        (b"[1, 2]", {}, "expected a JSON object"),
        (b'{"rule": []}', {}, "unknown key 'rule'"),
        (b'{"action": "status"}', {}, "a rule's keys go inside"),
        (b'{"rules": [{"action": "explode"}]}', {}, "rules[0].action: 'explode'"),
        (b'{"rules": [{"action": "status", "route": "crate"}]}', {}, "'crate' is not a route"),
        (b'{"rules": [{"action": "status", "status": "503"}]}', {}, "rules[0].status: '503'"),
        (b'{"rules": [{"action": "status", "status": 99}]}', {}, "from 100 to 599"),
        (b'{"rules": [{"action": "status", "rate": 2}]}', {}, "a number from 0 to 1"),
        (b'{"rules": [{"action": "status", "count": true}]}', {}, "rules[0].count: True"),
        (b'{"rules": [{"action": "status", "colour": 1}]}', {}, "unknown key 'colour'"),
        (b'{"rules": "status"}', {}, "rules: expected a list"),
        (b'{"rules": [{"action": "body", "body": "xx", "repeat": 268435456}]}', {}, "repeat"),
        (b'{"latency_ms": {"creat": 10}}', {}, "'creat' is not a route"),
        (b'{"latency_ms": {"*": -5}}', {}, "expected milliseconds"),
        (b'{"seed": "x"}', {}, "seed: 'x'; expected an integer"),
    ],
)
def test_a_spec_it_cannot_use_is_a_400_that_lists_what_is_allowed(
    sandbox: Sandbox, body: bytes, headers: dict[str, str], says: str
) -> None:
    erp = sandbox.erp.url
    assert requests.post(f"{erp}/_sandbox/faults", json=A_RULE, timeout=5).status_code == 200
    resp = requests.post(f"{erp}/_sandbox/faults", data=body, headers=headers, timeout=5)
    assert resp.status_code == 400, resp.text
    answer = resp.json()
    assert says in answer["detail"], answer["detail"]
    allowed = answer["allowed"]
    assert allowed["actions"] == sorted(
        ["status", "drop_after_commit", "drop_before", "timeout", "latency", "body",
         "status_then_commit", "duplicate_rows", "ignore_cursor"]
    )  # fmt: skip
    assert allowed["routes"] == ErpSandbox.route_names() and "create" in allowed["routes"]
    assert set(allowed["keys"]) == {"rules", "latency_ms", "seed"}
    assert {"action", "route", "status", "count", "rate"} <= set(allowed["rule_keys"])
    # nothing changed: the rule set before is still in force
    assert [(r["action"], r["route"], r["count"]) for r in table(erp)["rules"]] == [
        ("status", "query", 2)
    ]


def test_json_sent_as_a_form_is_taken_and_an_empty_object_clears(sandbox: Sandbox) -> None:
    """curl -d '{...}' without -H sends JSON labelled as a form: the route takes it."""
    erp = sandbox.erp.url
    spec = {"rules": [{"action": "status", "route": "create", "status": 503, "count": 1}]}
    resp = requests.post(f"{erp}/_sandbox/faults", data=json.dumps(spec), headers=FORM, timeout=5)
    assert resp.status_code == 200 and resp.json()["ok"] is True, resp.text
    assert [create(sandbox, "F-1"), create(sandbox, "F-2")] == [503, 201]
    assert requests.post(f"{erp}/_sandbox/faults", data=b"{}", timeout=5).status_code == 200
    assert table(erp)["rules"] == [] and table(erp)["latency_ms"] == {}


def test_every_server_knows_its_route_names(sandbox: Sandbox) -> None:
    """A rule aimed at a route of another server is refused; each server's own are taken."""
    with running_sandbox(1, omnium_port=0) as sb:
        assert sb.omnium is not None
        for server, own, other in (
            (sb.omnitron, "patch_order", "create"),
            (sb.erp, "create", "patch_item"),
            (sb.omnium, "update_status", "list"),
        ):
            ok = {"rules": [{"action": "status", "route": own}], "latency_ms": {own: 5}}
            assert requests.post(f"{server.url}/_sandbox/faults", json=ok, timeout=5).ok
            bad = {"rules": [{"action": "status", "route": other}]}
            resp = requests.post(f"{server.url}/_sandbox/faults", json=bad, timeout=5)
            assert resp.status_code == 400 and resp.json()["allowed"]["routes"] == (
                type(server).route_names()
            )


# ------------------------------------------------------------- integrator sandbox fault
def test_fault_command_sets_shows_and_clears(project: Project, sandbox: Sandbox) -> None:
    erp = ("--url", sandbox.erp.url)
    r = project.run("sandbox", "fault", "erp", "--status", "503", "--count", "3", *erp)
    assert r.code == 0, r.out + r.err
    assert "answer 503 on every route, 3 more calls" in r.out
    assert [create(sandbox, f"C-{i}") for i in range(4)] == [503, 503, 503, 201]

    r = project.run(
        "sandbox", "fault", "omnitron", "--route", "patch_order", "--action", "drop_before",
        "--number", "X-1", "--rate", "0.5", "--url", sandbox.omnitron.url,
    )  # fmt: skip
    assert r.code == 0, r.out + r.err
    assert "drop_before on patch_order, every call (50% of them), orders X-1" in r.out
    r = project.run("sandbox", "fault", "erp", "--route", "create", "--latency-ms", "20", *erp)
    assert r.code == 0 and "20 ms added on create" in r.out, r.out + r.err
    assert table(sandbox.erp.url)["rules"] == []  # only --latency-ms: no rule

    dead = f"http://127.0.0.1:{free_port()}"  # a proxy from the environment is not used
    env = {"OMNITRON_URL": sandbox.omnitron.url, "ERP_URL": sandbox.erp.url,
           "HTTP_PROXY": dead, "http_proxy": dead, "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
    r = project.run("sandbox", "fault", "show", "omnitron", "erp", env=env)
    assert r.code == 0, r.out + r.err
    assert "drop_before on patch_order" in r.out and "20 ms added on create" in r.out
    r = project.run("sandbox", "fault", "clear", "omnitron", "erp", env=env)
    assert r.code == 0, r.out + r.err
    assert r.out.count("no faults") == 2
    assert table(sandbox.erp.url)["latency_ms"] == {}
    assert table(sandbox.omnitron.url)["rules"] == []


def test_fault_command_refused_rule_changes_nothing(project: Project, sandbox: Sandbox) -> None:
    erp = ("--url", sandbox.erp.url)
    assert project.run("sandbox", "fault", "erp", "--status", "502", *erp).code == 0
    r = project.run("sandbox", "fault", "erp", "--action", "explode", "--route", "crate", *erp)
    assert r.code == 2, r.out + r.err  # the user's to fix
    assert "refused the faults (nothing changed)" in r.err
    assert "expected one of body, drop_after_commit" in r.err
    assert "'crate' is not a route here" in r.err and "create" in r.err
    assert "Traceback" not in r.err and "internal error" not in r.err
    assert [x["status"] for x in table(sandbox.erp.url)["rules"]] == [502]


def test_fault_command_finds_the_sandbox_or_says_how(project: Project, sandbox: Sandbox) -> None:
    port = free_port()
    # the sandbox's port option, given before `fault`, wins over $ERP_URL
    r = project.run("sandbox", "--erp-port", str(port), "fault", "show", "erp")
    assert r.code == 2
    assert f"no erp sandbox answers at http://127.0.0.1:{port}" in r.err
    assert "start one with `integrator sandbox`" in r.err and "Traceback" not in r.err
    # $ERP_URL on this machine (as the sandbox's .env has it) is used
    r = project.run("sandbox", "fault", "erp", "--count", "1", env={"ERP_URL": sandbox.erp.url})
    assert r.code == 0 and sandbox.erp.url in r.out, r.out + r.err
    # ... but never one elsewhere: a project's real ERP gets no sandbox call
    r = project.run(
        "sandbox", "--erp-port", str(port), "fault", "show", "erp",
        env={"ERP_URL": "http://erp.example.invalid:8702"},
    )  # fmt: skip
    assert "example.invalid" not in r.out + r.err and f"127.0.0.1:{port}" in r.err
    # an address that is not a sandbox's
    r = project.run("sandbox", "fault", "erp", "--url", f"{sandbox.erp.url}/api")
    assert r.code == 2 and "is not a sandbox erp (it answered 404" in r.err, r.out + r.err


def test_sandbox_help_documents_the_body_and_every_route(project: Project) -> None:
    r = project.run("sandbox", "--help")
    assert r.code == 0, r.err
    text = " ".join(r.out.split())
    assert "POST /_sandbox/faults with a JSON object" in text
    assert "{} clears them" in text and "curl -d" in text
    for key in ("rules", "latency_ms", "seed", "action", "route", "status", "count", "rate",
                "retry_after", "numbers"):  # fmt: skip
        assert f" {key} " in text, key
    for name, server in (("omnitron", OmnitronSandbox), ("erp", ErpSandbox),
                         ("omnium", OmniumSandbox)):  # fmt: skip
        assert f"{name} {', '.join(server.route_names())}" in text
    assert "fault" in r.out  # the subcommand
    r = project.run("sandbox", "fault", "--help")
    assert r.code == 0 and "integrator sandbox fault erp --status 503 --count 3" in r.out


# -------------------------------------------------------------------------- the stop
def test_a_sandbox_stops_at_once() -> None:
    """socketserver's loop polled every 0.5 s: every stop waited up to that, per server."""
    stops = []
    for _ in range(5):
        cm = running_sandbox(1, omnium_port=0)
        sb = cm.__enter__()
        assert requests.get(f"{sb.erp.url}/_sandbox/stats", timeout=5).ok
        t = time.perf_counter()
        cm.__exit__(None, None, None)
        stops.append(time.perf_counter() - t)
    assert sum(stops) < 0.5, stops  # was 0.75 s on average per stop of three servers


def test_the_sandbox_command_stops_at_once_on_ctrl_c(project: Project) -> None:
    ports = [str(free_port()) for _ in range(5)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", "sandbox", "--orders", "1",
         "--omnitron-port", ports[0], "--erp-port", ports[1], "--omnium-port", ports[2],
         "--jsonrpc-erp-port", ports[3], "--soap-erp-port", ports[4]],
        cwd=project.root,
        env={**os.environ, **project.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # it says so once every server listens
            if "Ctrl-C stops" in line:
                break
        else:
            pytest.fail(f"the sandbox did not start: {proc.stderr.read() if proc.stderr else ''}")
        assert requests.get(f"http://127.0.0.1:{ports[1]}/_sandbox/stats", timeout=5).ok
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.readline()  # printed once every server is stopped
        took = time.perf_counter() - t
        assert rest.strip() == "sandbox stopped", rest
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    # three servers polled every 0.5 s: 0.75 s on average, up to 1.5 s
    assert took < 0.3, took


def test_ctrl_c_while_the_sandbox_prints_its_addresses_stops_it_in_order(
    project: Project,
) -> None:
    """A Ctrl-C that comes while the sandbox still prints what it serves (a person who has
    seen enough, or a test that waits only for the first line) stops it in order, as one
    after "Ctrl-C stops." does: before, the KeyboardInterrupt left from the middle of a print
    and the sandbox ended without stopping its servers in order or saying so."""
    ports = [str(free_port()) for _ in range(5)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", "sandbox", "--orders", "1",
         "--omnitron-port", ports[0], "--erp-port", ports[1], "--omnium-port", ports[2],
         "--jsonrpc-erp-port", ports[3], "--soap-erp-port", ports[4]],
        cwd=project.root,
        env={**os.environ, **project.env, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # it says so once every server listens
            if "Omnitron sandbox:" in line:  # the first line: the others are still coming
                break
        else:
            pytest.fail(f"the sandbox did not start: {proc.stderr.read() if proc.stderr else ''}")
        t = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        rest = proc.stdout.read()
        took = time.perf_counter() - t
        assert rest.strip().endswith("sandbox stopped"), rest
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    # three servers polled every 0.5 s: 0.75 s on average, up to 1.5 s
    assert took < 0.3, took
