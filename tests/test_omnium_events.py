"""Omnium event subscriptions into the daemon: a webhook runs the flow for that order at once,
a bad secret is refused and runs nothing, an order seen by the webhook and the delta poll is
written once, an order the flow filters out is acknowledged and ignored."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
from support import Project, stats, wait_for
from support.daemon import daemon
from support.omnium import FLOW, assert_once, new_numbers

from integrator.sandbox import SANDBOX_ENV, ErpSandbox, OmniumSandbox
from integrator.state import Store

HEADER = "X-Omnium-Secret"


def hourly(project: Project) -> None:
    """Poll only once an hour, so that what happens within a test is the event's doing."""
    project.edit_flow("every: 5m", "every: 1h", name=FLOW)


def post_event(url: str, order_id: str, secret: str) -> requests.Response:
    event = {"objectId": order_id, "className": "Order", "status": "New"}
    return requests.post(url, json=event, headers={HEADER: secret}, timeout=5)


def test_bad_secret_is_refused_and_runs_nothing(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    hourly(omnium_project)
    with daemon(omnium_project) as d:
        url = d.url(f"/events/{FLOW}")
        assert post_event(url, "NO-000001", "not-the-secret").status_code == 401
        r = requests.post(url, json={"objectId": "NO-000001"}, timeout=5)  # no header at all
        assert r.status_code == 401
        assert requests.post(d.url("/events/nope"), json={}, timeout=5).status_code == 404
        bad = post_event(url, "", SANDBOX_ENV["OMNIUM_EVENT_SECRET"])
        assert bad.status_code == 400 and "objectId" in bad.json()["detail"]
        assert not d.named("event_accepted")
        assert SANDBOX_ENV["OMNIUM_EVENT_SECRET"] not in "".join(d.raw)
    assert erp.received == {}
    assert "update_status" not in stats(omnium.url)["calls"]


def test_an_event_runs_the_flow_for_its_order_and_the_poll_does_not_repeat_it(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    omnium, erp = servers
    hourly(omnium_project)
    secret = SANDBOX_ENV["OMNIUM_EVENT_SECRET"]
    numbers = new_numbers(omnium)
    assert omnium_project.run("run-flow", FLOW, "--no-progress").code == 0  # a poll
    with daemon(omnium_project) as d:
        events_url = d.url(f"/events/{FLOW}")
        requests.post(
            f"{omnium.url}/_sandbox/omnium/subscribe",
            json={"url": events_url, "header": HEADER, "secret": secret},
            timeout=5,
        ).raise_for_status()
        created = requests.post(f"{omnium.url}/_sandbox/omnium/orders", json={}, timeout=5).json()
        # The event and a delta poll race for the new order; the flow lock and the journal
        # let one of them write it.
        omnium_project.run("run-flow", FLOW, "--no-progress")
        wait_for(lambda: created["OrderNumber"] in erp.received, 30, "the new order's write")
        wait_for(lambda: d.named("run_ended"), 30, "the event's run")
        assert stats(omnium.url)["event_deliveries"] == [202]
        # The same event again: acknowledged, and the order is not written again.
        assert post_event(events_url, created["Id"], secret).status_code == 202
        wait_for(lambda: len(d.named("run_ended")) >= 2, 30, "the repeated event's run")
        # An event for an order the flow does not read (InProgress): acknowledged, ignored.
        other = requests.post(
            f"{omnium.url}/_sandbox/omnium/orders", json={"Status": "InProgress"}, timeout=5
        ).json()
        wait_for(lambda: len(d.named("run_ended")) >= 3, 30, "the ignored event's run")
        assert other["OrderNumber"] not in erp.received
    assert_once(erp, [*numbers, created["OrderNumber"]])
    assert stats(omnium.url)["event_deliveries"] == [202, 202]


def test_an_event_alone_delivers_a_new_order(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    """No poll at all: the webhook is what brings the order in."""
    omnium, erp = servers
    hourly(omnium_project)
    secret = SANDBOX_ENV["OMNIUM_EVENT_SECRET"]
    with daemon(omnium_project) as d:
        requests.post(
            f"{omnium.url}/_sandbox/omnium/subscribe",
            json={"url": d.url(f"/events/{FLOW}"), "header": HEADER, "secret": secret},
            timeout=5,
        ).raise_for_status()
        created = requests.post(f"{omnium.url}/_sandbox/omnium/orders", json={}, timeout=5).json()
        wait_for(lambda: created["OrderNumber"] in erp.received, 30, "the event's run")
    assert list(erp.received) == [created["OrderNumber"]]  # that order, and only that one


def test_a_burst_of_events_runs_every_order(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    """Each 202 is a queued order: a burst of them is run, none dropped as 'missed its fire
    time', none waiting in a thread for the flow's lock."""
    omnium, erp = servers
    hourly(omnium_project)
    secret = SANDBOX_ENV["OMNIUM_EVENT_SECRET"]
    ids = {o["OrderNumber"]: o["Id"] for o in omnium.orders.values() if o["Status"] == "New"}
    numbers = sorted(ids)[:60]
    with daemon(omnium_project) as d:
        url = d.url(f"/events/{FLOW}")
        with ThreadPoolExecutor(16) as pool:
            codes = list(pool.map(lambda n: post_event(url, ids[n], secret).status_code, numbers))
        assert codes == [202] * len(numbers)
        wait_for(lambda: all(n in erp.received for n in numbers), 60, "every event's order")
    assert sorted(erp.received) == numbers and set(erp.received.values()) == {1}


def test_accepted_events_survive_a_restart(
    omnium_project: Project, servers: tuple[OmniumSandbox, ErpSandbox]
) -> None:
    """An event accepted while another process runs the flow waits in the store; the daemon
    is stopped and started again, and the order is run."""
    omnium, erp = servers
    hourly(omnium_project)
    order = next(o for o in omnium.orders.values() if o["Status"] == "New")
    store = Store(f"sqlite:///{omnium_project.root / 'state' / 'omnium.db'}")
    try:
        with store.locks.hold(FLOW), daemon(omnium_project) as d:  # the flow is busy elsewhere
            ok = post_event(
                d.url(f"/events/{FLOW}"), order["Id"], SANDBOX_ENV["OMNIUM_EVENT_SECRET"]
            )
            assert ok.status_code == 202
            wait_for(lambda: d.named("run_skipped"), 30, "the event run finding the flow busy")
            assert d.stop() == 0
        assert store.pending.waiting(FLOW) == 1 and erp.received == {}
    finally:
        store.close()
    with daemon(omnium_project):
        wait_for(lambda: order["OrderNumber"] in erp.received, 30, "the queued order's run")
    assert erp.received == {order["OrderNumber"]: 1}
