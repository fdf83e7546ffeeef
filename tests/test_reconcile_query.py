"""`integrator reconcile` for ERPs asked one order at a time (issue 14, item 6): each order the
OMS shows as sent is asked for through the flow's own query_check, rate-limited, through the
CLI against the sandbox. Missing orders and amounts are found; an error answer or a failure is
"could not ask", never "missing"; the rate holds at the server; a 429 is honoured; what this
way cannot know is said, not reported as 0."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time

from support import Project, fault_rule, stats

from integrator.sandbox import Sandbox

LIST_BLOCK = """reconcile:
  erp_list: /api/orders/
  erp_number: order_number
  erp_amount: total
  oms_amount: amount
  erp_since_param: since
  schedule: {every: 1h}
"""


def per_order(project: Project, rps: float = 50, extra: str = "") -> None:
    """Make order_flow's reconcile ask order by order: no erp_list, the flow's query_check
    (the sandbox's ``GET /api/orders/?number=``, whose answer is a page)."""
    project.edit_flow(
        LIST_BLOCK,
        f"reconcile:\n  erp_amount: results[0].total\n  requests_per_second: {rps}\n"
        f"  schedule: {{every: 1h}}\n{extra}",
    )


def all_sent(sandbox: Sandbox) -> list[str]:
    """Mark every deliverable order sent in the OMS and give the ERP each one (its amount),
    as a finished run leaves them; the numbers, sorted."""
    with sandbox.omnitron.lock:
        orders = [o for o in sandbox.omnitron.orders.values() if o["status"] == "400"]
        for o in orders:
            o["is_send"] = True
    for o in orders:
        if o["number"] not in sandbox.erp.orders:
            sandbox.erp.preload(o["number"], o["amount"], "2026-11-02T10:00:00.000000Z")
    return sorted(o["number"] for o in sandbox.omnitron.orders.values() if o["is_send"])


def query_times(sandbox: Sandbox) -> list[float]:
    """Start recording when each ``query`` call reaches the ERP sandbox (monotonic)."""
    times: list[float] = []
    lock = threading.Lock()

    def seen(route: str) -> None:
        if route == "query":
            with lock:
                times.append(time.monotonic())

    sandbox.erp.watchers.append(seen)
    return times


def test_after_a_run_they_agree_then_missing_and_amounts_are_found(
    project: Project, sandbox: Sandbox
) -> None:
    per_order(project)
    assert project.run("run-flow", "order_flow", "--no-progress").code == 0
    agree = project.run("reconcile", "order_flow", "--json")
    assert agree.code == 0, agree.out + agree.err
    found = json.loads(agree.out)
    sent = sum(1 for o in sandbox.omnitron.orders.values() if o["is_send"])
    assert found["erp_query"] == "query_check"
    assert found["oms_sent"] == found["erp_orders"] == sent
    assert found["missing_in_erp"] == found["could_not_ask"] == []
    # The listing row had what query_check reads (the number): no order was assembled.
    assert found["assembled"] == 0
    calls = stats(sandbox.erp.url)["calls"]
    assert calls["query"] >= sent  # the run's own checks, and one question per sent order

    missing = next(o for o in sandbox.omnitron.orders.values() if o["status"] != "400")
    missing["is_send"] = True  # marked sent in the OMS, never written to the ERP
    mismatch = sorted(sandbox.erp.orders)[0]
    sandbox.erp.orders[mismatch]["total"] = "1.00"
    oms_amount = next(o for o in sandbox.omnitron.orders.values() if o["number"] == mismatch)[
        "amount"
    ]
    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 1, r.out + r.err
    found = json.loads(r.out)
    assert found["missing_in_erp"] == [missing["number"]]
    assert found["amount_mismatches"] == [{"order": mismatch, "oms": oms_amount, "erp": "1.00"}]
    # What only the ERP's own list can tell is not known: null, and said so, never 0.
    assert found["not_marked_in_oms"] is None and found["unknown_to_oms"] is None
    assert "not_known" in found
    table = project.run("reconcile", "order_flow")
    assert table.code == 1
    assert "order by order" in table.out and "not checked" in table.out
    assert "missing in the ERP" in table.out and "amounts differ" in table.out
    # --since: only the orders placed since then are asked about.
    asked = stats(sandbox.erp.url)["calls"]["query"]
    later = project.run("reconcile", "order_flow", "--since", "2099-01-01")
    assert later.code == 0 and "0 order(s) sent in the OMS, 0 in the ERP" in later.out
    assert stats(sandbox.erp.url)["calls"]["query"] == asked


def test_an_error_answer_is_could_not_ask_never_missing(project: Project, sandbox: Sandbox) -> None:
    per_order(project)
    project.edit_flow(
        "      not_found_status_codes: [404]\n",
        "      not_found_status_codes: [404]\n      answer:\n        refused: error\n",
    )
    numbers = all_sent(sandbox)
    locked, down = numbers[0], numbers[1]
    # 200 with an `error` member (JSON-RPC's way): by the rules an error, not "count absent".
    fault_rule(
        sandbox.erp.url,
        action="body",
        route="query",
        numbers=[locked],
        status=200,
        body='{"error": {"message": "database is locked"}}',
        content_type="application/json",
    )
    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 1, r.out + r.err
    found = json.loads(r.out)
    assert found["missing_in_erp"] == []
    assert [c["order"] for c in found["could_not_ask"]] == [locked]
    assert "database is locked" in found["could_not_ask"][0]["reason"]
    assert found["erp_orders"] == len(numbers) - 1

    # A status listed in failure_status_codes: the same.
    project.edit_flow("      failure_status_codes: [500, 502, 503]\n",
                      "      failure_status_codes: [500, 502, 503, 418]\n")  # fmt: skip
    fault_rule(sandbox.erp.url, action="status", route="query", numbers=[down], status=418)
    r = project.run("reconcile", "order_flow")
    assert r.code == 1, r.out + r.err
    assert "could not ask the ERP" in r.out and down in r.out and "418" in r.out
    assert "missing in the ERP" not in r.out


def test_the_rate_holds_at_the_server(project: Project, sandbox: Sandbox) -> None:
    rate = 20.0
    per_order(project, rps=rate)
    numbers = all_sent(sandbox)
    times = query_times(sandbox)
    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 0, r.out + r.err
    n = len(numbers)
    assert n >= 20 and len(times) == n
    # The limiter's schedule: question i starts no sooner than (i)/rate after the first. At
    # the server, arrival spacing may shrink only by the first call's connection set-up.
    assert times[-1] - times[0] >= (n - 1) / rate - 0.05, times[-1] - times[0]
    most = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert most <= rate + 1, most


def test_a_429_is_honoured_and_the_order_still_asked(project: Project, sandbox: Sandbox) -> None:
    rate = 10.0
    per_order(project, rps=rate)
    numbers = all_sent(sandbox)
    times = query_times(sandbox)
    fault_rule(
        sandbox.erp.url, action="status", route="query", numbers=[numbers[1]], status=429,
        retry_after="1", count=1,
    )  # fmt: skip
    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 0, r.out + r.err
    found = json.loads(r.out)
    assert found["could_not_ask"] == [] and found["erp_orders"] == len(numbers)
    assert len(times) == len(numbers) + 1  # the 429, then its retry
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # Nothing reached the ERP in the second the 429 asked for: the whole host paused.
    assert max(gaps) >= 1.0, gaps
    # And the questions that waited out the pause did not all start when it ended: only the
    # retry itself may come close to a question (the rate spaces them 1/rate apart).
    close = [g for g in gaps if g < 0.5 / rate]
    assert len(close) <= 1, gaps


def test_an_order_the_listing_row_cannot_ask_for_is_assembled(
    project: Project, sandbox: Sandbox
) -> None:
    per_order(project)
    # query_check reads an item's SKU, which only the assembled order has.
    project.edit_flow(
        "url: /api/orders/?number=${_order.number}",
        "url: /api/orders/?number=${_order.number}&sku=${_order.orderitem_set[0].product.sku}",
    )
    numbers = all_sent(sandbox)
    before = stats(sandbox.omnitron.url)["calls"].get("detail", 0)
    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 0, r.out + r.err
    found = json.loads(r.out)
    assert found["assembled"] == len(numbers)
    assert stats(sandbox.omnitron.url)["calls"].get("detail", 0) - before == len(numbers)


def test_a_question_reading_what_earlier_stages_set_is_refused(
    project: Project, sandbox: Sandbox
) -> None:
    per_order(project)
    text = project.flow().read_text()
    # A script before query_check sets an attribute that query_check's URL reads.
    text = text.replace(
        "  - query_check:\n", "  - script:\n      path: scripts/enrich_order.py\n  - query_check:\n"
    ).replace("?number=${_order.number}", "?number=${erp.customer_code}")
    project.flow().write_text(text)
    r = project.run("reconcile", "order_flow")
    assert r.code == 2, r.out + r.err
    assert "order_flow.yaml" in r.err and "erp.customer_code" in r.err
    assert "script" in r.err and "Traceback" not in r.err


def test_validate_explains_a_flow_reconcile_cannot_ask(project: Project, sandbox: Sandbox) -> None:
    text = project.flow().read_text()
    start, end = text.index("  - query_check:"), text.index("  - script:")
    no_check = text[:start] + text[end:]
    project.flow().write_text(no_check.replace(LIST_BLOCK, "reconcile:\n  schedule: {every: 1h}\n"))
    r = project.run("validate")
    assert r.code == 2, r.out + r.err
    assert "reconcile cannot ask the ERP" in r.err and "erp_list" in r.err
    assert "query_check" in r.err and "order_flow.yaml" in r.err

    project.flow().write_text(
        no_check.replace(LIST_BLOCK, "reconcile:\n  erp_query: query_check\n")
    )
    r = project.run("validate")
    assert r.code == 2 and "has none" in r.err, r.out + r.err
    project.flow().write_text(text.replace(LIST_BLOCK, "reconcile:\n  erp_query: one_by_one\n"))
    r = project.run("validate")
    assert r.code == 2 and "expected list or query_check" in r.err, r.out + r.err
    project.flow().write_text(
        text.replace(LIST_BLOCK, "reconcile:\n  requests_per_second: 0\n  erp_amount: 'a[?'\n")
    )
    r = project.run("validate")
    assert r.code == 2, r.out + r.err
    assert "requests_per_second" in r.err and "erp_amount" in r.err

    # No reconcile block at all, and no query_check: reconcile itself says what to write.
    project.flow().write_text(no_check.replace(LIST_BLOCK, ""))
    r = project.run("reconcile", "order_flow")
    assert r.code == 2 and "reconcile cannot ask the ERP" in r.err, r.out + r.err


def test_refused_credentials_stop_it_instead_of_listing_every_order(
    project: Project, sandbox: Sandbox
) -> None:
    per_order(project)
    all_sent(sandbox)
    fault_rule(sandbox.erp.url, action="status", route="query", status=401)
    r = project.run("reconcile", "order_flow")
    assert r.code == 1, r.out + r.err
    assert "reconcile stopped" in r.err and "401" in r.err and "Traceback" not in r.err
    assert stats(sandbox.erp.url)["calls"]["query"] <= 8  # not one per order after the first


def test_the_daemon_reconciles_order_by_order_and_reports_metrics(
    project: Project, sandbox: Sandbox
) -> None:
    from support import wait_for
    from support.daemon import daemon

    per_order(project)
    all_sent(sandbox)
    missing = next(o for o in sandbox.omnitron.orders.values() if o["status"] != "400")
    missing["is_send"] = True
    project.edit_flow("  schedule: {every: 1h}\n", "  schedule: {every: 1s}\n")
    with daemon(project) as d:
        wait_for(lambda: d.named("reconciled"), 30, "a reconciliation")
        m = d.metrics()
    key = ("integrator_reconcile_differences", (("flow", "order_flow"), ("kind", "missing_in_erp")))
    assert m[key] == 1.0
    ask = ("integrator_reconcile_differences", (("flow", "order_flow"), ("kind", "could_not_ask")))
    assert m[ask] == 0.0
    unknown = (
        "integrator_reconcile_differences",
        (("flow", "order_flow"), ("kind", "unknown_to_oms")),
    )
    assert unknown not in m  # not known this way: no gauge, rather than a false 0
    event = d.named("reconciled")[0]
    assert event["missing_in_erp"] == 1 and "unknown_to_oms" not in event


# ------------------------------------------------------------------- a JSON-RPC ERP (Odoo-like)

RPC_CONNECTOR = """  - Name: rpc
    ConnectorId: rpc-sandbox
    Host: ${JSONRPC_ERP_URL}
    Username: ${JSONRPC_ERP_LOGIN}
    Password: ${JSONRPC_ERP_PASSWORD}
    Timeout: 10
    TokenLogin:
      Path: /jsonrpc
      Body: {jsonrpc: "2.0", method: call, id: 1,
             params: {service: common, method: session_login,
                      args: [sandbox, "${connector.Username}", "${connector.Password}"]}}
      Headers:
        Authorization: "Session ${base64(concat(connector.Username, ':', login.result[0],
                        ':', login.result[1]))}"
"""

RPC_FLOW = """name: order_rpc
source: omnitron
target: rpc
stages:
  - login
  - read:
      statuses: ["400"]
  - query_check:
      url: /jsonrpc
      method: POST
      body:
        jsonrpc: "2.0"
        method: call
        id: 1
        params:
          service: object
          method: execute
          args: [sale.order, search_read,
                 [[[client_order_ref, "=", "${_order.number}"]], [amount_total]]]
      response_path: result[0].id
      answer: {preset: jsonrpc}
reconcile:
  erp_amount: result[0].amount_total
  requests_per_second: 50
"""


def test_a_jsonrpc_erp_asked_by_post_with_answer_rules(project: Project, sandbox: Sandbox) -> None:
    rpc = sandbox.jsonrpc_erp
    assert rpc is not None
    config = project.root / "config.yaml"
    text = config.read_text()
    anchor = "  # Export destinations"
    assert anchor in text
    config.write_text(text.replace(anchor, RPC_CONNECTOR + anchor))
    (project.root / "flows" / "order_rpc.yaml").write_text(RPC_FLOW)
    with sandbox.omnitron.lock:
        orders = sorted(
            (o for o in sandbox.omnitron.orders.values() if o["status"] == "400"),
            key=lambda o: o["number"],
        )
        for o in orders:
            o["is_send"] = True
    held, missing, differs, failing = orders[:-3], orders[-3], orders[-2], orders[-1]
    for o in [*held, failing]:
        rpc.preload(o["number"], o["amount"])
    rpc.preload(differs["number"], "1.00")
    # The ERP fails the search for one order as Odoo does: HTTP 200 and an `error` member.
    fault_rule(rpc.url, action="app_error", route="search", numbers=[failing["number"]])

    r = project.run("reconcile", "order_rpc", "--json")
    assert r.code == 1 and r.out, r.out + r.err
    found = json.loads(r.out)
    sent = sum(1 for o in sandbox.omnitron.orders.values() if o["is_send"])
    assert found["erp_query"] == "query_check" and found["oms_sent"] == sent
    assert found["missing_in_erp"] == [missing["number"]]
    assert found["amount_mismatches"] == [
        {"order": differs["number"], "oms": differs["amount"], "erp": "1.00"}
    ]
    assert [c["order"] for c in found["could_not_ask"]] == [failing["number"]]
    assert "concurrent update" in found["could_not_ask"][0]["reason"]  # the ERP's own words
    assert found["not_marked_in_oms"] is None and found["unknown_to_oms"] is None
    rs = rpc.stats()
    # One session login for every question; every question a search in the ERP.
    assert rs["logins"] == {"login": 0, "session_login": 1}, rs
    assert rs["methods"]["sale.order"]["search_read"] == sent, rs
    assert sandbox.env()["JSONRPC_ERP_PASSWORD"] not in r.out + r.err


def test_a_stop_drops_the_questions_not_yet_asked(project: Project, sandbox: Sandbox) -> None:
    from support import wait_for
    from support.daemon import daemon

    rate = 2.0  # 20+ orders: ten seconds of questions
    per_order(project, rps=rate)
    numbers = all_sent(sandbox)
    times = query_times(sandbox)
    # Ctrl-C on the command: it ends now, it does not ask the remaining orders first.
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", "reconcile", "order_flow"],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(lambda: len(times) >= 2, 20, "the first questions")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=5)
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert len(times) < len(numbers) / 2, len(times)

    # The daemon stopping: the same, and the unfinished check reports no counts.
    project.edit_flow("  schedule: {every: 1h}\n", "  schedule: {every: 1s}\n")
    asked = len(times)
    with daemon(project) as d:
        wait_for(lambda: len(times) >= asked + 2, 20, "the daemon's questions")
        assert d.stop(timeout=5) == 0
    assert len(times) - asked < len(numbers) / 2, len(times)
    assert not d.named("reconciled")
