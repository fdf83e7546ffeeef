"""Stock, ERP → Omnium (flows/omnium/): the nightly full sync writes only what differs and
never touches reserved stock; deltas land once each with their reason, and a delta whose
answer was lost is never applied twice."""

from __future__ import annotations

import json
import sqlite3

import requests
from support import Project, fault_rule

from integrator.sandbox import ErpSandbox, OmniumSandbox


def run(project: Project, flow: str, code: int = 0) -> None:
    r = project.run("run-flow", flow, "--no-progress")
    assert r.code == code, r.out + r.err


def level(omnium: OmniumSandbox, sku: str, wh: str) -> tuple[int, int]:
    rec = omnium.stock[(sku, wh)]
    return rec["inventory"], rec["reservedInventory"]


def test_full_sync_writes_only_differences_and_keeps_reserved(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    requests.post(
        f"{erp.url}/_sandbox/erp/stock",
        json=[
            {"sku": "SKU-100", "warehouse": "OSL", "quantity": 7},
            {"sku": "SKU-200", "warehouse": "STO", "quantity": 0},
            {"sku": "SKU-500", "warehouse": "OSL", "quantity": 5},  # new in the ERP
            {"sku": "SKU-400", "warehouse": "STO", "quantity": -3},  # oversold: sent as 0
        ],
        timeout=5,
    ).raise_for_status()
    run(omnium_project, "stock_full")
    assert sorted((w["sku"], w["warehouseId"], w["inventory"]) for w in omnium.stock_writes) == [
        ("SKU-100", "OSL", 7), ("SKU-200", "STO", 0), ("SKU-400", "STO", 0),
        ("SKU-500", "OSL", 5),
    ]  # fmt: skip
    assert level(omnium, "SKU-100", "OSL") == (7, 2)  # reserved stock kept
    assert level(omnium, "SKU-300", "OSL") == (10, 2)  # unchanged: not written
    assert level(omnium, "SKU-500", "OSL") == (5, 0)
    assert level(omnium, "SKU-400", "STO") == (0, 2)
    run(omnium_project, "stock_full")  # the same day: only the clamped entry differs still,
    assert len(omnium.stock_writes) == 4  # and it is done for today


def test_deltas_land_once_with_their_reason(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    requests.post(
        f"{erp.url}/_sandbox/erp/changes",
        json={
            "kind": "stock",
            "changes": [
                {"sku": "SKU-100", "warehouse": "OSL", "change": -2, "reason": "sale"},
                {"sku": "SKU-300", "warehouse": "STO", "change": 5, "reason": "purchase"},
            ],
        },
        timeout=5,
    ).raise_for_status()
    run(omnium_project, "stock_delta")
    assert level(omnium, "SKU-100", "OSL") == (8, 2)
    assert level(omnium, "SKU-300", "STO") == (15, 2)
    assert sorted((w["reason"], w["change"]) for w in omnium.stock_writes) == [
        ("purchase", 5),
        ("sale", -2),
    ]  # concurrent writes: in either order
    run(omnium_project, "stock_delta")
    assert len(omnium.stock_writes) == 2


def test_a_delta_whose_answer_is_lost_is_never_applied_twice(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    omnium_project.edit_flow("concurrency: 4", "concurrency: 4\nsettle_seconds: 0", "stock_delta")
    requests.post(
        f"{erp.url}/_sandbox/erp/changes",
        json={"kind": "stock", "changes": [
            {"sku": "SKU-400", "warehouse": "OSL", "change": -1, "reason": "sale"}]},
        timeout=5,
    ).raise_for_status()  # fmt: skip
    fault_rule(omnium.url, action="drop_after_commit", route="inventory_change", count=1)
    run(omnium_project, "stock_delta", code=1)
    assert level(omnium, "SKU-400", "OSL") == (9, 2)  # Omnium applied it; the answer was lost
    run(omnium_project, "stock_delta", code=1)  # not repeated: a person decides
    assert level(omnium, "SKU-400", "OSL") == (9, 2)
    with sqlite3.connect(omnium_project.root / "state" / "omnium.db") as c:
        (state,) = c.execute("SELECT state FROM journal WHERE flow = 'stock_delta'").fetchone()
    assert state == "quarantined"


def test_stock_reconciliation_finds_drift_and_sync_fixes_it(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, _erp = servers
    omnium.stock[("SKU-200", "OSL")]["inventory"] = 3  # drifted in Omnium
    r = omnium_project.run("reconcile", "stock_full", "--json")
    assert r.code == 1, r.out + r.err
    assert json.loads(r.out)["stock_differences"] == [
        {"key": "SKU-200@OSL", "erp": "10", "oms": "3"}
    ]
    r = omnium_project.run("reconcile", "stock_full", "--sync")
    assert r.code == 0, r.out + r.err
    assert level(omnium, "SKU-200", "OSL") == (10, 2)
    assert [(w["sku"], w["warehouseId"]) for w in omnium.stock_writes] == [("SKU-200", "OSL")]
    assert omnium_project.run("reconcile", "stock_full").code == 0
