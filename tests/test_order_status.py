"""ERP → Omnitron order status and shipments (flows/order_status.yaml), through the CLI and
real HTTP: partial shipments and back-orders, each change applied once, the watermark on the
ERP's own clock, same-instant changes across a page boundary, a failing change holding the
watermark."""

from __future__ import annotations

import sqlite3
from typing import Any

import requests
from support import Project, stats, unsent

from integrator.sandbox import Sandbox

FLOW = "order_status"


def changes(sandbox: Sandbox, rows: list[dict[str, Any]], modified: str | None = None) -> None:
    body: dict[str, Any] = {"kind": "status", "changes": rows}
    if modified:
        body["modified_date"] = modified
    requests.post(
        f"{sandbox.erp.url}/_sandbox/erp/changes", json=body, timeout=5
    ).raise_for_status()


def deliver(project: Project, sandbox: Sandbox) -> list[str]:
    numbers = unsent(sandbox)
    assert project.run("run-flow", "order_flow", "--no-progress").code == 0
    return numbers


def items_of(sandbox: Sandbox, number: str) -> list[int]:
    payload = sandbox.erp.payload(number)
    assert payload is not None
    return [int(line["external_id"]) for line in payload["lines"]]


def run(project: Project, code: int = 0) -> None:
    r = project.run("run-flow", FLOW, "--no-progress")
    assert r.code == code, r.out + r.err


def watermark(project: Project) -> str | None:
    with sqlite3.connect(project.root / "state" / "integrator.db") as c:
        row = c.execute("SELECT value FROM watermarks WHERE flow = ?", (FLOW,)).fetchone()
    return None if row is None else str(row[0])


def test_partial_shipment_then_the_back_order(project: Project, sandbox: Sandbox) -> None:
    number = next(n for n in deliver(project, sandbox) if len(items_of(sandbox, n)) >= 3)
    shipped, backordered, cancelled = items_of(sandbox, number)[:3]
    changes(sandbox, [{
        "order_number": number, "invoice_number": "INV-2026-0001", "invoice_date": "2026-11-23",
        "e_archive_url": "https://earsiv.example/INV-2026-0001", "tracking_number": "YK-1001",
        "shipping_company": "Yurtiçi Kargo",
        "lines": [
            {"external_id": shipped, "status": "SHIPPED", "quantity": 1, "shipped_quantity": 1},
            {"external_id": backordered, "status": "SHIPPED", "quantity": 1, "shipped_quantity": 0},
            {"external_id": cancelled, "status": "CANCELLED", "quantity": 1,
             "cancelled_quantity": 1},
        ],
    }])  # fmt: skip
    run(project)
    items = sandbox.omnitron.items
    assert items[shipped]["status"] == "500" and items[shipped]["tracking_number"] == "YK-1001"
    assert items[shipped]["shipping_company"] == "yurtici"
    assert items[shipped]["invoice_number"] == "INV-2026-0001"
    assert items[cancelled]["status"] == "100"
    assert "tracking_number" not in items[backordered]  # left for a later shipment
    changes(sandbox, [{
        "order_number": number, "tracking_number": "AR-2002", "shipping_company": "Aras Kargo",
        "lines": [{"external_id": backordered, "status": "SHIPPED", "quantity": 1}],
    }])  # fmt: skip
    run(project)
    assert items[backordered]["status"] == "500"
    assert items[backordered]["tracking_number"] == "AR-2002"
    assert items[shipped]["tracking_number"] == "YK-1001"  # the first shipment's is kept
    before = stats(sandbox.omnitron.url)["bulk_status_updates"]
    run(project)  # nothing new
    assert stats(sandbox.omnitron.url)["bulk_status_updates"] == before == 3


def test_same_instant_changes_across_a_page_boundary(project: Project, sandbox: Sandbox) -> None:
    numbers = deliver(project, sandbox)
    item_ids = [i for n in numbers for i in items_of(sandbox, n)][:30]
    assert len(item_ids) == 30
    project.edit_flow("      page_size: 50\n", "      page_size: 20\n", FLOW)
    changes(
        sandbox,
        [
            {
                "order_number": "x",
                "invoice_number": f"INV-{i}",
                "lines": [{"external_id": i, "status": "INVOICED"}],
            }
            for i in item_ids
        ],
        modified="2026-11-23 12:00:00.000000",
    )
    run(project)  # page size 20: the instant spans two pages
    assert all(sandbox.omnitron.items[i]["status"] == "450" for i in item_ids)
    assert sandbox.omnitron.bulk_updates == {i: 1 for i in item_ids}
    assert watermark(project) == "2026-11-23 12:00:00.000000"  # the ERP's own text
    run(project)
    assert sandbox.omnitron.bulk_updates == {i: 1 for i in item_ids}


def test_start_is_read_on_the_erps_clock(project: Project, sandbox: Sandbox) -> None:
    """start 2030-01-01T00:00Z is 03:00 in Istanbul, where the ERP's clock is."""
    number = next(n for n in deliver(project, sandbox) if len(items_of(sandbox, n)) >= 2)
    early, late = items_of(sandbox, number)[:2]
    project.edit_flow(
        "      page_size: 50\n", "      page_size: 50\n      start: 2030-01-01T00:00:00Z\n", FLOW
    )
    row = {"order_number": number, "invoice_number": "I"}
    changes(sandbox, [{**row, "lines": [{"external_id": early, "status": "INVOICED"}]}],
            modified="2030-01-01 02:30:00.000000")  # 23:30 UTC the day before  # fmt: skip
    changes(sandbox, [{**row, "lines": [{"external_id": late, "status": "INVOICED"}]}],
            modified="2030-01-01 03:30:00.000000")  # fmt: skip
    run(project)
    assert sandbox.omnitron.bulk_updates == {late: 1}


def test_a_failing_change_holds_the_watermark(project: Project, sandbox: Sandbox) -> None:
    number = next(n for n in deliver(project, sandbox) if len(items_of(sandbox, n)) >= 2)
    first, second = items_of(sandbox, number)[:2]
    project.edit_flow("concurrency: 4", "concurrency: 4\nbackoff_seconds: 0", FLOW)
    changes(sandbox, [{"order_number": number, "lines": [{"external_id": first,
                                                          "status": "INVOICED"}]}],
            modified="2026-11-23 10:00:00.000000")  # fmt: skip
    changes(sandbox, [{"order_number": number, "lines": [{"external_id": 999999,
                                                          "status": "INVOICED"}]}],
            modified="2026-11-23 11:00:00.000000")  # an item Omnitron does not know  # fmt: skip
    changes(sandbox, [{"order_number": number, "lines": [{"external_id": second,
                                                          "status": "INVOICED"}]}],
            modified="2026-11-23 12:00:00.000000")  # fmt: skip
    run(project, code=1)
    assert watermark(project) == "2026-11-23 10:00:00.000000"  # held before the failure
    assert sandbox.omnitron.bulk_updates == {first: 1, second: 1}
    run(project, code=1)  # the failing change is tried again; the others are not repeated
    assert sandbox.omnitron.bulk_updates == {first: 1, second: 1}
    assert watermark(project) == "2026-11-23 10:00:00.000000"
