"""The order flow end to end: the real CLI in a subprocess, real HTTP against the sandbox."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from support import Project, assert_exactly_once, fault_rule, faults, make_project, stats, unsent
from support.services import fresh_database

from integrator.sandbox import Sandbox, running_sandbox


def test_happy_path_delivers_every_order_once(project: Project, sandbox: Sandbox) -> None:
    """One run sends every unsent order, marks it sent, puts ERP ids on the items."""
    numbers = unsent(sandbox)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.err
    assert f"│ {len(numbers):>9} │" in r.out or str(len(numbers)) in r.out
    assert_exactly_once(sandbox, numbers)
    item = next(
        i
        for i in sandbox.omnitron.items.values()
        if sandbox.omnitron.orders[i["order"]]["number"] == numbers[0]
    )
    assert item["extra_field"]["erp_line_id"].startswith("ERP-")
    payload = sandbox.erp.payload(numbers[0])
    assert payload is not None and payload["order_number"] == numbers[0]
    assert payload["lines"][0]["external_id"] == item["pk"]
    assert {s for (s,) in project.sql("SELECT DISTINCT state FROM journal")} == {"done"}
    again = project.run("run-flow", "order_flow", "--no-progress")
    assert again.code == 0 and stats(sandbox.erp.url)["received"] == len(numbers)


def test_250_orders_page_size_50_one_run(tmp_path: Path) -> None:
    """No order is skipped while earlier ones are marked sent during the run."""
    with running_sandbox(280) as sb:
        numbers = unsent(sb)
        assert len(numbers) >= 250
        project = make_project(tmp_path, sb.env())
        r = project.run("run-flow", "order_flow", "--no-progress")
        assert r.code == 0, r.err
        assert_exactly_once(sb, numbers)
        assert sb.omnitron.calls["list"] >= len(numbers) // 50


def test_query_check_found_skips_write_and_marks_sent(project: Project, sandbox: Sandbox) -> None:
    """An order the ERP already has is not written again, but is marked sent."""
    numbers = unsent(sandbox)
    number = numbers[0]
    sandbox.erp.orders[number] = {
        "id": "ERP-PRE",
        "order_number": number,
        "lines": [],
        "payload": {},
    }
    sandbox.erp.received[number] = 1
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.err
    assert sandbox.erp.received[number] == 1
    assert_exactly_once(sandbox, numbers)
    assert project.state(number) == "done"
    events = [
        m
        for (m,) in project.sql(
            f"SELECT message FROM events WHERE order_number='{number}' ORDER BY id"
        )
    ]
    assert any("found in the ERP by query_check" in m for m in events)


def test_failure_status_code_fails_order_then_next_run_sends(
    project: Project, sandbox: Sandbox
) -> None:
    """A failure code from query_check fails the order; the next run delivers it once."""
    numbers = unsent(sandbox)
    fault_rule(sandbox.erp.url, action="status", route="query", status=503, numbers=[numbers[2]])
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert numbers[2] in r.out and "503" in r.out
    assert project.state(numbers[2]) == "failed"
    assert numbers[2] not in sandbox.erp.received
    faults(sandbox.erp.url, {})
    r2 = project.run("run-flow", "order_flow", "--no-progress")
    assert r2.code == 0, r2.out + r2.err
    assert_exactly_once(sandbox, numbers)


def test_not_found_status_code_continues_to_write(project: Project, sandbox: Sandbox) -> None:
    """A query answered 404 (listed in not_found_status_codes) goes on to the write."""
    numbers = unsent(sandbox)
    project.edit_flow(
        "url: /api/orders/?number=${_order.number}", "url: /api/orders/by-number/${_order.number}/"
    )
    project.edit_flow('response_path: count\n      response_path_value: "1"', "response_path: id")
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert sandbox.erp.calls["get"] == len(numbers)
    assert_exactly_once(sandbox, numbers)


def test_rejected_write_fails_order_and_runs_post_script(
    project: Project, sandbox: Sandbox
) -> None:
    """A 400 from the ERP fails that order; post_script with run_on_failure still ran."""
    numbers = unsent(sandbox)
    fault_rule(
        sandbox.erp.url, action="status", route="create", status=400, numbers=[numbers[0]], count=1
    )
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert project.state(numbers[0]) == "failed"
    logged = dict(
        project.sql(f"SELECT key, value FROM order_log WHERE order_number='{numbers[0]}'")
    )
    assert logged["log.outcome"] == "failed at write"
    assert numbers[0] not in sandbox.erp.received
    assert all(project.state(n) == "done" for n in numbers[1:])


def test_dropped_patch_after_write_never_writes_twice(project: Project, sandbox: Sandbox) -> None:
    """ERP written, PATCH lost: the next run skips the write and marks the order sent."""
    numbers = unsent(sandbox)
    fault_rule(
        sandbox.omnitron.url, action="drop_before", route="patch_order", numbers=[numbers[1]]
    )
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1  # every try of the PATCH was lost
    assert project.state(numbers[1]) == "sent"
    faults(sandbox.omnitron.url, {})
    r2 = project.run("run-flow", "order_flow", "--no-progress")
    assert r2.code == 0, r2.out
    assert_exactly_once(sandbox, numbers)


def test_sigkill_between_write_and_mark_sent(project: Project, sandbox: Sandbox) -> None:
    """Kill the runner while PATCHes hang; the next run writes nothing twice."""
    numbers = unsent(sandbox)
    faults(
        sandbox.omnitron.url,
        {"rules": [{"action": "timeout", "route": "patch_order", "seconds": 20}]},
    )
    # A write cut by the kill has reached this in-process ERP already: settle at once.
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    proc = project.popen("run-flow", "order_flow", "--no-progress")
    deadline = time.monotonic() + 30
    while stats(sandbox.erp.url)["received"] < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    written_before = dict(sandbox.erp.received)
    assert written_before, "the runner wrote nothing before it was killed"
    faults(sandbox.omnitron.url, {})
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    for n in written_before:
        assert project.state(n) == "done"


def test_script_exception_fails_one_order_only(project: Project, sandbox: Sandbox) -> None:
    """A script that raises for one order fails it, with log.script.error; others pass."""
    numbers = unsent(sandbox)
    bad = numbers[3]
    project.misbehave_for(bad, 'raise ValueError("no ERP customer")')
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert project.state(bad) == "failed"
    logged = dict(project.sql(f"SELECT key, value FROM order_log WHERE order_number='{bad}'"))
    assert logged["log.script.error"].startswith("ValueError: no ERP customer (enrich_order.py")
    assert "line 9" in logged["log.script.error"]  # the raise inserted above
    assert bad not in sandbox.erp.received
    assert sorted(sandbox.erp.received) == sorted(n for n in numbers if n != bad)


def test_dry_run_prints_requests_and_writes_nothing(project: Project, sandbox: Sandbox) -> None:
    """--dry-run shows the ERP POST and the Omnitron PATCH per order; nothing changes."""
    number = unsent(sandbox)[0]
    r = project.run("run-flow", "order_flow", "--dry-run", "--order", number)
    assert r.code == 0, r.err
    assert '"method": "POST"' in r.out and '"is_send": true' in r.out
    assert f'"order_number": "{number}"' in r.out
    assert stats(sandbox.erp.url)["received"] == 0
    assert stats(sandbox.omnitron.url)["patches"] == 0
    assert not (project.root / "state").exists()  # no store, no lock: nothing written


def test_limit_processes_at_most_n_orders(project: Project, sandbox: Sandbox) -> None:
    """--limit 3 sends three orders."""
    r = project.run("run-flow", "order_flow", "--no-progress", "--limit", "3")
    assert r.code == 0, r.err
    assert stats(sandbox.erp.url)["received"] == 3


def test_history_commands(project: Project, sandbox: Sandbox) -> None:
    """runs and orders show read the store, without needing the connectors' secrets."""
    number = unsent(sandbox)[0]
    assert project.run("run-flow", "order_flow", "--no-progress").code == 0
    env = {"OMNITRON_PASSWORD": "", "ERP_TOKEN": ""}
    runs = project.run("runs", env=env)
    assert runs.code == 0 and "order_flow" in runs.out
    show = project.run("orders", "show", number)
    assert show.code == 0 and "done" in show.out and "log.gross_amount" in show.out
    assert project.run("orders", "show", "nope").code == 1


def test_ambiguous_write_without_query_check_is_quarantined(
    project: Project, sandbox: Sandbox
) -> None:
    """ERP commits, connection drops, no query_check: never resent, quarantined next run."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    project.edit_flow("  - query_check:\n", "  - query_check_off:\n")
    text = project.flow().read_text()
    start = text.index("  - query_check_off:")
    end = text.index("  - script:")
    project.flow().write_text(text[:start] + text[end:])
    fault_rule(sandbox.erp.url, action="drop_after_commit", route="create", numbers=[bad], count=1)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert project.state(bad) == "sending"
    assert sandbox.erp.received[bad] == 1
    r2 = project.run("run-flow", "order_flow", "--no-progress")
    assert r2.code == 1, r2.out + r2.err
    assert "quarantined" in r2.out
    assert project.state(bad) == "quarantined"
    r3 = project.run("run-flow", "order_flow", "--no-progress")
    assert r3.code == 0, r3.out + r3.err
    assert sandbox.erp.received[bad] == 1  # never written a second time
    assert stats(sandbox.erp.url)["duplicates"] == 0
    events = [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{bad}'")]
    assert any("integrator resolve" in m for m in events)
    assert all(project.state(n) == "done" for n in numbers[1:])
    q = project.run("quarantine")
    assert q.code == 0 and bad in q.out and "ambiguous" in q.out
    refused = project.run("replay", bad)
    assert refused.code == 2 and "may already be in the ERP" in refused.err
    # The operator finds it in the ERP and settles it with the ERP's answer.
    answer = project.root / "answer.json"
    answer.write_text(json.dumps(sandbox.erp.orders[bad] | {"payload": None}))
    r4 = project.run("resolve", bad, "--as-sent", "--response", str(answer))
    assert r4.code == 0, r4.err
    r5 = project.run("run-flow", "order_flow", "--no-progress")
    assert r5.code == 0, r5.out + r5.err
    assert project.state(bad) == "done" and sandbox.erp.received[bad] == 1
    assert_exactly_once(sandbox, numbers)
    events = [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{bad}'")]
    assert any(m.startswith("resolved by ") and m.endswith(": the ERP has it") for m in events)


def test_resolve_resend_after_an_unanswered_write(project: Project, sandbox: Sandbox) -> None:
    """No query_check; a 503 leaves the order ambiguous; the operator checks and resends."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    text = project.flow().read_text()
    project.flow().write_text(
        text[: text.index("  - query_check:")] + text[text.index("  - script:") :]
    )
    fault_rule(sandbox.erp.url, action="status", route="create", status=503, numbers=[bad])
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    assert project.state(bad) == "sending"
    faults(sandbox.erp.url, {})
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    assert project.state(bad) == "quarantined" and bad not in sandbox.erp.received
    r = project.run("resolve", bad, "--resend")
    assert r.code == 0 and "will be written on the next run" in r.out
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)


def test_permanent_failures_back_off_then_quarantine(project: Project, sandbox: Sandbox) -> None:
    """A 400 on every write: the order backs off, then is quarantined after max_attempts."""
    numbers = unsent(sandbox)
    bad = numbers[1]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[bad])
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1 and project.state(bad) == "failed"
    r2 = project.run("run-flow", "order_flow", "--no-progress")
    assert r2.code == 1 and project.state(bad) == "quarantined"
    r3 = project.run("run-flow", "order_flow", "--no-progress")
    assert r3.code == 0, r3.out + r3.err  # skipped, not failed again
    assert sandbox.erp.calls["create"] == len(numbers) - 1 + 2
    assert bad not in sandbox.erp.received
    order = next(o for o in sandbox.omnitron.orders.values() if o["number"] == bad)
    assert order["is_send"] is False
    faults(sandbox.erp.url, {})
    r4 = project.run("replay", bad)
    assert r4.code == 0, r4.out + r4.err
    assert_exactly_once(sandbox, numbers)
    events = [m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{bad}'")]
    assert any(m.startswith("replayed by ") and m.endswith(" (was quarantined)") for m in events)


@pytest.mark.services
def test_ledger_on_postgresql(tmp_path: Path) -> None:
    """The ledger on a real PostgreSQL server: a lost PATCH after the write, then a resume."""
    with running_sandbox(25) as sb, fresh_database() as url:
        numbers = unsent(sb)
        project = make_project(tmp_path, sb.env())
        project.use_state_url(url)
        fault_rule(sb.omnitron.url, action="drop_before", route="patch_order", numbers=[numbers[1]])
        r = project.run("run-flow", "order_flow", "--no-progress")
        assert r.code == 1 and "postgres-secret" not in r.out + r.err
        faults(sb.omnitron.url, {})
        r = project.run("run-flow", "order_flow", "--no-progress")
        assert r.code == 0, r.out + r.err
        assert_exactly_once(sb, numbers)
        h = project.run("orders", "show", numbers[1])
        assert h.code == 0 and "resuming after the write" in h.out
        assert not (project.root / "state").exists()  # nothing went to SQLite


def test_429_burst_is_absorbed_by_retries_in_one_run(project: Project, sandbox: Sandbox) -> None:
    """A 429 with Retry-After pauses the ERP host; the writes go through, once each."""
    numbers = unsent(sandbox)
    fault_rule(
        sandbox.erp.url, action="status", route="create", status=429, retry_after="1", count=3
    )
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    assert stats(sandbox.erp.url)["faults_injected"] == 3


def test_5xx_on_a_write_is_settled_by_query_check_next_run(
    project: Project, sandbox: Sandbox
) -> None:
    """A 503 answer to a write may hide a created order: stay `sending`, never blindly resend."""
    numbers = unsent(sandbox)
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=503, numbers=[numbers[0]])
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1 and "the ERP may have the order" in r.out
    assert project.state(numbers[0]) == "sending"
    faults(sandbox.erp.url, {})
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    events = [
        m for (m,) in project.sql(f"SELECT message FROM events WHERE order_number='{numbers[0]}'")
    ]
    assert any("query_check settles it" in m for m in events)


def test_a_write_cut_short_is_left_alone_until_it_can_have_landed(
    project: Project, sandbox: Sandbox
) -> None:
    """A write that timed out may still be committed by the ERP: query_check waits for
    ``settle_seconds`` before asking, so it cannot miss an order the ERP is about to commit."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nsettle_seconds: 3")
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace(
            "BearerToken: ${ERP_TOKEN}\n    Timeout: 30",
            "BearerToken: ${ERP_TOKEN}\n    Timeout: 1",
        )
    )
    # The ERP takes 2 s, then commits: the runner has given up after 1 s.
    fault_rule(sandbox.erp.url, action="timeout", route="create", seconds=2, numbers=[bad], count=1)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1 and project.state(bad) == "sending"
    r = project.run("run-flow", "order_flow", "--no-progress")  # at once: too early to ask
    assert r.code == 0, r.out + r.err  # skipped for now, not failed
    assert project.state(bad) == "sending"
    assert sandbox.erp.calls["create"] == len(numbers)  # no second write
    assert sandbox.erp.calls["query"] == len(numbers)  # and no question yet
    time.sleep(3)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)  # found by query_check, not written twice


def test_idempotency_key_makes_a_repeated_write_harmless(
    project: Project, sandbox: Sandbox
) -> None:
    """No query_check, but an idempotency key: a write whose answer was lost is repeated at
    once with the same key, and the ERP answers it without creating a second order."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    text = project.flow().read_text()
    text = text[: text.index("  - query_check:")] + text[text.index("  - script:") :]
    project.flow().write_text(
        text.replace(
            "      path: /api/orders/\n      method: POST",
            "      path: /api/orders/\n      method: POST\n"
            "      idempotency_header: Idempotency-Key",
        )
    )
    assert "idempotency_header" in project.flow().read_text()
    fault_rule(sandbox.erp.url, action="drop_after_commit", route="create", numbers=[bad], count=1)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    erp = stats(sandbox.erp.url)
    assert erp["idempotent_replays"] == 1 and erp["duplicates"] == 0
    assert_exactly_once(sandbox, numbers)


def test_a_settled_order_that_fails_its_new_write_is_not_stuck_in_sending(
    project: Project, sandbox: Sandbox
) -> None:
    """Found by the chaos test: after query_check settles a `sending` order (not in the ERP),
    a permanent failure of the new write must count and quarantine, not loop in `sending`.
    The 503 is about the ERP, not the order: it is not charged; the two 400s are."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    project.edit_flow("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0\nsettle_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=503, numbers=[bad])
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    assert project.state(bad) == "sending"
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[bad])
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    assert project.state(bad) == "failed"
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    assert project.state(bad) == "quarantined" and bad not in sandbox.erp.received
