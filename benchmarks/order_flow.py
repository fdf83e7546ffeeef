"""End-to-end order-flow benchmark against the sandbox (run in its own process).

    python benchmarks/order_flow.py            # concurrency 1, 4, 16 + RSS at 1,000 / 10,000

Prints orders/s beside the latency-bound limit (concurrency / critical-path latency) and their
ratio; CPU ms per order of the runner process split into the bare HTTP client's share and the
rest; peak RSS by number of orders. The client's share: bare requests sessions, with the
runner's own transport adapter and request preparation (``integrator.connectors.transport``),
making the same calls for the same orders, at the same concurrency and latency, measured in the
same run (CPU per call grows when a process mostly waits, so a baseline without latency would
flatter it), in the runner's concurrent waves. Its throughput against the same limit is the ``bare``
column: the ceiling that this HTTP client and these servers leave any runner.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import requests

from integrator.connectors.transport import LeanAdapter, prepare

ROOT = Path(__file__).resolve().parents[1]
OMNI_MS, ERP_MS = 10, 20
# Critical path per order: detail+lists (1 wave), item+discount details (1 wave), query, write,
# item PATCHes (1 wave), order PATCH. The list call is shared by a page of 50.
CRITICAL_MS = OMNI_MS * (2 + 2 + 1 / 50) + ERP_MS * 2


def copy_project(prefix: str, old: str, new: str) -> Path:
    """config.yaml, flows/ and scripts/ in a new temp dir, with ``old`` → ``new`` in the flow."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix))
    shutil.copy(ROOT / "config.yaml", tmp)
    shutil.copytree(ROOT / "flows", tmp / "flows")
    shutil.copytree(ROOT / "scripts", tmp / "scripts")
    flow = tmp / "flows" / "order_flow.yaml"
    text = flow.read_text()
    assert old in text, f"{old!r} not in {flow}"
    flow.write_text(text.replace(old, new))
    return tmp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SandboxProcess:
    """``integrator sandbox`` in a child process, so its CPU is not the runner's."""

    def __init__(self, orders: int) -> None:
        self.op, self.ep = free_port(), free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "integrator",
                "sandbox",
                "--orders",
                str(orders),
                "--omnitron-port",
                str(self.op),
                "--erp-port",
                str(self.ep),
                "--items-per-order",
                "3",
                "--discounts-per-order",
                "1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.omni, self.erp = f"http://127.0.0.1:{self.op}", f"http://127.0.0.1:{self.ep}"
        for _ in range(200):
            try:
                requests.get(self.erp + "/_sandbox/stats", timeout=1)
                requests.get(self.omni + "/_sandbox/stats", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.05)

    def latency(self, omni_ms: float, erp_ms: float) -> None:
        for url, ms in ((self.omni, omni_ms), (self.erp, erp_ms)):
            requests.post(url + "/_sandbox/faults", json={"latency_ms": {"*": ms}}, timeout=5)

    def env(self) -> dict[str, str]:
        return {
            "OMNITRON_USERNAME": "integrator",
            "OMNITRON_PASSWORD": "sandbox-pass",
            "ERP_TOKEN": "sandbox-erp-token",
            "OMNITRON_URL": self.omni,
            "ERP_URL": self.erp,
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def child(args: argparse.Namespace) -> None:
    """Run the flow once in this process; print a JSON line of measurements."""
    from integrator.logs import configure_logging
    from integrator.pipeline import load_project, run_flow

    project = load_project(Path(args.project) / "config.yaml")
    configure_logging(project.app.log_level, secrets=project.app.secrets)  # as the CLI does
    before = resource.getrusage(resource.RUSAGE_SELF)
    kids_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    result, _ = run_flow(project, "order_flow")
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    # The script workers are the runner's too: their CPU counts (they end with the run).
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    cpu += (kids.ru_utime - kids_before.ru_utime) + (kids.ru_stime - kids_before.ru_stime)
    print(
        json.dumps(
            {
                "ok": result.ok,
                "failed": result.failed,
                "wall": wall,
                "cpu": cpu,
                "rss_mb": after.ru_maxrss / 1024,
            }
        )
    )


def _bare_order(
    omni: requests.Session, erp: requests.Session, urls: tuple[str, str], pk: int, pool: Executor
) -> None:
    """One order's calls as the runner makes them, in the same concurrent waves; answers parsed.

    Waves: detail + item list + discount list; item and discount details; the ERP query; the
    ERP write (the order document as body); the item PATCHes; the order PATCH.
    """
    api, erp_url = urls[0] + "/api/i1/", urls[1]

    def call(
        s: requests.Session, method: str, url: str, params: Any = None, body: Any = None
    ) -> Any:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json"} if data is not None else None
        req = prepare(s, method, url, params=params, headers=headers, body=data)
        return s.send(req, timeout=30).json()

    def get(s: requests.Session, url: str, params: dict[str, Any] | None = None) -> Any:
        return call(s, "GET", url, params)

    def wave(calls: list[Callable[[], Any]]) -> list[Any]:
        futures = [pool.submit(c) for c in calls[1:]]
        return [calls[0](), *(f.result() for f in futures)] if calls else []

    if pk % 50 == 1:  # the list page, shared by 50 orders
        get(omni, api + "orders/", {"is_send": "false", "limit": 50, "pk__gt": pk})
    doc, items, discounts = wave(
        [
            partial(get, omni, api + f"orders_integration/{pk}/detailed_integration/"),
            partial(get, omni, api + "order_items/", {"order": pk, "limit": 100}),
            partial(get, omni, api + "discount_items/", {"order": pk, "limit": 100}),
        ]
    )
    wave(
        [
            partial(get, omni, api + f"order_items/{i['pk']}/detailed_integration/")
            for i in items["results"]
        ]
        + [
            partial(get, omni, api + f"discount_items/{d['pk']}/detailed_integration/")
            for d in discounts["results"]
        ]
    )
    get(erp, erp_url + "/api/orders/", {"number": doc["number"]})
    call(erp, "POST", erp_url + "/api/orders/", body={**doc, "order_number": f"bare-{pk}"})
    wave(
        [
            partial(
                call, omni, "PATCH", api + f"order_items/{i['pk']}/", None, {"erp_order_id": "x"}
            )
            for i in items["results"]
        ]
    )
    call(omni, "PATCH", api + f"orders/{pk}/", None, {"is_send": True})


def bare_child(args: argparse.Namespace) -> None:
    """The bare HTTP client: the runner's calls for ``--orders`` orders, ``--concurrency`` at a
    time, in the runner's waves, made as the runner's connectors make them (a requests.Session
    per connector with the runner's transport adapter, environment read once, requests
    prepared by ``transport.prepare``). Prints the process's CPU seconds and the wall time."""
    omni, erp = requests.Session(), requests.Session()
    adapter = LeanAdapter(pool_maxsize=64)
    for s, base in ((omni, args.omni), (erp, args.erp)):
        s.mount("http://", adapter)
        s.trust_env = False
        s.proxies.update(s.merge_environment_settings(base, {}, None, None, None)["proxies"])
    token = omni.post(
        args.omni + "/api/i1/auth/login/",
        json={"username": "integrator", "password": "sandbox-pass"},
    ).json()["key"]
    omni.headers["Authorization"] = f"Token {token}"
    erp.headers["Authorization"] = "Bearer sandbox-erp-token"
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    with (
        ThreadPoolExecutor(min(4 * args.concurrency, 64)) as fetch,
        ThreadPoolExecutor(args.concurrency) as orders,
    ):
        list(
            orders.map(
                lambda pk: _bare_order(omni, erp, (args.omni, args.erp), pk, fetch),
                range(1, args.orders + 1),
            )
        )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(json.dumps({"cpu": cpu, "wall": wall}))


def _child(*argv: str, env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, *argv],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return data


def run_case(orders: int, concurrency: int, latency: bool) -> dict[str, float]:
    """The runner on ``orders`` seeded orders; then, on the same servers, the bare client."""
    sb = SandboxProcess(orders)
    tmp = copy_project("integrator-bench-", "concurrency: 4", f"concurrency: {concurrency}")
    try:
        if latency:
            sb.latency(OMNI_MS, ERP_MS)
        data = _child("--child", "--project", str(tmp), env=sb.env())
        if latency:
            n = int(data["ok"])
            bare = _child(
                "--bare",
                "--omni", sb.omni,
                "--erp", sb.erp,
                "--orders", str(n),
                "--concurrency", str(concurrency),
            )  # fmt: skip
            data["client_cpu"], data["client_wall"] = bare["cpu"], bare["wall"]
        return data
    finally:
        sb.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--project", help=argparse.SUPPRESS)
    ap.add_argument("--omni", help=argparse.SUPPRESS)
    ap.add_argument("--erp", help=argparse.SUPPRESS)
    ap.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--cases", default="1,4,16", help="concurrencies to measure")
    ap.add_argument("--rss-sizes", default="1000,10000", help="order counts for peak RSS")
    ap.add_argument("--orders", type=int, default=0, help="orders per concurrency case")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (medians are shown)")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    if args.bare:
        bare_child(args)
        return
    # The runner's CPU per order includes its start-up: with PYTHONDONTWRITEBYTECODE set, a
    # checkout without bytecode would compile every module in every run and look slower.
    compileall.compile_dir(ROOT / "integrator", quiet=1)
    print(
        f"critical path per order: {CRITICAL_MS:.1f} ms ({OMNI_MS} ms per Omnitron call, "
        f"{ERP_MS} ms per ERP call, 3 items + 1 discount per order)"
    )
    print(
        f"{'conc':>4} {'orders':>6} {'orders/s':>9} {'limit/s':>8} {'ratio':>6} {'bare':>6} "
        f"{'cpu ms/order':>12} {'client ms':>9} {'rest ms':>8} {'rest/client':>11}"
    )
    for conc in [int(c) for c in args.cases.split(",") if c]:
        n = args.orders or {1: 100, 4: 300}.get(conc, 800)
        # A shared VM is noisy: repeat each case and report the medians.
        runs = [run_case(n, conc, latency=True) for _ in range(args.repeat)]
        ok = statistics.median(d["ok"] for d in runs)
        rate = statistics.median(d["ok"] / d["wall"] for d in runs)
        bare_rate = statistics.median(d["ok"] / d["client_wall"] for d in runs)
        limit = conc / (CRITICAL_MS / 1000)
        cpu_ms = statistics.median(d["cpu"] * 1000 / max(d["ok"], 1) for d in runs)
        client_ms = statistics.median(d["client_cpu"] * 1000 / max(d["ok"], 1) for d in runs)
        rest = cpu_ms - client_ms
        print(
            f"{conc:>4} {ok:>6.0f} {rate:>9.1f} {limit:>8.1f} {rate / limit:>6.2f} "
            f"{bare_rate / limit:>6.2f} {cpu_ms:>12.2f} {client_ms:>9.2f} {rest:>8.2f} "
            f"{rest / client_ms:>11.2f}"
        )
    for size in [int(s) for s in args.rss_sizes.split(",") if s]:
        d = run_case(size, 16, latency=False)
        print(
            f"peak RSS, {d['ok']:.0f} orders (concurrency 16, no latency): "
            f"{d['rss_mb']:.0f} MB, {d['ok'] / d['wall']:.0f} orders/s"
        )


if __name__ == "__main__":
    main()
