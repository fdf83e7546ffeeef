"""Alarms through the CLI and the daemon: conditions on the runs, the store's state and lease,
the webhook and email notifiers against real local servers, validate's messages."""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from support import Project, fault_rule, faults, free_port, wait_for
from support.alarms import ERROR_ALARM, HOOK_TOKEN, Receiver, erp_refuses, with_alarms
from support.daemon import daemon, every

from integrator.sandbox import Sandbox


def test_error_rate_fires_once_and_recovers_through_the_webhook(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """A run with failures fires the alarm: one Slack-shaped notice; checking again within the
    cool-off tells nothing; a clean run recovers it with a recovery notice. No secret in any."""
    with_alarms(project, receiver)
    assert project.run("validate").code == 0
    erp_refuses(sandbox)
    assert project.run("run-flow", "order_flow").code != 0  # partial: orders failed
    r = project.run("alarms", "check")
    assert r.code == 0, r.err
    assert "erp-errors firing" in r.out and "ops-hook: sent" in r.out
    (notice,) = receiver.json()
    assert set(notice) == {"text"} and notice["text"].startswith("[FIRING] order_flow: erp-errors")
    assert "100%" in notice["text"]
    assert receiver.posts[0]["path"] == f"/services/{HOOK_TOKEN}"

    assert project.run("alarms", "check").code == 0
    assert len(receiver.posts) == 1  # already told, within the cool-off
    listed = project.run("alarms")
    assert listed.code == 0 and "firing" in listed.out and "erp-errors" in listed.out

    faults(sandbox.erp.url, {})
    assert project.run("run-flow", "order_flow").code == 0  # the failed ones back off
    r = project.run("alarms", "check")
    assert r.code == 0 and "erp-errors ok" in r.out
    assert [n["text"].split(" ")[0] for n in receiver.json()] == ["[FIRING]", "[RECOVERED]"]
    everything = r.out + r.err + json.dumps(receiver.json())
    everything += project.run("alarms", "--json").out
    for secret in (HOOK_TOKEN, project.env["ERP_TOKEN"], project.env["OMNITRON_PASSWORD"]):
        assert secret not in everything
    data = json.loads(project.run("alarms", "--json").out)
    assert [a["state"] for a in data["alarms"]] == ["ok"]
    assert [(n["kind"], n["ok"]) for n in data["notices"]] == [("recovered", 1), ("firing", 1)]


def test_a_flapping_alarm_tells_once_within_its_cool_off(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """Fire, recover, fire again within the cool-off: the second firing (and so its recovery)
    is not told; the store still shows the state."""
    with_alarms(project, receiver)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    project.run("alarms", "check")
    faults(sandbox.erp.url, {})
    assert project.run("run-flow", "order_flow", "--limit", "1").code == 0
    project.run("alarms", "check")
    assert len(receiver.posts) == 2  # firing, recovered
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    r = project.run("alarms", "check")
    assert "erp-errors firing" in r.out
    assert len(receiver.posts) == 2  # within the cool-off of the recovery notice
    assert project.sql("SELECT state, notified_state FROM alarm_states") == [("firing", "ok")]


def test_a_failed_notice_is_told_again_and_names_no_secret(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The webhook answers 500: `alarms check` exits 1 naming the notifier, not its URL; the
    next check sends the notice (nobody was told yet). A redirect is not followed."""
    with_alarms(project, receiver)
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    receiver.status = 500
    r = project.run("alarms", "check")
    assert r.code == 1 and "ops-hook: FAILED" in r.out and "HTTP 500" in r.out
    assert HOOK_TOKEN not in r.out + r.err
    receiver.status, receiver.location = 302, "http://127.0.0.2:1/elsewhere"
    r = project.run("alarms", "check")
    assert r.code == 1 and "redirect, not followed" in r.out
    receiver.status, receiver.location = 200, ""
    r = project.run("alarms", "check")
    assert r.code == 0 and "ops-hook: sent" in r.out
    assert len(receiver.posts) == 3
    assert receiver.json()[-1]["text"].startswith("[FIRING]")


def test_a_template_shapes_the_webhook_body(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """A Jinja2 template gives another service its own JSON shape."""
    with_alarms(project, receiver)
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "url: ${ALARM_HOOK_URL}",
            "url: ${ALARM_HOOK_URL}\n    template: >-\n"
            '      {"summary": {{ title | json }}, "severity": "{{ "info" if state == "ok" '
            'else "critical" }}", "value": {{ value | json }}}',
        )
    )
    assert project.run("validate").code == 0
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    assert project.run("alarms", "check").code == 0
    (body,) = receiver.json()
    assert body == {
        "summary": "[FIRING] order_flow: erp-errors",
        "severity": "critical",
        "value": 100.0,
    }


def test_two_checks_racing_tell_once(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """Four `alarms check` processes at once on one SQLite store: one notice."""
    with_alarms(project, receiver)
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    procs = [project.popen("alarms", "check") for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(receiver.posts) == 1
    assert project.sql("SELECT count(*) FROM alarm_notices") == [(1,)]


def test_the_lease_has_one_holder_at_a_time(tmp_path: Path) -> None:
    """Eight evaluators take the lease at once, each with its own store on one SQLite file:
    exactly one gets it; another gets it once it is released, or has expired."""
    from integrator.alarms.store import Lease
    from integrator.state.store import Store

    url = f"sqlite:///{tmp_path / 'state.db'}"
    stores = [Store(url) for _ in range(8)]
    leases = [Lease(s) for s in stores]
    start = threading.Barrier(len(leases))
    got: list[bool] = [False] * len(leases)

    def take(i: int) -> None:
        start.wait()
        got[i] = leases[i].take(30)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got.count(True) == 1
    winner = got.index(True)
    other = (winner + 1) % len(leases)
    assert leases[winner].take(30)  # renewed by its holder
    assert not leases[other].take(30)
    leases[winner].release()
    assert leases[other].take(0.01)  # a lease of 10 ms
    with sqlite3.connect(tmp_path / "state.db") as c:  # let it expire (no sleep): back-date it
        c.execute("UPDATE leases SET expires_at = expires_at - 1")
    assert leases[winner].take(30) and not leases[other].holds()
    for s in stores:
        s.close()


def test_validate_names_file_line_and_key(project: Project, receiver: Receiver) -> None:
    """A typo in a condition, a notifier that is not declared, a bad duration, a password in
    clear: each named with its file, line and key; exit 2, no traceback."""
    with_alarms(
        project,
        receiver,
        """
alarms:
  - name: slow
    condition: avg_runtime
    above: 5m
    notify: [ops-hook]
  - name: backlog
    condition: oldest_unsent
    above: 2 hours
    notify: [pager]
  - condition: quarantined
    above: 10
    cool_off: soon
    notify: [ops-hook]
""",
    )
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text()
        + "  - name: mail\n    type: email\n    host: 127.0.0.1\n    from: a@example.com\n"
        "    to: [ops@example.com]\n    username: u\n    password: hunter2hunter2\n"
    )
    r = project.run("validate")
    assert r.code == 2, r.out + r.err
    assert "Traceback" not in r.err
    lines = project.flow().read_text().splitlines()

    def line_of(text: str) -> int:
        return next(i for i, line in enumerate(lines, 1) if text in line)

    err = " ".join(r.err.split())
    assert re.search(rf"order_flow.yaml:{line_of('avg_runtime')} \[alarms\[0\].condition\]: "
                     r"unknown condition 'avg_runtime'; expected one of error_rate, avg_run_time",
                     err)  # fmt: skip
    assert re.search(rf"order_flow.yaml:{line_of('[pager]')} \[alarms\[1\].notify\[0\]\]: no "
                     "notifier named 'pager'", err)  # fmt: skip
    assert re.search(rf"order_flow.yaml:{line_of('2 hours')} \[alarms\[1\].above\]: expected a "
                     "duration such as 90s", err)  # fmt: skip
    assert re.search(rf"order_flow.yaml:{line_of('soon')} \[alarms\[2\].cool_off\]: expected a "
                     "duration", err)  # fmt: skip
    assert re.search(r"config.yaml:\d+ \[notifiers\[1\].password\]: secret written in clear", err)
    assert "hunter2hunter2" not in r.out + r.err


def test_email_over_smtp_with_login(project: Project, sandbox: Sandbox) -> None:
    """An email notifier logs in with the password from the environment and sends the notice
    to a local SMTP server; the password is in no notice and no output."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    got: list[Any] = []
    logins: list[tuple[bytes, bytes]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            got.append(envelope)
            return "250 OK"

    def auth(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        logins.append((data.login, data.password))
        return AuthResult(success=data.password == b"smtp-pass-0123456789")

    port = free_port()
    smtp = Controller(
        Handler(), hostname="127.0.0.1", port=port, authenticator=auth, auth_require_tls=False
    )
    smtp.start()
    try:
        cfg = project.root / "config.yaml"
        cfg.write_text(
            cfg.read_text()
            + f"notifiers:\n  - name: ops-mail\n    type: email\n    host: 127.0.0.1\n"
            f"    port: {port}\n    from: integrator@example.com\n    to: [ops@example.com]\n"
            "    username: alerts\n    password: ${SMTP_PASSWORD}\n"
        )
        project.env["SMTP_PASSWORD"] = "smtp-pass-0123456789"
        flow = project.flow()
        flow.write_text(flow.read_text() + ERROR_ALARM.replace("ops-hook", "ops-mail"))
        erp_refuses(sandbox)
        project.run("run-flow", "order_flow")
        r = project.run("alarms", "check")
        assert r.code == 0, r.out + r.err
        assert logins == [(b"alerts", b"smtp-pass-0123456789")]
        (mail,) = got
        text = mail.content.decode()
        assert mail.rcpt_tos == ["ops@example.com"]
        assert "Subject: [FIRING] order_flow: erp-errors" in text
        assert "smtp-pass-0123456789" not in text + r.out + r.err
        project.env["SMTP_PASSWORD"] = "wrong-password-0123"
        project.run("alarms", "check")  # nothing due (told already): no login
        assert len(logins) == 1
    finally:
        smtp.stop()


def test_the_daemon_evaluates_after_a_run_and_exports_the_state(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The daemon evaluates a flow's alarms after each run (its timer here fires only at
    start): the notice arrives once while every run fails, and /metrics shows
    integrator_alarm_firing 1 for it."""
    with_alarms(project, receiver)
    every(project, "1s")
    project.edit_flow("max_attempts: 5", "max_attempts: 1000\nbackoff_seconds: 0")
    erp_refuses(sandbox)
    key = ("integrator_alarm_firing", (("alarm", "erp-errors"), ("flow", "order_flow")))
    with daemon(project, args=["--alarm-interval", "3600"]) as d:
        wait_for(lambda: receiver.posts or None, 60, "the firing notice")
        wait_for(lambda: d.metrics().get(key) == 1.0 or None, 30, "the alarm gauge")
        wait_for(lambda: len(d.named("run_ended")) >= 3 or None, 60, "more runs")
        assert d.metrics().get(key) == 1.0
    assert len(receiver.posts) == 1
    assert json.loads(receiver.posts[0]["body"])["text"].startswith("[FIRING]")


def test_every_condition_reads_the_runs_and_the_journal(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """The run stores the oldest unsent order's age; oldest_unsent, quarantined and
    avg_run_time read it and the journal; connector_failing fires when runs stop on the ERP's
    refusal of the credential, naming it."""
    with_alarms(
        project,
        receiver,
        """
alarms:
  - {name: backlog, condition: oldest_unsent, above: 1m, notify: [ops-hook]}
  - {name: held, condition: quarantined, above: 0, notify: [ops-hook]}
  - {name: slow, condition: avg_run_time, above: 1h, runs: 3, notify: [ops-hook]}
  - {name: erp-down, condition: connector_failing, connector: erp, runs: 1, notify: [ops-hook]}
""",
    )
    project.edit_flow("max_attempts: 5", "max_attempts: 1")
    erp_refuses(sandbox)
    project.run("run-flow", "order_flow")
    ((age,),) = project.sql("SELECT oldest_unsent_seconds FROM runs")
    assert age is not None and age > 60  # the sandbox's orders were placed before now
    r = project.run("alarms", "check")
    states = dict(re.findall(r"order_flow: (\S+) (ok|firing)", r.out))
    assert states == {"backlog": "firing", "held": "firing", "slow": "ok", "erp-down": "ok"}
    assert re.search(r"held firing \(\d+ orders quarantined", r.out)
    fault_rule(sandbox.omnitron.url, action="status", route="list", status=401)
    assert project.run("run-flow", "order_flow").code != 0
    r = project.run("alarms", "check")
    states = dict(re.findall(r"order_flow: (\S+) (ok|firing)", r.out))
    assert states["erp-down"] == "ok"  # the source stopped the run, not the ERP
    faults(sandbox.omnitron.url, {})
    fault_rule(sandbox.erp.url, action="status", route="create", status=401)
    project.run("replay", _a_quarantined(project))
    assert project.run("run-flow", "order_flow").code != 0
    r = project.run("alarms", "check")
    assert "erp-down firing" in r.out, r.out + str(project.sql("SELECT status, error FROM runs"))


def _a_quarantined(project: Project) -> str:
    return str(project.sql("SELECT order_number FROM journal WHERE state = 'quarantined'")[0][0])


@pytest.mark.services
def test_on_postgresql_racing_checks_tell_once_and_the_lease_has_one_holder(
    project: Project, sandbox: Sandbox, receiver: Receiver
) -> None:
    """On PostgreSQL (a migrated store): eight threads race for the lease, one wins; four
    `alarms check` processes at once send one notice."""
    from support.services import fresh_database

    from integrator.state.store import Store

    with fresh_database() as url:
        project.use_state_url(url)
        with_alarms(project, receiver)
        erp_refuses(sandbox)
        project.run("run-flow", "order_flow")
        stores = [Store(url) for _ in range(8)]
        try:
            _race_and_check(project, receiver, stores)
        finally:
            for s in stores:
                s.close()


def _race_and_check(project: Project, receiver: Receiver, stores: list[Any]) -> None:
    from integrator.alarms.store import AlarmStore, Lease

    leases = [Lease(s, name="race") for s in stores]
    start = threading.Barrier(len(leases))
    got = [False] * len(leases)

    def take(i: int) -> None:
        start.wait()
        got[i] = leases[i].take(30)

    threads = [threading.Thread(target=take, args=(i,)) for i in range(len(leases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got.count(True) == 1
    procs = [project.popen("alarms", "check") for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(receiver.posts) == 1
    assert [(n["kind"], n["ok"]) for n in AlarmStore(stores[0]).notices()] == [("firing", 1)]


def test_a_webhook_that_never_answers_is_bounded_by_its_timeout(
    project: Project, sandbox: Sandbox
) -> None:
    """A receiver that accepts the connection and never answers: the check ends after the
    notifier's timeout (0.3 s here), the notice failed and named, the URL's token unshown. A
    template that escapes Jinja2's sandbox fails its notice, named, and runs nothing."""
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    try:
        cfg = project.root / "config.yaml"
        cfg.write_text(
            cfg.read_text()
            + "notifiers:\n  - name: silent\n    type: webhook\n    url: ${SILENT_URL}\n"
            "    timeout: 0.3\n  - name: nosy\n    type: webhook\n    url: ${SILENT_URL}\n"
            "    template: '{{ title.__class__.__mro__[1].__subclasses__() }}'\n"
        )
        project.env["SILENT_URL"] = f"http://127.0.0.1:{silent.getsockname()[1]}/{HOOK_TOKEN}"
        flow = project.flow()
        flow.write_text(flow.read_text() + ERROR_ALARM.replace("[ops-hook]", "[silent, nosy]"))
        erp_refuses(sandbox)
        project.run("run-flow", "order_flow")
        began = time.monotonic()
        r = project.run("alarms", "check", timeout=20)
        assert time.monotonic() - began < 8  # the default timeout, 10 s, was not waited
        assert r.code == 1
        assert "silent: FAILED: notifier 'silent': the webhook could not be reached" in r.out
        assert "nosy: FAILED: notifier 'nosy': the template failed: SecurityError" in r.out
        assert HOOK_TOKEN not in r.out + r.err
    finally:
        silent.close()
