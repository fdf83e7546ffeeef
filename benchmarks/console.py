"""The console's pages with 100,000 orders in the ledger (target: under 200 ms each).

    python benchmarks/console.py [--orders 100000] [--requests 30] [--drop-indexes]

Fills a SQLite store through the store's own API (``Runs.start``/``finish`` and
``Journal.write``, the ledger's write: a journal row, four events, two ``log.`` attributes,
the ERP request and answer per order) over three flows, serves the console as
``integrator console`` does (waitress, the console's WSGI app), and times each page over real
HTTP with one keep-alive connection: the median and the 95th percentile, in milliseconds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from integrator.connectors.redact import Redactor  # noqa: E402
from integrator.console.app import ConsoleSource, create_app  # noqa: E402
from integrator.scheduler.httpserver import WebServer  # noqa: E402
from integrator.scheduler.schedule import Schedule  # noqa: E402
from integrator.scheduler.web import HttpLimits  # noqa: E402
from integrator.state.entries import Transition  # noqa: E402
from integrator.state.runs import RunStatus  # noqa: E402
from integrator.state.store import Store  # noqa: E402

FLOWS = ("order_flow", "order_status", "omnium_orders")


def fill(store: Store, orders: int) -> list[str]:
    """``orders`` orders over the flows and 60 runs; returns some order numbers."""
    at = dt.datetime.now(dt.UTC)
    run_ids = []
    for i in range(60):
        flow = FLOWS[i % len(FLOWS)]
        rid = store.runs.start(flow)
        status = RunStatus.OK if i % 7 else RunStatus.PARTIAL
        store.runs.finish(rid, status, 500, i % 7 == 0, {}, None, oldest_unsent_seconds=60.0 * i)
        run_ids.append(rid)
    request = {"order": {"number": "", "lines": [{"sku": f"SKU-{k}", "qty": 1} for k in range(8)]}}
    numbers = []
    for n in range(orders):
        flow = FLOWS[n % len(FLOWS)]
        number = f"2026{n:08d}"
        rid = run_ids[n % len(run_ids)]
        request["order"]["number"] = number
        state, kind, error = "done", None, None
        if n % 200 == 0:
            state, kind, error = "quarantined", "permanent", f"ERP refused: unknown SKU-{n % 7}"
        elif n % 97 == 0:
            state, kind, error = "failed", "transient", "ERP answered 503"
        fields = {
            "order_pk": str(n),
            "request_json": json.dumps(request),
            "response_json": json.dumps({"id": f"ERP-{n}", "status": "created"}),
            "erp_ref": f"ERP-{n}",
            "error_kind": kind,
            "last_error": error,
        }
        earlier = [
            Transition("read", "", at, {}, "read"),
            Transition("sending", "", at, {}, "write_started"),
            Transition("sent", "", at, {}, "write_answered"),
        ]
        store.journal.write(
            flow,
            number,
            rid,
            Transition(state, error or "", at, fields, "done" if state == "done" else "failed"),
            earlier=earlier,
            log={"log.lines": "8", "log.outcome": f"sent as ERP-{n}"},
            defer=True,
        )
        if n % 2000 == 1999:
            store.flush()
        if n % 997 == 0:
            numbers.append(number)
    store.flush()
    return numbers


def timed(session: requests.Session, url: str, count: int) -> tuple[float, float, int]:
    times = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        r = session.get(url, timeout=30)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (url, r.status_code, r.text[:300])
        size = len(r.content)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument(
        "--drop-indexes",
        action="store_true",
        help="drop the console's indexes (schema v3) after filling: what they buy",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/state.db")
        started = time.perf_counter()
        numbers = fill(store, args.orders)
        print(f"filled {args.orders} orders in {time.perf_counter() - started:.1f} s")
        if args.drop_indexes:
            with store.transaction(deferred=False) as c:
                c.exec_driver_sql("DROP INDEX ix_journal_number")
                c.exec_driver_sql("DROP INDEX ix_journal_flow_state")
            print("without ix_journal_number and ix_journal_flow_state")
        schedules = {
            "order_flow": Schedule("cron", cron="*/5 * * * *", timezone="Europe/Istanbul"),
            "order_status": Schedule("every", every_seconds=300),
        }
        source = ConsoleSource(
            store=lambda: store,
            redactor=lambda: Redactor(["a-secret-the-config-knows"]),
            log_dir=lambda: Path(tmp) / "logs",
            schedules=lambda: schedules,
        )
        server = WebServer(create_app(source), "127.0.0.1", 0, HttpLimits())
        server.start()
        try:
            base = f"http://127.0.0.1:{server.port}"
            session = requests.Session()
            number = numbers[len(numbers) // 2]
            pages = [
                ("dashboard", "/"),
                ("dashboard API", "/api/flows"),
                ("order timeline", f"/orders/{number}"),
                ("order timeline API", f"/api/orders/{number}"),
                ("order search", f"/orders?q={number[:-2]}"),
                ("runs", "/runs"),
                ("runs of a flow, failed", "/runs?flow=order_flow&status=partial"),
                ("failures", "/failures"),
            ]
            print(f"{'page':28} {'median ms':>10} {'p95 ms':>8} {'bytes':>8}")
            for label, path in pages:
                session.get(base + path, timeout=30)  # warm
                median, p95, size = timed(session, base + path, args.requests)
                print(f"{label:28} {median:10.1f} {p95:8.1f} {size:8d}")
        finally:
            server.stop()
            store.close()


if __name__ == "__main__":
    main()
