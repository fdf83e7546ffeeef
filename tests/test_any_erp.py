"""Any ERP by configuration: the example projects (flows/jsonrpc, flows/soap) end to end through
the CLI against the sandbox's imitations, for each way in: the happy path, an error answer on
query_check (nothing written), a refused write (retried, one order in the end), a session that
expires (exactly one new login), a kill between the write and the mark (never written twice)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support import ROOT, Project, fault_rule, faults, stats, unsent

from integrator.sandbox import Sandbox


@dataclass(frozen=True)
class Erp:
    """One example flow and the sandbox server it writes to."""

    project: str  # the directory under flows/
    flow: str
    server: str  # the Sandbox attribute
    search: str  # the fault route names of the server
    create: str
    login_key: str  # which login stats count
    secret: str  # the variable holding its password
    search_error: str  # what the ERP says when its search fails (an injected fault)
    sessions: bool = True  # its login gives a session that can expire

    def url(self, sb: Sandbox) -> str:
        return str(getattr(sb, self.server).url)

    def stats(self, sb: Sandbox) -> dict[str, Any]:
        return stats(self.url(sb))

    def logins(self, sb: Sandbox) -> int:
        return int(self.stats(sb)["logins"][self.login_key])


SERIALIZE = "could not serialize access"
ERPS = [
    Erp(
        "jsonrpc",
        "order_to_jsonrpc",
        "jsonrpc_erp",
        "search",
        "create",
        "session_login",
        "JSONRPC_ERP_PASSWORD",
        SERIALIZE,
    ),
    # Odoo's uid does not expire: the password goes with every call
    Erp(
        "jsonrpc",
        "order_to_odoo",
        "jsonrpc_erp",
        "search",
        "create",
        "login",
        "JSONRPC_ERP_PASSWORD",
        SERIALIZE,
        sessions=False,
    ),
    Erp(
        "soap",
        "order_to_soap",
        "soap_erp",
        "find",
        "create",
        "Login",
        "SOAP_ERP_PASSWORD",
        "the order database is busy",
    ),
]


@pytest.fixture(params=ERPS, ids=lambda e: e.flow)
def erp(request: pytest.FixtureRequest) -> Erp:
    return request.param  # type: ignore[no-any-return]


def erp_project(tmp_path: Path, sb: Sandbox, erp: Erp) -> Project:
    """A copy of the example project, its store where Project reads it, retries at once."""
    shutil.copytree(ROOT / "flows" / erp.project, tmp_path, dirs_exist_ok=True)
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        cfg.read_text().replace(f"state/{erp.project}.db", "state/integrator.db"), "utf-8"
    )
    project = Project(tmp_path, sb.env())
    project.edit_flow("stages:", "backoff_seconds: 0\nsettle_seconds: 0\nstages:", erp.flow)
    return project


def run(project: Project, erp: Erp, *args: str) -> tuple[int, str]:
    r = project.run("run-flow", erp.flow, "--no-progress", *args)
    assert "Traceback" not in r.out + r.err, r.out + r.err
    return r.code, r.out + r.err


def delivered_once(sb: Sandbox, erp: Erp, numbers: list[str]) -> None:
    """Every order in the ERP exactly once, and marked sent in Omnitron."""
    st = erp.stats(sb)
    assert st["duplicates"] == 0, st["duplicate_numbers"]
    assert sorted(st["created"]) == sorted(numbers), st["created"]
    assert stats(sb.omnitron.url)["unsent"] == 0


def test_the_happy_path_delivers_each_order_once_with_one_login(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    assert project.run("validate").code == 0
    code, out = run(project, erp)
    assert code == 0, out
    delivered_once(sandbox, erp, numbers)
    assert erp.logins(sandbox) == 1
    # The ERP's reference, read by the write's id_path, is the order's ERP ref.
    shown = project.run("orders", "show", numbers[0], "--flow", erp.flow).out
    assert "ERP ref" in shown, shown
    secret = sandbox.env()[erp.secret]
    assert secret not in out + shown
    assert all(secret not in p.read_text() for p in (tmp_path / "logs").rglob("*.jsonl"))


def test_an_error_answer_on_query_check_writes_nothing(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    """An error answer (JSON-RPC's in a 200, a SOAP Fault) is never "not found": the order
    fails, unwritten, with the ERP's words."""
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    fault_rule(erp.url(sandbox), action="app_error", route=erp.search)
    code, out = run(project, erp)
    assert code == 1
    assert erp.search_error in out  # the ERP's own message, in the summary
    assert erp.stats(sandbox)["received"] == 0
    assert all(project.state(n) == "failed" for n in numbers)
    faults(erp.url(sandbox), {})
    code, out = run(project, erp)
    assert code == 0, out
    delivered_once(sandbox, erp, numbers)


def test_a_refused_write_is_sent_again_later_and_lands_once(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    fault_rule(erp.url(sandbox), action="app_error", route=erp.create, count=2)
    code, out = run(project, erp)
    assert code == 1
    refused = [n for n in numbers if project.state(n) == "failed"]
    assert len(refused) == 2, out
    shown = project.run("orders", "show", refused[0], "--flow", erp.flow).out
    assert "the ERP refused this order" in shown, shown  # its words, in orders show
    code, out = run(project, erp)
    assert code == 0, out
    delivered_once(sandbox, erp, numbers)


@pytest.mark.parametrize("erp", [e for e in ERPS if e.sessions], ids=lambda e: e.flow)
def test_a_session_that_expires_costs_exactly_one_new_login(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    fault_rule(erp.url(sandbox), action="expire_sessions", route=erp.create, count=1)
    code, out = run(project, erp)
    assert code == 0, out
    delivered_once(sandbox, erp, numbers)
    assert erp.logins(sandbox) == 2  # the first, and one after the expiry


def test_a_kill_between_the_write_and_the_mark_never_writes_twice(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    fault_rule(sandbox.omnitron.url, action="timeout", route="patch_order", seconds=20)
    proc = project.popen("run-flow", erp.flow, "--no-progress")
    deadline = time.monotonic() + 30
    while erp.stats(sandbox)["received"] < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.kill()
    proc.wait(10)
    written = erp.stats(sandbox)["created"]
    assert written, "the runner wrote nothing before it was killed"
    faults(sandbox.omnitron.url, {})
    code, out = run(project, erp)
    assert code == 0, out
    delivered_once(sandbox, erp, numbers)
    assert all(project.state(n) == "done" for n in written)


def test_reconcile_asks_the_erp_order_by_order_through_query_check(
    tmp_path: Path, sandbox: Sandbox, erp: Erp
) -> None:
    """An ERP asked one order at a time (POST, JSON-RPC, SOAP) is reconciled through the
    flow's own query_check: after a run, every sent order is there, for the same amount."""
    project = erp_project(tmp_path, sandbox, erp)
    numbers = unsent(sandbox)
    assert run(project, erp)[0] == 0
    r = project.run("reconcile", erp.flow, "--json")
    assert r.code == 0, r.out + r.err
    found = json.loads(r.out)
    assert found["oms_sent"] >= len(numbers) > 0, found
    assert found["missing_in_erp"] == [] and found["amount_mismatches"] == [], found
    assert found.get("could_not_ask", []) == [], found
    # A planted difference is found: an amount the ERP holds otherwise.
    server = getattr(sandbox, erp.server)
    with server.book.lock:
        server.book.orders[0]["amount_total" if erp.project == "jsonrpc" else "total"] = "1.00"
    r = project.run("reconcile", erp.flow, "--json")
    assert r.code == 1 and len(json.loads(r.out)["amount_mismatches"]) == 1, r.out
