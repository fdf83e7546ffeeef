"""Alarms in the console, through real HTTP against `integrator console` and the daemon over
sandbox runs: the dashboard's alarm state, the alarms page and its API with the notices; the
standalone console evaluating the alarms on its timer under the store's lease (alone it tells
once; with a daemon and another console over the same store, one notice per firing; an
orderly stop gives the lease up); no secret (a webhook URL's token, an SMTP password) shown."""

from __future__ import annotations

import json
import socket
import sqlite3
import time
from contextlib import ExitStack
from typing import Any

import requests
from support import Project, faults, free_port, wait_for
from support.alarms import ERROR_ALARM, HOOK_TOKEN, Receiver, erp_refuses, with_alarms
from support.console import ConsoleProcess, console
from support.daemon import daemon, unscheduled

from integrator.sandbox import Sandbox

SMTP_PASSWORD = "smtp-pass-0123456789-secret"

MAIL_NOTIFIER = """
  - name: ops-mail
    type: email
    host: 127.0.0.1
    port: {port}
    from: integrator@example.com
    to: [ops@example.com]
    username: alerts
    password: ${{SMTP_PASSWORD}}
"""

TWO_ALARMS = (
    ERROR_ALARM
    + """  - name: erp-errors-mail
    condition: error_rate
    above: 50
    runs: 1
    cool_off: 1h
    notify: [ops-mail]
"""
)


def with_mail(project: Project, receiver: Receiver) -> None:
    """The webhook alarm, and one that mails through an SMTP server nobody runs (its notices
    fail, named); the password from the environment."""
    with_alarms(project, receiver, TWO_ALARMS)
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text() + MAIL_NOTIFIER.format(port=free_port()))
    project.env["SMTP_PASSWORD"] = SMTP_PASSWORD


def _alarm(answer: dict[str, Any], flow: str, name: str) -> dict[str, Any]:
    return next(a for a in answer["alarms"] if (a.get("flow", flow), a["alarm"]) == (flow, name))


def _flow(answer: dict[str, Any], name: str) -> dict[str, Any]:
    return next(f for f in answer["flows"] if f["flow"] == name)


def _evaluated_twice_more(c: ConsoleProcess, flow: str = "order_flow") -> None:
    """Wait until the alarm's last evaluation is at least 2 s later than now (whoever holds
    the lease: evaluations at a 1 s interval have gone by)."""
    start = time.time()

    def later() -> bool:
        at = _alarm(c.json("/api/alarms"), flow, "erp-errors")["evaluated_at"]
        return at is not None and _ts(at) >= start + 2

    wait_for(later, 30, "two more evaluations")


def _ts(iso: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(iso).timestamp()


def _schema_errors(c: ConsoleProcess, path: str, concrete: str) -> list[str]:
    from jsonschema import Draft202012Validator  # type: ignore[import-untyped]

    doc = c.json("/api/openapi.json")
    schema = doc["paths"][path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    whole = {**schema, "components": doc["components"]}
    return [e.message for e in Draft202012Validator(whole).iter_errors(c.json(concrete))]


def test_the_console_shows_a_firing_alarm_its_notices_and_its_recovery(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The standalone console evaluates the alarms itself (--alarm-interval 1): after the ERP
    refuses, the dashboard and /api/flows show the alarm firing with since when and the value
    against the threshold, the flow without alarms says so; /alarms and /api/alarms list the
    condition, cool-off, the sent notice and the email that failed to send. A clean run: ok,
    and a recovery notice. The webhook was told once per change, however often it evaluated."""
    with_mail(project, receiver)
    assert project.run("validate").code == 0
    erp_refuses(sandbox)
    assert project.run("run-flow", "order_flow").code != 0
    with console(project, ["--alarm-interval", "1"]) as c:
        wait_for(lambda: receiver.posts or None, 30, "the firing notice")
        flows = c.json("/api/flows")
        flow = _flow(flows, "order_flow")
        assert flow["alarm_state"] == "firing"
        hook = _alarm(flow, "order_flow", "erp-errors")
        assert hook["state"] == "firing" and hook["since"] and hook["evaluated_at"]
        assert hook["value"] == 100.0 and hook["threshold"] == 0.0 and hook["unit"] == "%"
        assert hook["measured"] == "100 % (fires above 0 %)"
        assert _flow(flows, "order_status")["alarm_state"] == "none"
        assert _flow(flows, "order_status")["alarms"] == []
        one = c.json("/api/flows/order_flow")
        assert one["alarm_state"] == "firing"
        assert [(a["alarm"], a["state"], a["since"]) for a in one["alarms"]] == [
            (a["alarm"], a["state"], a["since"]) for a in flow["alarms"]
        ]
        dashboard = c.page("/")
        assert "erp-errors</a> firing since " + hook["since"] in dashboard
        assert "100 % (fires above 0 %)" in dashboard
        assert "no alarms" in dashboard  # order_status

        wait_for(
            lambda: [n for n in c.json("/api/alarms")["notices"] if not n["ok"]] or None,
            30,
            "the failed email",
        )
        alarms = c.json("/api/alarms")
        assert alarms["evaluator"]["this_process"] is True
        assert alarms["evaluator"]["interval_seconds"] == 1.0
        assert alarms["evaluator"]["holder"] and alarms["evaluator"]["until"]
        mail = _alarm(alarms, "order_flow", "erp-errors-mail")
        assert mail["state"] == "firing" and mail["notify"] == ["ops-mail"]
        assert mail["cool_off_seconds"] == 3600.0
        assert mail["describe"] == "error rate above 50% over the last 1 runs"
        sent = [n for n in alarms["notices"] if n["notifier"] == "ops-hook"]
        assert [(n["kind"], n["ok"]) for n in sent] == [("firing", True)]
        failed = next(n for n in alarms["notices"] if n["notifier"] == "ops-mail")
        assert failed["ok"] is False and failed["kind"] == "firing"
        assert "notifier 'ops-mail': SMTP 127.0.0.1:" in failed["detail"]
        page = c.page("/alarms")
        assert 'data-alarm="erp-errors" data-state="firing"' in page
        assert "failed to send</span>: notifier &#39;ops-mail&#39;: SMTP" in page
        assert ">sent<" in page and "1 h 0 min" in page  # the cool-off
        assert "This console evaluates the alarms every 1.0 s" in page
        assert "by this process" in page
        assert '<a href="/alarms">Alarms</a>' in page  # the nav
        for path, concrete in (
            ("/api/alarms", "/api/alarms"),
            ("/api/flows", "/api/flows"),
            ("/api/flows/{name}", "/api/flows/order_flow"),
        ):
            assert not _schema_errors(c, path, concrete), path

        faults(sandbox.erp.url, {})
        assert project.run("run-flow", "order_flow").code == 0
        wait_for(lambda: len(receiver.posts) >= 2 or None, 30, "the recovery notice")
        flow = _flow(c.json("/api/flows"), "order_flow")
        assert flow["alarm_state"] == "ok"
        assert {a["state"] for a in flow["alarms"]} == {"ok"}
        assert 'data-state="ok"><a class="ok" href="/alarms?flow=order_flow">ok</a>' in c.page("/")
        notices = c.json("/api/alarms?flow=order_flow")["notices"]
        hook_notices = [(n["kind"], n["ok"]) for n in notices if n["notifier"] == "ops-hook"]
        assert hook_notices == [("recovered", True), ("firing", True)]
        assert 'data-kind="recovered" data-ok="yes"' in c.page("/alarms")
        _evaluated_twice_more(c)
    texts = [json.loads(p["body"])["text"] for p in receiver.posts]
    assert [t.split(" ")[0] for t in texts] == ["[FIRING]", "[RECOVERED]"]


def test_no_secret_on_the_alarm_pages_or_the_api(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The webhook URL's token and the SMTP password are never shown: not in the pages, not
    in the API, not even when a notice's stored detail holds them (an older version, a hostile
    row): the console masks what it shows as a whole."""
    with_mail(project, receiver)
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    assert project.run("alarms", "check").code == 1  # the mail failed
    url = project.env["ALARM_HOOK_URL"]
    with sqlite3.connect(project.root / "state" / "integrator.db") as db:
        db.execute(
            "INSERT INTO alarm_notices (flow, alarm, at, kind, notifier, ok, detail) "
            "VALUES ('order_flow', 'erp-errors', ?, 'firing', 'ops-hook', 0, ?)",
            (time.time(), f"POST {url} refused; login alerts:{SMTP_PASSWORD}"),
        )
    secrets = [HOOK_TOKEN, SMTP_PASSWORD, project.env["ERP_TOKEN"]]
    secrets.append(project.env["OMNITRON_PASSWORD"])
    with console(project, ["--alarm-interval", "3600"]) as c:
        seen = 0
        for path in (
            "/",
            "/alarms",
            "/alarms?flow=order_flow",
            "/api/alarms",
            "/api/alarms?limit=500",
            "/api/flows",
            "/api/flows/order_flow",
        ):
            r = c.get(path)
            assert r.status_code == 200, path
            for secret in secrets:
                assert secret not in r.text, (path, secret)
            seen += len(r.text)
        assert "refused; login alerts:" in c.get("/api/alarms").text  # shown, masked
        assert seen > 10_000
        r = c.get("/api/alarms?limit=0")
        assert r.status_code == 400 and "?limit= takes a whole number" in r.json()["detail"]


def _lease(project: Project) -> tuple[str, float] | None:
    rows = project.sql("SELECT holder, expires_at FROM leases WHERE name = 'alarms'")
    return (str(rows[0][0]), float(rows[0][1])) if rows else None


def test_a_daemon_and_two_consoles_tell_once_and_hand_over_on_an_orderly_stop(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """A daemon and two consoles over one store, each evaluating every second: the daemon
    holds the lease, the consoles say so; the firing is told once. The daemon stops (SIGTERM):
    it gives the lease up and a console takes over at once, and tells the recovery, once. A
    console's orderly stop gives the lease up too."""
    with_alarms(project, receiver)
    unscheduled(project)  # no run of its own: the notices are counted
    assert project.run("run-flow", "order_status").code == 0  # the store exists
    with ExitStack() as stack:
        d = stack.enter_context(daemon(project, args=["--alarm-interval", "1"]))
        held = wait_for(lambda: _lease(project), 30, "the daemon's lease")
        assert f":{d.proc.pid}:" in held[0]
        one = stack.enter_context(console(project, ["--alarm-interval", "1"]))
        two = stack.enter_context(console(project, ["--alarm-interval", "1"]))
        for c in (one, two):
            ev = c.json("/api/alarms")["evaluator"]
            assert ev["this_process"] is False and f":{d.proc.pid}:" in ev["holder"]
            assert "by another process" in c.page("/alarms")
        served = requests.get(d.url("/api/alarms"), timeout=5).json()
        assert served["where"] == "daemon" and served["evaluator"]["this_process"] is True

        erp_refuses(sandbox)
        assert project.run("run-flow", "order_flow").code != 0
        wait_for(lambda: receiver.posts or None, 30, "the firing notice")
        _evaluated_twice_more(one)
        assert len(receiver.posts) == 1
        assert _flow(two.json("/api/flows"), "order_flow")["alarm_state"] == "firing"

        assert d.stop() == 0
        taken = wait_for(
            lambda: (
                [c for c in (one, two) if c.json("/api/alarms")["evaluator"]["this_process"]]
                or None
            ),
            30,
            "a console takes the lease over",
        )
        assert len(taken) == 1
        faults(sandbox.erp.url, {})
        assert project.run("run-flow", "order_flow").code == 0
        wait_for(lambda: len(receiver.posts) >= 2 or None, 30, "the recovery notice")
        _evaluated_twice_more(one)
        assert len(receiver.posts) == 2
        (other,) = {one, two} - set(taken)
        other.proc.terminate()
        assert other.proc.wait(10) == 0
        holder = _lease(project)
        assert holder is not None and holder[1] > time.time()
        taken[0].proc.terminate()
        assert taken[0].proc.wait(10) == 0
        after = _lease(project)
        assert after is not None and after[0] == holder[0] and after[1] <= time.time()
    texts = [json.loads(p["body"])["text"].split(" ")[0] for p in receiver.posts]
    assert texts == ["[FIRING]", "[RECOVERED]"]
    assert project.sql("SELECT kind, ok FROM alarm_notices ORDER BY id") == [
        ("firing", 1),
        ("recovered", 1),
    ]


def test_an_orderly_stop_gives_the_lease_up_while_a_notifier_hangs(
    project: Project, sandbox: Sandbox
) -> None:
    """A webhook that accepts and never answers (timeout 60 s): SIGTERM to the console
    mid-notice ends it within seconds, exit 0, and the lease is free for another process."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    silent.settimeout(30)
    try:
        cfg = project.root / "config.yaml"
        cfg.write_text(
            cfg.read_text()
            + "notifiers:\n  - name: ops-hook\n    type: webhook\n    url: ${ALARM_HOOK_URL}\n"
            "    timeout: 60\n"
        )
        project.env["ALARM_HOOK_URL"] = f"http://127.0.0.1:{silent.getsockname()[1]}/x"
        flow = project.flow()
        flow.write_text(
            flow.read_text()
            + "alarms:\n  - {name: erp-errors, condition: error_rate, above: 0, runs: 1, "
            "notify: [ops-hook]}\n"
        )
        erp_refuses(sandbox)
        project.run("run-flow", "order_flow")
        with console(project, ["--alarm-interval", "1"]) as c:
            conn, _ = silent.accept()  # the notice is being sent, and will never be answered
            try:
                held = _lease(project)
                assert held is not None and held[1] > time.time()
                began = time.monotonic()
                c.proc.terminate()
                assert c.proc.wait(20) == 0
                assert time.monotonic() - began < 10
            finally:
                conn.close()
        after = _lease(project)
        assert after is not None and after[1] <= time.time()
    finally:
        silent.close()


def test_a_console_without_the_notifiers_secrets_says_it_does_not_evaluate(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The notifier's URL variable is unset where the console runs: it serves, says on stderr
    and on /alarms that it does not evaluate the alarms and why (the variable, not a value),
    and sends nothing."""
    with_alarms(project, receiver)
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    del project.env["ALARM_HOOK_URL"]
    with console(project, ["--alarm-interval", "1"]) as c:
        ev = c.json("/api/alarms")["evaluator"]
        assert ev["interval_seconds"] is None and "ALARM_HOOK_URL" in ev["note"]
        assert "does not load with its secrets" in ev["note"]
        assert "This console does not evaluate the alarms" in c.page("/alarms")
        assert _alarm(c.json("/api/alarms"), "order_flow", "erp-errors")["state"] == "unknown"
        assert _flow(c.json("/api/flows"), "order_flow")["alarm_state"] == "unknown"
        assert "not evaluated yet" in c.page("/")
        c.proc.terminate()
        assert c.proc.wait(10) == 0
        assert c.proc.stderr is not None
        err = c.proc.stderr.read()
    assert "alarms: not evaluated by this console" in err and "Traceback" not in err
    assert receiver.posts == [] and _lease(project) is None
    r = project.run("validate")  # where it is needed, the unset variable is named, once
    assert r.code == 2 and "environment variable ALARM_HOOK_URL is not set" in r.err
    assert "expected an http(s) URL" not in r.err
