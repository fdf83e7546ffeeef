"""`integrator reconcile`: the OMS's sent orders against the ERP's, through the CLI and real
HTTP; planted differences of every kind are found, and nothing else."""

from __future__ import annotations

import json

import requests
from support import Project, unsent

from integrator.sandbox import Sandbox


def test_agreement_then_every_kind_of_planted_difference(
    project: Project, sandbox: Sandbox
) -> None:
    numbers = unsent(sandbox)
    assert project.run("run-flow", "order_flow", "--no-progress").code == 0
    r = project.run("reconcile", "order_flow")
    assert r.code == 0 and "no differences" in r.out, r.out + r.err

    by_number = {o["number"]: o for o in sandbox.omnitron.orders.values()}
    missing = next(o for o in sandbox.omnitron.orders.values() if o["status"] != "400")
    missing["is_send"] = True  # marked sent in the OMS, never written to the ERP
    not_marked = numbers[0]
    by_number[not_marked]["is_send"] = False  # the ERP has it, the OMS forgot
    mismatch = numbers[1]
    sandbox.erp.orders[mismatch]["total"] = "1.00"  # the ERP booked another amount
    requests.post(  # an order the ERP got from somewhere else
        f"{sandbox.erp.url}/api/orders/",
        json={"order_number": "POS-0001", "total": "10.00"},
        headers={"Authorization": f"Bearer {sandbox.credentials['ERP_TOKEN']}"},
        timeout=5,
    ).raise_for_status()

    r = project.run("reconcile", "order_flow", "--json")
    assert r.code == 1, r.out + r.err
    found = json.loads(r.out)
    assert found["missing_in_erp"] == [missing["number"]]
    assert found["not_marked_in_oms"] == [not_marked]
    assert found["unknown_to_oms"] == ["POS-0001"]
    assert found["amount_mismatches"] == [
        {"order": mismatch, "oms": by_number[mismatch]["amount"], "erp": "1.00"}
    ]
    table = project.run("reconcile", "order_flow")
    assert table.code == 1 and "amounts differ" in table.out and "missing in the ERP" in table.out

    later = project.run("reconcile", "order_flow", "--since", "2099-01-01")
    assert later.code == 0 and "0 order(s) sent in the OMS, 0 in the ERP" in later.out
    bad = project.run("reconcile", "order_flow", "--since", "last tuesday")
    assert bad.code == 2 and "--since" in bad.err and "2026-11-01" in bad.err


def test_the_daemon_reconciles_on_schedule_and_reports_metrics(
    project: Project, sandbox: Sandbox
) -> None:
    from support import wait_for
    from support.daemon import daemon

    missing = next(o for o in sandbox.omnitron.orders.values() if o["status"] != "400")
    missing["is_send"] = True
    project.edit_flow("  schedule: {every: 1h}\n", "  schedule: {every: 1s}\n")
    with daemon(project) as d:
        wait_for(lambda: d.named("reconciled"), 30, "a reconciliation")
        m = d.metrics()
    key = ("integrator_reconcile_differences", (("flow", "order_flow"), ("kind", "missing_in_erp")))
    assert m[key] == 1.0
    assert d.named("reconciled")[0]["missing_in_erp"] == 1
