"""Returns, ERP → Omnium (flows/omnium/flows/returns.yaml): lines, reasons, RMA number, refund
and restock flags; once per RMA, also when the answer to the create is lost."""

from __future__ import annotations

from typing import Any

import requests
from support import Project, fault_rule

from integrator.sandbox import ErpSandbox, OmniumSandbox


def register(erp: ErpSandbox, *returns: dict[str, Any]) -> None:
    requests.post(
        f"{erp.url}/_sandbox/erp/changes",
        json={"kind": "returns", "changes": list(returns)},
        timeout=5,
    ).raise_for_status()


def a_return(omnium: OmniumSandbox, rma: str, *reasons: str) -> dict[str, Any]:
    order = next(o for o in omnium.orders.values() if len(o["OrderForm"]["LineItems"]) >= 2)
    lines = order["OrderForm"]["LineItems"]
    return {
        "order_id": order["Id"], "rma_number": rma, "refund": True,
        "lines": [{"line_item_id": li["LineItemId"], "quantity": 1, "reason": r, "restock": True}
                  for li, r in zip(lines, reasons, strict=False)],
    }  # fmt: skip


def run(project: Project, code: int = 0) -> str:
    r = project.run("run-flow", "returns", "--no-progress")
    assert r.code == code, r.out + r.err
    return r.out + r.err


def test_a_return_lands_once_with_reasons_and_flags(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    ret = a_return(omnium, "RMA-0001", "R01", "R02")
    register(erp, ret)
    run(omnium_project)
    (created,) = omnium.returns
    assert created["OrderId"] == ret["order_id"] and created["RmaNumber"] == "RMA-0001"
    assert created["Refund"] is True
    assert [(li["reason"], li["restock"]) for li in created["Lines"]] == [
        ("Wrong size", True), ("Damaged in transport", False),  # damaged: never restocked
    ]  # fmt: skip
    run(omnium_project)
    assert len(omnium.returns) == 1


def test_an_unknown_reason_fails_that_return_only(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    register(erp, a_return(omnium, "RMA-BAD", "R99"), a_return(omnium, "RMA-GOOD", "R04"))
    out = run(omnium_project, code=1)
    assert [r["RmaNumber"] for r in omnium.returns] == ["RMA-GOOD"]
    assert "unknown return reason code 'R99'" in out


def test_a_lost_answer_does_not_create_the_return_twice(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    omnium_project.edit_flow("concurrency: 2", "concurrency: 2\nsettle_seconds: 0", "returns")
    register(erp, a_return(omnium, "RMA-0002", "R04"))
    fault_rule(omnium.url, action="drop_after_commit", route="create_return", count=1)
    run(omnium_project, code=1)
    assert len(omnium.returns) == 1  # created; the answer was lost
    run(omnium_project)  # query_check finds RMA-0002: not created again
    assert len(omnium.returns) == 1
