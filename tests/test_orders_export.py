"""``integrator orders export NUMBER``: a production order, read live from the flow's source
as a run reads it (detail, items and discounts assembled; channel.conf masked), written as
JSON that ``test-flow`` and the golden tests take unchanged. Nothing is written to the store
or the ERP, and no secret reaches the file."""

from __future__ import annotations

import json
import time

from support import Project, fault_rule, free_port, stats
from support.hostile import prepare
from support.omnium import FLOW as OMNIUM_FLOW
from support.proxy import HostileProxy

from integrator.sandbox import SANDBOX_ENV, ErpSandbox, OmniumSandbox, Sandbox
from integrator.sandbox.seed import CHANNEL_SECRET


def _sent_order(sandbox: Sandbox) -> dict[str, object]:
    """An order the run would not list (already sent), with discounts and items."""
    orders = sorted(sandbox.omnitron.orders.values(), key=lambda o: o["pk"])
    for o in orders:
        pk = o["pk"]
        has_discount = any(d["order"] == pk for d in sandbox.omnitron.discounts.values())
        if o["status"] == "400" and has_discount:
            o["is_send"] = True  # production data: usually an order that went out already
            return o
    raise AssertionError("the sandbox has no order with a discount")


def _one_flow(project: Project) -> None:
    (project.root / "flows" / "order_status.yaml").unlink()
    for case in (project.root / "flows" / "tests" / "order_status").iterdir():
        case.unlink()


def test_export_writes_the_assembled_order_masked_and_test_flow_takes_it(
    project: Project, sandbox: Sandbox
) -> None:
    order = _sent_order(sandbox)
    number, pk = str(order["number"]), int(str(order["pk"]))
    password = SANDBOX_ENV["OMNITRON_PASSWORD"]
    # a hostile order: the connector's password echoed into a field of the order itself
    sandbox.omnitron.orders[pk]["extra_field"] = {"note": f"pw={password}"}
    before = {"erp": stats(sandbox.erp.url), "omnitron": stats(sandbox.omnitron.url)}
    out = project.root / "exported.json"

    r = project.run("orders", "export", number, "--flow", "order_flow", "--output", str(out))

    assert r.code == 0, r.out + r.err
    assert f"order {number}" in r.err and str(out) in r.err  # where it went, on stderr
    text = out.read_text()
    doc = json.loads(text)
    assert text.startswith("{\n  ")  # pretty
    assert doc["number"] == number and doc["pk"] == pk
    # assembled as a run assembles it: every item and discount with its detail
    items = [i for i in sandbox.omnitron.items.values() if i["order"] == pk]
    discounts = [d for d in sandbox.omnitron.discounts.values() if d["order"] == pk]
    assert [i["pk"] for i in doc["orderitem_set"]] == [i["pk"] for i in items]
    assert [d["pk"] for d in doc["discountitem_set"]] == [d["pk"] for d in discounts]
    assert doc["orderitem_set"][0]["product"]["sku"] == items[0]["product"]["sku"]
    # masked: channel.conf whole, and the connector's password wherever it shows
    conf = doc["channel"]["conf"]
    assert conf["password"] == "***" and conf["username"] == "***"
    assert CHANNEL_SECRET not in text and CHANNEL_SECRET not in r.out + r.err
    assert password not in text and password not in r.out + r.err
    assert doc["extra_field"]["note"] == "pw=***"
    # nothing written anywhere: no store, no run log, no call to the ERP, no PATCH
    after = {"erp": stats(sandbox.erp.url), "omnitron": stats(sandbox.omnitron.url)}
    assert after["erp"]["calls"] == before["erp"]["calls"] == {}
    assert after["omnitron"]["patches"] == before["omnitron"]["patches"]
    assert set(after["omnitron"]["calls"]) - set(before["omnitron"]["calls"]) <= {
        "login", "list", "detail", "items", "item_detail", "discounts", "discount_detail"
    }  # fmt: skip
    assert not (project.root / "state").exists() and not (project.root / "logs").exists()

    # the file feeds test-flow unchanged (--input, as test-script names it)
    t = project.run("test-flow", "order_flow", "--input", str(out))
    assert t.code == 0, t.out + t.err
    trace = json.loads(t.out)
    assert trace["erp_request"]["order_number"] == number
    assert trace["error"] is None and trace["failure"] is None
    assert stats(sandbox.erp.url)["calls"] == {}


def test_export_to_stdout_takes_the_only_flow(project: Project, sandbox: Sandbox) -> None:
    number = str(_sent_order(sandbox)["number"])
    r = project.run("orders", "export", number)
    assert r.code == 2 and "--flow" in r.err
    assert "order_flow" in r.err and "order_status" in r.err  # the choices
    _one_flow(project)
    r = project.run("orders", "export", number)
    assert r.code == 0, r.err
    assert json.loads(r.out)["number"] == number  # stdout is the document alone
    assert CHANNEL_SECRET not in r.out + r.err


def test_export_says_clearly_what_went_wrong(project: Project, sandbox: Sandbox) -> None:
    out = project.root / "x.json"
    # an unknown number: the source lists no such order
    r = project.run("orders", "export", "999999999", "--flow", "order_flow", "-o", str(out))
    assert r.code == 1
    assert "order 999999999" in r.err and "omnitron" in r.err and "no order" in r.err
    assert "Traceback" not in r.err and not out.exists()
    # an unknown flow
    r = project.run("orders", "export", "1", "--flow", "nope")
    assert r.code == 2 and "nope" in r.err and "order_flow" in r.err
    # the order's detail answers 404 (listed, then gone)
    number = str(_sent_order(sandbox)["number"])
    fault_rule(sandbox.omnitron.url, action="status", route="detail", status=404)
    r = project.run("orders", "export", number, "--flow", "order_flow", "-o", str(out))
    assert r.code == 1 and "404" in r.err and f"order {number}" in r.err, r.err
    assert "Traceback" not in r.err and not out.exists()
    # the source is down
    r = project.run(
        "orders", "export", number, "--flow", "order_flow", "-o", str(out),
        env={"OMNITRON_URL": f"http://127.0.0.1:{free_port()}"},
    )  # fmt: skip
    assert r.code == 1, r.out + r.err
    assert f"order {number}" in r.err and "omnitron" in r.err and "refused" in r.err, r.err
    assert "Traceback" not in r.err and not out.exists()
    assert not (project.root / "state").exists()


def test_export_refuses_to_overwrite_without_force(project: Project, sandbox: Sandbox) -> None:
    number = str(_sent_order(sandbox)["number"])
    out = project.root / "kept.json"
    out.write_text("hand-edited\n")
    r = project.run("orders", "export", number, "--flow", "order_flow", "-o", str(out))
    assert r.code == 2 and "--force" in r.err and str(out) in r.err
    assert out.read_text() == "hand-edited\n"
    r = project.run("orders", "export", number, "--flow", "order_flow", "-o", str(out), "--force")
    assert r.code == 0, r.err
    assert json.loads(out.read_text())["number"] == number


def test_export_golden_case_passes_the_golden_tests(project: Project, sandbox: Sandbox) -> None:
    number = str(_sent_order(sandbox)["number"])
    folder = project.root / "flows" / "tests" / "order_flow"
    r = project.run("orders", "export", number, "--flow", "order_flow", "--golden", "prod_1")
    assert r.code == 0, r.out + r.err
    case, expected = folder / "prod_1.order.json", folder / "prod_1.expected.json"
    assert json.loads(case.read_text())["number"] == number
    assert json.loads(expected.read_text())["order_number"] == number  # the ERP payload
    assert CHANNEL_SECRET not in case.read_text()
    golden = project.run("test-flow", "--golden")
    assert golden.code == 0 and "ok   order_flow/prod_1" in golden.out, golden.out
    # a second export does not overwrite the case
    expected.write_text(expected.read_text().replace(number, "edited"))
    r = project.run("orders", "export", number, "--flow", "order_flow", "--golden", "prod_1")
    assert r.code == 2 and "--force" in r.err and "prod_1" in r.err
    assert "edited" in expected.read_text()
    r = project.run(
        "orders", "export", number, "--flow", "order_flow", "--golden", "prod_1", "--force"
    )
    assert r.code == 0 and "edited" not in expected.read_text()
    # a case name is a file name, not a path
    for bad in ("../../escape", "a/b", ".hidden", ""):
        r = project.run("orders", "export", number, "--flow", "order_flow", "--golden", bad)
        assert r.code == 2 and "--golden" in r.err, (bad, r.err)
    assert not (project.root / "flows" / "escape.order.json").exists()
    # --golden and --output together make no sense
    r = project.run(
        "orders", "export", number, "--flow", "order_flow", "--golden", "x", "-o", "y.json"
    )
    assert r.code == 2 and "--golden" in r.err and "--output" in r.err


def test_export_from_omnium_feeds_test_flow(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    taken = next(o for o in omnium.orders.values() if o["Status"] != "New")  # runs skip it
    new = next(o for o in omnium.orders.values() if o["Status"] == "New")
    out = omnium_project.root / "omnium_order.json"
    # by Id: any order, whatever its status
    r = omnium_project.run("orders", "export", taken["Id"], "--flow", OMNIUM_FLOW, "-o", str(out))
    assert r.code == 0, r.out + r.err
    assert json.loads(out.read_text())["Id"] == taken["Id"]
    t = omnium_project.run("test-flow", OMNIUM_FLOW, "--input", str(out))
    assert t.code == 0, t.out + t.err
    assert json.loads(t.out)["erp_request"] is not None
    # by OrderNumber: among the orders the flow reads
    r = omnium_project.run("orders", "export", new["OrderNumber"], "--flow", OMNIUM_FLOW)
    assert r.code == 0, r.out + r.err
    assert json.loads(r.out)["Id"] == new["Id"]
    r = omnium_project.run("orders", "export", taken["OrderNumber"], "--flow", OMNIUM_FLOW)
    assert r.code == 1 and "no order" in r.err, r.out + r.err
    # a number that is a path stays one path segment (a real server would resolve
    # /api/Orders/../Returns to another route): both lookups by Id reach the order route
    # (the sandbox matches no route for an unescaped one, and counts none)
    before = stats(omnium.url)["calls"]
    r = omnium_project.run("orders", "export", "../Returns", "--flow", OMNIUM_FLOW)
    assert r.code == 1 and "no order" in r.err, r.out + r.err
    calls = stats(omnium.url)["calls"]
    assert calls["get"] - before["get"] == 2 and "returns" not in calls
    assert erp.received == {}


def test_export_from_a_dripping_source_ends_in_time(project: Project, sandbox: Sandbox) -> None:
    """The detail answer dripped a byte at a time: the connector's deadline per call ends
    it (Timeout 0.5 s, two quick tries), the export fails clearly and writes nothing."""
    number = str(_sent_order(sandbox)["number"])
    prepare(project.root, timeout=0.5)
    proxy = HostileProxy(sandbox.omnitron.url).start()
    try:
        proxy.hostile("drip_body", path="detailed_integration")
        out = project.root / "o.json"
        started = time.monotonic()
        r = project.run(
            "orders", "export", number, "--flow", "order_flow", "-o", str(out),
            env={"OMNITRON_URL": proxy.url},
        )  # fmt: skip
        took = time.monotonic() - started
    finally:
        proxy.stop()
    assert r.code == 1, r.out + r.err
    assert f"order {number}" in r.err and "detailed_integration" in r.err, r.err
    assert "Traceback" not in r.err and not out.exists()
    assert took < 15, took  # two tries of 0.5 s and start-up, not the drip's minutes


def test_export_takes_a_number_as_data(project: Project, sandbox: Sandbox) -> None:
    """A number that carries a query of its own finds nothing (it is one parameter's value);
    a missing output folder is said before the source is called."""
    number = str(_sent_order(sandbox)["number"])
    r = project.run("orders", "export", f"x&number={number}", "--flow", "order_flow")
    assert r.code == 1 and "no order" in r.err and r.out == "", r.out + r.err
    calls = stats(sandbox.omnitron.url)["calls"]
    r = project.run("orders", "export", number, "--flow", "order_flow", "-o", "nowhere/o.json")
    assert r.code == 2 and "nowhere" in r.err, r.err
    assert stats(sandbox.omnitron.url)["calls"] == calls  # refused before any call
