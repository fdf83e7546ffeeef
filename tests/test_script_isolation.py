"""Hostile scripts cannot cross wires between orders or reach into the runner.

Each test runs the real order flow against the sandbox with one order's script misbehaving
(forks, stray bytes on the worker's pipes, a reply cut short, children left behind) and checks
the run's promises: every order in the ERP carries its own number, none is sent twice or lost,
the misbehaving order fails alone with a clear message before its write, the run ends within a
bound, and nothing the script started outlives it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from conftest import Project, stats
from test_order_flow import unsent

from integrator.sandbox import Sandbox


def check_delivery(project: Project, sandbox: Sandbox, numbers: list[str], bad: set[str]) -> None:
    """Every good order in the ERP once under its own number and done; the bad ones failed,
    never written; no payload under another order's number."""
    erp = stats(sandbox.erp.url)
    assert erp["duplicates"] == 0, erp["duplicate_numbers"]
    good = [n for n in numbers if n not in bad]
    assert sorted(sandbox.erp.received) == sorted(good)
    for n in good:
        payload = sandbox.erp.payload(n)
        assert payload is not None and payload["order_number"] == n
        assert project.state(n) == "done", n
    for n in bad:
        assert project.state(n) == "failed", n
        assert n not in sandbox.erp.received
    sent = {o["number"] for o in sandbox.omnitron.orders.values() if o["is_send"]}
    assert sent == set(good)  # nothing marked sent that the ERP does not hold


def script_error(project: Project, number: str) -> str:
    rows = project.sql(
        f"SELECT value FROM order_log WHERE order_number='{number}' AND key='log.script.error'"
    )
    assert rows, f"no log.script.error for {number}"
    return str(rows[0][0])


def test_a_forked_child_returning_into_the_worker_cannot_answer_for_another_order(
    project: Project, sandbox: Sandbox
) -> None:
    """The child of os.fork() returns from process() into the worker's loop: it must neither
    answer the call a second time nor take the next order's call (that put one order's
    payload under another order's number)."""
    numbers = unsent(sandbox)
    bad = numbers[1]
    project.misbehave_for(bad, "import os", "os.fork()")
    started = time.monotonic()
    r = project.run("run-flow", "order_flow", "--no-progress", timeout=60)
    assert time.monotonic() - started < 30
    # The fork itself is harmless: both processes return the same data; only one answers.
    check_delivery(project, sandbox, numbers, set())
    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.err
