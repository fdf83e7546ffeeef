"""ERP → Omnium status and shipments (flows/omnium/flows/omnium_status.yaml): UpdateStatus
with tracking, a partial shipment then the back-order's own shipment, each change once."""

from __future__ import annotations

import requests
from support import Project, stats

from integrator.sandbox import ErpSandbox, OmniumSandbox


def test_partial_shipment_then_back_order_with_tracking(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    order = next(o for o in omnium.orders.values() if len(o["OrderForm"]["LineItems"]) >= 2)
    first, second = (li["LineItemId"] for li in order["OrderForm"]["LineItems"][:2])

    def ship(status: str, tracking: str, lines: list[dict[str, object]]) -> None:
        requests.post(
            f"{erp.url}/_sandbox/erp/changes",
            json={"kind": "status", "changes": [{
                "order_id": order["Id"], "status": status, "tracking_number": tracking,
                "shipping_company": "PostNord", "lines": lines}]},
            timeout=5,
        ).raise_for_status()  # fmt: skip

    ship("PARTIALLY_SHIPPED", "PN-0001", [
        {"line_item_id": first, "shipped_quantity": 1, "cancelled_quantity": 0},
        {"line_item_id": second, "shipped_quantity": 0, "cancelled_quantity": 0}])  # fmt: skip
    r = omnium_project.run("run-flow", "omnium_status", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert order["Status"] == "PartiallyShipped"
    ship("SHIPPED", "PN-0002", [{"line_item_id": second, "shipped_quantity": 1}])
    assert omnium_project.run("run-flow", "omnium_status", "--no-progress").code == 0
    assert order["Status"] == "Shipped"
    assert [(s["TrackingNumber"], [li["lineItemId"] for li in s["Lines"]])
            for s in order["Shipments"]] == [("PN-0001", [first, second]),
                                             ("PN-0002", [second])]  # fmt: skip
    assert omnium_project.run("run-flow", "omnium_status", "--no-progress").code == 0
    assert stats(omnium.url)["update_status"] == 2  # each change once
