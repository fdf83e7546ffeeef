"""Omnium as a source, through the CLI against the Omnium-like and ERP sandboxes: delta
polling with a watermark, the inclusive boundary, same-instant pages, a crash before the
watermark is saved, the write-back, and the Scroll API over 12,000 orders."""

from __future__ import annotations

import sqlite3
import types
from pathlib import Path

import requests
from support import Project, fault_rule, stats
from support.omnium import FLOW, assert_once, new_numbers

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor
from integrator.connectors.auth.oauth2 import OAuth2
from integrator.sandbox import SANDBOX_ENV, ErpSandbox, OmniumSandbox
from integrator.stages.omnium import OmniumReadStage
from integrator.state.store import Store


def run(project: Project) -> None:
    r = project.run("run-flow", FLOW, "--no-progress")
    assert r.code == 0, r.out + r.err


def watermark(project: Project) -> str | None:
    with sqlite3.connect(project.root / "state" / "omnium.db") as c:
        row = c.execute("SELECT value FROM watermarks WHERE flow = ?", (FLOW,)).fetchone()
    return None if row is None else str(row[0])


def test_new_orders_delivered_once_and_written_back(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    numbers = new_numbers(omnium)
    run(omnium_project)
    assert_once(erp, numbers)
    by_number = {o["OrderNumber"]: o for o in omnium.orders.values()}
    for n in numbers:
        o = by_number[n]
        assert o["Status"] == "InProgress"
        assert o["ExternalIds"] == [{"providerName": "ERP", "id": erp.orders[n]["id"]}]
    last_new = max(
        (o for o in omnium.orders.values() if o["OrderNumber"] in numbers),
        key=lambda o: o["Created"],
    )
    assert watermark(omnium_project) == last_new["Created"]  # read-time Modified of the last
    run(omnium_project)  # nothing new: nothing written, nothing written back again
    assert_once(erp, numbers)
    assert stats(omnium.url)["updated_twice"] == []


def test_same_instant_across_a_page_boundary(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    """150 orders on one instant and Take 100: all delivered once, in one run."""
    omnium, erp = servers
    same = sorted(omnium.orders)[:150]
    requests.post(
        f"{omnium.url}/_sandbox/omnium/modified",
        json={"ids": same, "modified": "2026-11-01T09:00:00.000000Z"},
        timeout=5,
    ).raise_for_status()
    numbers = new_numbers(omnium)
    run(omnium_project)
    assert_once(erp, numbers)
    assert stats(omnium.url)["calls"]["scroll"] == 1  # the one-instant page went to a snapshot
    run(omnium_project)
    assert_once(erp, numbers)


def test_a_crash_before_the_watermark_is_saved_rereads_without_resending(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    """A flow that reads New and InProgress orders sees them again after its own write-back;
    with the watermark lost (as if the run died before saving it), everything is read again
    and nothing is sent or written back twice."""
    omnium, erp = servers
    omnium_project.edit_flow("statuses: [New]", "statuses: [New, InProgress]", name=FLOW)
    everything = sorted(o["OrderNumber"] for o in omnium.orders.values())
    run(omnium_project)
    assert_once(erp, everything)
    with sqlite3.connect(omnium_project.root / "state" / "omnium.db") as c:
        c.execute("DELETE FROM watermarks")
    before = stats(omnium.url)
    run(omnium_project)
    after = stats(omnium.url)
    assert_once(erp, everything)
    assert after["update_status"] == before["update_status"]
    assert after["patches"] == before["patches"]
    assert after["calls"]["search"] > before["calls"]["search"]  # it did read them again


def test_a_failed_write_back_holds_the_watermark_and_is_finished_next_run(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    numbers = new_numbers(omnium)
    stuck = numbers[10]
    omnium_project.edit_flow("concurrency: 4", "concurrency: 4\nbackoff_seconds: 0", name=FLOW)
    fault_rule(omnium.url, action="status", route="update_status", status=400, numbers=[stuck])
    r = omnium_project.run("run-flow", FLOW, "--no-progress")
    assert r.code == 1
    assert_once(erp, numbers)
    by_number = {o["OrderNumber"]: o for o in omnium.orders.values()}
    assert watermark(omnium_project) is not None
    assert watermark(omnium_project) < by_number[stuck]["Created"]  # held before it
    fault_rule(omnium.url, action="status", route="update_status", status=200, count=0)
    run(omnium_project)
    assert_once(erp, numbers)  # resumed after the write: not written again
    assert by_number[stuck]["Status"] == "InProgress"


def test_scroll_reads_12000_orders_once_each(tmp_path: Path) -> None:
    """More than Take * Page = 10,000 matches: the Scroll API, in batches of 1,000."""
    omnium = OmniumSandbox(
        orders=12_000,
        client_id=SANDBOX_ENV["OMNIUM_CLIENT_ID"],
        client_secret=SANDBOX_ENV["OMNIUM_CLIENT_SECRET"],
    ).start()
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    cfg = ConnectorConfig(
        name="omnium",
        host=omnium.url,
        auth=OAuth2(
            SANDBOX_ENV["OMNIUM_CLIENT_ID"], SANDBOX_ENV["OMNIUM_CLIENT_SECRET"], "/api/Token"
        ),
    )
    conn = Connector(cfg, Redactor())
    try:
        run = types.SimpleNamespace(
            source=conn,
            flow=types.SimpleNamespace(name=FLOW),
            only_order=None,
            dry_run=False,
            event=lambda *a: None,
            watermark=lambda: store.watermarks.get(FLOW),
            states=lambda numbers: store.journal.states(FLOW, numbers),
            done_at=lambda numbers: store.journal.done_at(FLOW, numbers),
        )
        stage = OmniumReadStage(["New", "InProgress"])
        stage.open(run)  # type: ignore[arg-type]
        refs = list(stage.iter_orders(run))  # type: ignore[arg-type]
        assert len(refs) == 12_000 == len({r.pk for r in refs})
        calls = stats(omnium.url)["calls"]
        assert calls["scroll"] == 1 and calls["scroll_next"] == 12  # 11 batches + the empty one
    finally:
        conn.close()
        store.close()
        omnium.stop()


def test_429_backs_off_and_the_run_completes(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    numbers = new_numbers(omnium)
    fault_rule(omnium.url, action="status", route="search", status=429, retry_after="0", count=2)
    run(omnium_project)
    assert_once(erp, numbers)
    assert stats(omnium.url)["faults_injected"] == 2
