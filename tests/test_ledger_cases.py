"""The ways orders were lost or sent twice before the ledger had one owner, each through the
real CLI against the sandbox. Every test ends with the same check: the ERP holds every order
Omnitron shows as sent, exactly once."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

from support import Project, fault_rule, faults, make_project, stats, unsent

from integrator.sandbox import Sandbox, running_sandbox
from integrator.state import Store


def held_once(sb: Sandbox) -> None:
    """Every order Omnitron shows as sent is in the ERP, and none was created twice."""
    erp = stats(sb.erp.url)
    assert erp["duplicates"] == 0, erp["duplicate_numbers"]
    sent = [o["number"] for o in sb.omnitron.orders.values() if o["is_send"]]
    missing = [n for n in sent if n not in sb.erp.orders]
    assert missing == [], f"marked sent in Omnitron, not in the ERP: {missing}"


def drop_query_check(project: Project) -> None:
    text = project.flow().read_text()
    project.flow().write_text(
        text[: text.index("  - query_check:")] + text[text.index("  - script:") :]
    )


def run(project: Project, *args: str) -> tuple[int, str]:
    r = project.run("run-flow", "order_flow", "--no-progress", *args)
    assert "Traceback" not in r.out + r.err
    return r.code, r.out + r.err


def events(project: Project, number: str) -> list[str]:
    return [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{number}'")]


# ----------------------------------------------------------------------- evidence, memory
def test_a_store_reused_against_a_fresh_source_and_erp_loses_nothing(
    project: Project, sandbox: Sandbox
) -> None:
    """Done in the journal, unsent in a fresh Omnitron, absent from a fresh ERP: asked for
    (query_check) and written, never marked on memory."""
    numbers = unsent(sandbox)
    assert run(project)[0] == 0
    with running_sandbox(25) as fresh:  # the same orders, new servers
        project.env.update(fresh.env())
        code, out = run(project)
        assert code == 0, out
        assert sorted(fresh.erp.received) == sorted(numbers)
        held_once(fresh)
    assert any("lists it as unsent again" in m for m in events(project, numbers[0]))


def test_without_query_check_a_relisted_order_waits_for_a_person(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    drop_query_check(project)
    assert run(project)[0] == 0
    with running_sandbox(25) as fresh:
        project.env.update(fresh.env())
        code, out = run(project)
        assert code == 1 and "quarantined" in out
        assert fresh.erp.received == {} and stats(fresh.omnitron.url)["sent"] == len(
            [o for o in fresh.omnitron.orders.values() if o["is_send"]]
        )
        held_once(fresh)
        assert project.state(numbers[0]) == "quarantined"
        release = project.run("quarantine", "release", "--flow", "order_flow")
        assert "left quarantined" in release.out  # a release cannot vouch for the ERP
        r = project.run("resolve", numbers[0], "--resend")
        assert r.code == 0, r.err
        code, out = run(project)
        assert fresh.erp.received == {numbers[0]: 1}
        held_once(fresh)


def test_a_changed_connector_id_inherits_no_deliveries(project: Project, sandbox: Sandbox) -> None:
    """Orders written to one ERP (their PATCH lost) are not marked on memory once the flow
    writes to a connector with another ConnectorId: the new ERP is asked, then written. A new
    Host under the same ConnectorId is the same ERP, by the user's word: it resumes."""
    numbers = unsent(sandbox)
    a, b = numbers[0], numbers[1]
    drop = {"rules": [{"action": "drop_before", "route": "patch_order", "numbers": [a, b]}]}
    faults(sandbox.omnitron.url, drop)
    assert run(project)[0] == 1
    assert project.state(a) == "sent" and project.state(b) == "sent"
    with running_sandbox(0) as other:
        project.env["ERP_URL"] = other.erp.url  # a new Host, the same ConnectorId
        fault_rule(sandbox.omnitron.url, action="drop_before", route="patch_order", numbers=[b])
        run(project)
        assert other.erp.received == {} and project.state(a) == "done"  # a resumed
        assert project.state(b) == "sent"
        faults(sandbox.omnitron.url, {})
        cfg = project.root / "config.yaml"
        cfg.write_text(cfg.read_text().replace("ConnectorId: erp-sandbox", "ConnectorId: erp-new"))
        code, out = run(project)
        assert code == 0, out
        assert other.erp.received == {b: 1} and project.state(b) == "done"
        assert any("inherits no deliveries" in m for m in events(project, b))
    held_once(sandbox)


def test_demo_twice_shows_the_same_result(tmp_path: Path) -> None:
    """The demo keeps a store of its own, new on every demo."""
    project = make_project(tmp_path, {})
    first = project.run("demo", timeout=180)
    second = project.run("demo", timeout=180)
    assert first.code == 0 and second.code == 0, first.out + second.out + second.err
    line = next(x for x in first.out.splitlines() if x.startswith("Omnitron:"))
    assert line in second.out and "0 duplicates" in line


# ------------------------------------------------------------------ one order in flight
def test_an_order_listed_twice_costs_nothing_twice(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    fault_rule(sandbox.omnitron.url, action="duplicate_rows", route="list")
    code, out = run(project)
    assert code == 0, out
    assert f"listed twice in this run: {len(numbers)}" in out
    assert sorted(sandbox.erp.received) == sorted(numbers)
    assert set(sandbox.erp.received.values()) == {1}
    held_once(sandbox)


def test_a_source_that_ignores_the_cursor_ends_the_listing(
    project: Project, sandbox: Sandbox
) -> None:
    """The second page comes back as the first: a clear error, no loop, the first page's
    orders delivered once, nothing PATCHed twice."""
    first_page = unsent(sandbox)[:10]
    project.edit_flow("page_size: 50", "page_size: 10")
    fault_rule(sandbox.omnitron.url, action="ignore_cursor", route="list")
    code, out = run(project)
    assert code == 1 and "ignores the cursor parameter" in out and "internal error" not in out
    assert stats(sandbox.omnitron.url)["calls"]["list"] == 2  # no loop
    assert sorted(sandbox.erp.received) == sorted(first_page)
    assert set(sandbox.erp.received.values()) == {1}
    assert stats(sandbox.omnitron.url)["patches"] == len(first_page)  # nothing PATCHed twice
    held_once(sandbox)


# ------------------------------------------------------------------- systemic failures
def test_a_rotated_erp_token_stops_the_run_and_charges_nothing(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    project.edit_flow("max_attempts: 5", "max_attempts: 1\nbackoff_seconds: 0")
    sandbox.erp.token = "rotated-erp-token"
    for _ in range(3):  # before: the backlog was quarantined within a few runs
        code, out = run(project)
        assert code == 1 and "credentials of connector 'erp' are refused" in out
    assert project.sql("SELECT COUNT(*) FROM journal WHERE state = 'quarantined'") == [(0,)]
    assert project.sql("SELECT MAX(attempts) FROM journal") in ([(0,)], [(None,)])
    assert {s for (s,) in project.sql("SELECT status FROM runs")} == {"failed"}
    assert sandbox.erp.received == {}
    project.env["ERP_TOKEN"] = "rotated-erp-token"
    code, out = run(project)
    assert code == 0, out
    assert sorted(sandbox.erp.received) == sorted(numbers)
    held_once(sandbox)


def test_the_circuit_breaker_stops_a_run_against_a_failing_erp(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    project.edit_flow("concurrency: 4", "concurrency: 1")
    fault_rule(sandbox.erp.url, action="status", route="*", status=503)
    code, out = run(project)
    assert code == 1 and "circuit open: connector 'erp' failed with 5xx for 5 orders" in out
    assert stats(sandbox.erp.url)["calls"]["query"] <= 6 * 3  # stopped, with its retries
    assert project.sql("SELECT MAX(attempts) FROM journal") == [(0,)]
    faults(sandbox.erp.url, {})
    code, out = run(project)
    assert code == 0, out
    assert sorted(sandbox.erp.received) == sorted(numbers)
    held_once(sandbox)


# --------------------------------------------------------------------- every run ends
PLUGIN = """
from integrator.pipeline.stage import Stage


class BadOpen(Stage):
    name = "bad_open"

    def open(self, run):
        raise RuntimeError("the plug-in cannot start")


class Buggy(Stage):
    name = "buggy"

    def process(self, ex):
        if ex.number == BAD:
            raise KeyError("a bug in the plug-in")


class BreakStore(Stage):
    name = "break_store"

    def __init__(self):
        self.seen = 0

    def process(self, ex):
        self.seen += 1
        if self.seen == 3:
            import sqlite3
            with sqlite3.connect("state/integrator.db") as c:
                c.execute("ALTER TABLE journal RENAME TO journal_gone")
"""


def plugin(project: Project, stage: str, bad: str = "") -> None:
    (project.root / "plugins.py").write_text(PLUGIN.replace("BAD", repr(bad)))
    project.edit_flow("  - script:\n", f"  - plugins:{stage}\n  - script:\n")


def test_a_plugin_whose_open_raises_ends_the_run_failed(project: Project, sandbox: Sandbox) -> None:
    plugin(project, "BadOpen")
    code, out = run(project)
    assert code == 1 and "internal error: RuntimeError: the plug-in cannot start" in out
    assert project.sql("SELECT status FROM runs") == [("failed",)]
    assert sandbox.erp.received == {}


def test_a_bug_in_a_stage_is_an_internal_error_not_charged(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    plugin(project, "Buggy", numbers[2])
    project.edit_flow("max_attempts: 5", "max_attempts: 1\nbackoff_seconds: 0")
    for _ in range(2):
        code, out = run(project)
        assert code == 1 and "internal error (stage): KeyError" in out and "please report" in out
    row = project.sql(
        f"SELECT state, attempts, error_kind FROM journal WHERE order_number = '{numbers[2]}'"
    )
    assert row == [("checked", 0, "internal")]  # kept, never charged, never quarantined
    assert sorted(sandbox.erp.received) == sorted(n for n in numbers if n != numbers[2])
    held_once(sandbox)


def test_a_state_store_failure_mid_run_fails_the_run_clearly(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    plugin(project, "BreakStore")
    project.edit_flow("concurrency: 4", "concurrency: 1")
    code, out = run(project)
    assert code == 1 and "the state store failed" in out and "no such table" in out
    assert project.sql("SELECT status FROM runs") == [("failed",)]
    with sqlite3.connect(project.root / "state" / "integrator.db") as c:
        c.execute("ALTER TABLE journal_gone RENAME TO journal")
    (project.root / "plugins.py").write_text(PLUGIN.replace("self.seen == 3", "False"))
    code, out = run(project)
    assert code == 0, out
    assert sorted(sandbox.erp.received) == sorted(numbers)
    held_once(sandbox)


# ----------------------------------------------------------------- rows a crash left
def test_rows_a_crash_left_at_sent_are_settled_from_the_source(
    project: Project, sandbox: Sandbox
) -> None:
    """Killed right after Omnitron took an order's PATCH (its `done` not yet stored): the
    source no longer lists it; the next run asks it and settles the row."""
    numbers = unsent(sandbox)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    project.edit_flow("concurrency: 4", "concurrency: 1")
    killed = threading.Event()
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress"],
        cwd=project.root, env={**os.environ, **project.env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def kill_on_patch(route: str) -> None:
        if route == "patch_order" and not killed.is_set():
            killed.set()
            proc.send_signal(signal.SIGKILL)

    sandbox.omnitron.watchers.append(kill_on_patch)
    proc.wait(60)
    sandbox.omnitron.watchers.clear()
    patched = [n for n in numbers if next(
        o for o in sandbox.omnitron.orders.values() if o["number"] == n
    )["is_send"]]  # fmt: skip
    assert len(patched) == 1 and project.state(patched[0]) == "sent"
    code, out = run(project)
    assert code == 0, out
    assert project.state(patched[0]) == "done"
    assert any("shows it marked" in m for m in events(project, patched[0]))
    assert sandbox.erp.received[patched[0]] == 1
    assert project.sql("SELECT COUNT(*) FROM journal WHERE state != 'done'") == [(0,)]
    held_once(sandbox)


# ----------------------------------------------------------- recovery never dead-ends
def test_recovery_says_what_it_needs_and_why(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    bad = numbers[0]
    broken = project.root / "broken"
    broken.touch()
    project.misbehave_for(
        bad,
        "import os",
        f"if os.path.exists({str(broken)!r}):",
        '    raise ValueError("no ERP customer")',
    )
    project.edit_flow("max_attempts: 5", "max_attempts: 1\nbackoff_seconds: 0")
    assert run(project)[0] == 1 and project.state(bad) == "quarantined"
    r = project.run("resolve", bad, "--as-sent")
    assert r.code == 2 and "--response FILE" in r.err and "--erp-ref ID" in r.err
    r = project.run("resolve", bad, "--as-sent", "--erp-ref", "ERP-1")
    assert r.code == 2 and "failed before any write" in r.err and "replay" in r.err
    show = project.run("orders", "show", bad)
    assert "skipped by runs: quarantined: script: " in show.out
    code, out = run(project)
    assert code == 0 and "skipped: quarantined: 1" in out
    r = project.run("quarantine", "release", "--flow", "order_flow", "--reason", "ERP customer",
                    "--note", "fixed the script", "--by", "ayse")  # fmt: skip
    assert r.code == 0 and "1 order(s) of order_flow released" in r.out
    assert any(m.startswith("released by ayse: fixed the script") for m in events(project, bad))
    broken.unlink()  # the script is fixed
    code, out = run(project)
    assert code == 0, out
    assert sandbox.erp.received.get(bad) == 1
    held_once(sandbox)


# ------------------------------------------------ found by review and adversarial probes
def order_of(sb: Sandbox, number: str) -> dict[str, object]:
    return next(o for o in sb.omnitron.orders.values() if o["number"] == number)


def test_a_number_with_url_characters_is_asked_for_as_itself(
    project: Project, sandbox: Sandbox
) -> None:
    """Order B's number is order A's plus ``&part=2``: query_check must ask about B, not A
    (before: B was 'found', never written, and marked sent)."""
    a, b = unsent(sandbox)[:2]
    order_of(sandbox, b)["number"] = f"{a}&part=2#x"
    code, out = run(project)
    assert code == 0, out
    assert sandbox.erp.received.get(f"{a}&part=2#x") == 1 and sandbox.erp.received.get(a) == 1
    held_once(sandbox)


def test_a_key_added_after_an_ambiguous_write_does_not_make_it_safe(
    project: Project, sandbox: Sandbox
) -> None:
    """No query_check; a write lost its answer; then the flow gains an idempotency key. The
    earlier write carried none: it is held for a person, never resent."""
    bad = unsent(sandbox)[0]
    drop_query_check(project)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    fault_rule(sandbox.erp.url, action="drop_after_commit", route="create", numbers=[bad], count=1)
    assert run(project)[0] == 1 and project.state(bad) == "sending"
    project.edit_flow(
        "      path: /api/orders/\n      method: POST",
        "      path: /api/orders/\n      method: POST\n      idempotency_header: Idempotency-Key",
    )
    run(project)
    assert sandbox.erp.received[bad] == 1 and project.state(bad) == "quarantined"
    held_once(sandbox)


def test_a_gateway_504_is_not_proof_that_nothing_is_in_flight(
    project: Project, sandbox: Sandbox
) -> None:
    """A gateway answers 504 at once; the ERP behind it commits a second later. The order is
    left alone for settle_seconds, then found, never written twice."""
    bad = unsent(sandbox)[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 2")
    fault_rule(sandbox.erp.url, action="status_then_commit", route="create", status=504,
               seconds=1, numbers=[bad], count=1)  # fmt: skip
    assert run(project)[0] == 1 and project.state(bad) == "sending"
    code, out = run(project)  # at once: the ERP has not committed yet
    assert code == 0 and "settling: 1" in out
    wait_until = time.monotonic() + 10
    while project.sql(
        f"SELECT COUNT(*) FROM journal WHERE order_number='{bad}' AND updated_at < "
        f"strftime('%Y-%m-%d %H:%M:%f', 'now', '-2 seconds')"
    ) != [(1,)]:
        assert time.monotonic() < wait_until
        time.sleep(0.1)  # settle_seconds is a rule about time: wait it out
    code, out = run(project)
    assert code == 0, out
    assert sandbox.erp.received[bad] == 1 and project.state(bad) == "done"
    held_once(sandbox)


def test_a_refusal_read_by_check_response_without_raising_fails_the_order(
    project: Project, sandbox: Sandbox
) -> None:
    """The README's way: check_response sets erp.rejected and returns. The order is failed
    and written again later, never marked sent on a refusal."""
    numbers = unsent(sandbox)
    bad = numbers[2]
    (project.root / "scripts" / "check_rpc.py").write_text(
        "def check_response(response, attributes):\n"
        "    if 'error' in response:\n"
        "        attributes['erp.rejected'] = 'true'\n"
        "        return {'order': {}, 'order_items': []}\n"
        "    return {'order': {'erp_order_id': response['id']}, 'order_items': []}\n"
    )
    project.edit_flow(
        "  - check_response\n", "  - check_response:\n      script: scripts/check_rpc.py\n"
    )
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="body", route="create", status=200,
               body='{"error": {"message": "no stock"}}', content_type="application/json",
               numbers=[bad], count=1)  # fmt: skip
    code, out = run(project)
    assert code == 1 and "the ERP refused the order" in out
    assert project.state(bad) == "failed" and not order_of(sandbox, bad)["is_send"]
    code, out = run(project)
    assert code == 0, out
    assert sandbox.erp.received[bad] == 1
    held_once(sandbox)


def test_rows_without_a_usable_number_do_not_stop_the_listing(
    project: Project, sandbox: Sandbox
) -> None:
    """A full page of rows the runner cannot use: the cursor still moves on, the later
    orders are delivered, the run ends (before: the same page forever)."""
    numbers = unsent(sandbox)
    project.edit_flow("page_size: 50", "page_size: 5")
    for n in numbers[:5]:
        order_of(sandbox, n)["number"] = ""
    code, out = run(project)
    assert code == 0, out
    assert sorted(sandbox.erp.received) == sorted(numbers[5:])
    assert stats(sandbox.omnitron.url)["calls"]["list"] <= len(numbers) // 5 + 2


def test_a_renamed_flow_adopts_its_history_or_refuses_to_start_blind(
    project: Project, sandbox: Sandbox
) -> None:
    """No query_check, a PATCH lost: the order is `sent`. Renaming the flow must not start an
    empty journal that writes it again."""
    bad = unsent(sandbox)[0]
    drop_query_check(project)
    fault_rule(sandbox.omnitron.url, action="drop_before", route="patch_order", numbers=[bad])
    assert run(project)[0] == 1 and project.state(bad) == "sent"
    faults(sandbox.omnitron.url, {})
    project.edit_flow("name: order_flow", "name: order_flow_v2")
    r = project.run("run-flow", "order_flow_v2", "--no-progress")
    assert r.code == 2 and "renamed_from: [order_flow]" in r.err and "new_history" in r.err
    project.edit_flow("name: order_flow_v2", "name: order_flow_v2\nrenamed_from: [order_flow]")
    r = project.run("run-flow", "order_flow_v2", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert sandbox.erp.received[bad] == 1
    assert project.sql(f"SELECT flow, state FROM journal WHERE order_number='{bad}'") == [
        ("order_flow_v2", "done")
    ]
    held_once(sandbox)


def test_a_maintenance_page_stops_the_run_and_quarantines_nothing(
    project: Project, sandbox: Sandbox
) -> None:
    """The ERP answers every call with an HTML page and 200: the ERP's failure, not the
    orders'. The circuit breaker stops the run; nothing is charged or quarantined."""
    numbers = unsent(sandbox)
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="body", route="*", status=200,
               body="<html>Maintenance</html>")  # fmt: skip
    for _ in range(2):
        code, out = run(project)
        assert code == 1 and "circuit open: connector 'erp' failed with unreadable answer" in out
    assert project.sql("SELECT COUNT(*) FROM journal WHERE state = 'quarantined'") == [(0,)]
    faults(sandbox.erp.url, {})
    code, out = run(project)
    assert code == 0, out
    assert sorted(sandbox.erp.received) == sorted(numbers)
    held_once(sandbox)


def test_a_detail_of_another_order_is_not_written_under_its_number(
    project: Project, sandbox: Sandbox
) -> None:
    a, b = unsent(sandbox)[:2]
    doc = json.loads(json.dumps(order_of(sandbox, a)))  # the detail of `a`, with b's number
    doc["number"] = b
    fault_rule(sandbox.omnitron.url, action="body", route="detail", status=200,
               body=json.dumps(doc), content_type="application/json", numbers=[a])  # fmt: skip
    code, out = run(project)
    assert code == 1 and f"expected an object with pk {order_of(sandbox, a)['pk']}" in out
    assert a not in sandbox.erp.received and not order_of(sandbox, a)["is_send"]
    held_once(sandbox)


def test_resolve_as_sent_after_a_connector_change_settles_for_the_new_target(
    project: Project, sandbox: Sandbox
) -> None:
    """No query_check; written to one ERP, then the flow points at another ConnectorId: held.
    A person finds it in the new ERP and resolves it as sent: it is marked, not held again."""
    bad = unsent(sandbox)[0]
    drop_query_check(project)
    fault_rule(sandbox.omnitron.url, action="drop_before", route="patch_order", numbers=[bad])
    assert run(project)[0] == 1 and project.state(bad) == "sent"
    faults(sandbox.omnitron.url, {})
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text().replace("ConnectorId: erp-sandbox", "ConnectorId: erp-new"))
    run(project)
    assert project.state(bad) == "quarantined"
    r = project.run("resolve", bad, "--as-sent", "--erp-ref", "ERP-NEW-1")
    assert r.code == 0, r.err
    code, out = run(project)
    assert code == 0, out
    assert project.state(bad) == "done" and sandbox.erp.received[bad] == 1
    held_once(sandbox)


def test_release_leaves_what_a_person_must_settle(project: Project, sandbox: Sandbox) -> None:
    """A write that may have landed, on a flow that cannot ask: release keeps it for
    `resolve` instead of letting the next run quarantine it again."""
    bad = unsent(sandbox)[0]
    drop_query_check(project)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    fault_rule(sandbox.erp.url, action="drop_after_commit", route="create", numbers=[bad], count=1)
    run(project)
    run(project)
    assert project.state(bad) == "quarantined"
    r = project.run("quarantine", "release", "--flow", "order_flow")
    assert r.code == 0 and "left quarantined" in r.out and bad in r.out
    assert project.state(bad) == "quarantined" and sandbox.erp.received[bad] == 1


def test_run_flow_takes_the_orders_events_queued(project: Project, sandbox: Sandbox) -> None:
    """An event queued while another process ran the flow is taken by that run (here a
    run-flow after a first full run), not left for the next poll."""
    numbers = unsent(sandbox)
    assert run(project)[0] == 0
    order_of(sandbox, numbers[0])["is_send"] = False  # reset in Omnitron, then an event
    store = Store(f"sqlite:///{project.root / 'state' / 'integrator.db'}")
    try:
        store.pending.add("order_flow", numbers[0])
    finally:
        store.close()
    assert run(project)[0] == 0
    assert project.sql("SELECT COUNT(*) FROM pending_events") == [(0,)]
    assert sandbox.erp.received[numbers[0]] == 1  # asked again (query_check), not rewritten
