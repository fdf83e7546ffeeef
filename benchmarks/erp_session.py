"""What a session header saves against sending the password on every call (JSON-RPC ERP).

    python benchmarks/erp_session.py            # 100 orders, median of 3 runs per recipe

Runs the two recipes of ``flows/jsonrpc`` against the sandbox's JSON-RPC ERP, each on fresh
servers: ``order_to_jsonrpc`` (one session login, then ``Authorization: Session
base64(login:uid:key)`` on every call) and ``order_to_odoo`` (Odoo's ``execute_kw``: the
database, uid and password on every call; the ERP checks the password each time with a full
PBKDF2 derivation, as Odoo does). Prints, per ERP call, the CPU of the whole exchange (the
runner process and the sandbox servers, which run in this process) and the ERP's own CPU per
call measured apart (its password or session check), orders/s, and the ratio of the two recipes
measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from integrator.sandbox import running_sandbox

ROOT = Path(__file__).resolve().parents[1]


def once(flow: str, orders: int) -> dict[str, float]:
    """One run of ``flow`` on fresh servers: CPU per ERP call, ERP checks, orders/s."""
    tmp = Path(tempfile.mkdtemp(prefix="erp-session-"))
    shutil.copytree(ROOT / "flows" / "jsonrpc", tmp, dirs_exist_ok=True)
    try:
        with running_sandbox(orders) as sb:
            assert sb.jsonrpc_erp is not None
            env = {**os.environ, **sb.env()}
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            own = time.process_time()
            started = time.perf_counter()
            r = subprocess.run(
                [sys.executable, "-m", "integrator", "run-flow", flow, "--no-progress"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            wall = time.perf_counter() - started
            servers = time.process_time() - own
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            if r.returncode != 0:
                raise SystemExit(f"{flow} failed:\n{r.stdout}\n{r.stderr}")
            st: dict[str, Any] = sb.jsonrpc_erp.stats()
        runner = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
        calls = sum(sum(m.values()) for m in st["methods"].values()) + sum(st["logins"].values())
        return {
            "calls": calls,
            "cpu_ms_per_call": (runner + servers) * 1000 / calls,
            "orders_per_s": st["received"] / wall,
            "password_checks": st["password_checks"],
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def erp_check_ms(kind: str, rounds: int = 20) -> float:
    """The ERP's own CPU per call for its check, measured apart (no HTTP)."""
    from integrator.sandbox.erp_common import PBKDF2_ITERATIONS, Password, Sessions

    if kind == "password":
        pw = Password("sandbox-jsonrpc-pass")
        pw.check("sandbox-jsonrpc-pass")  # the hash is made at the first check
        started = time.process_time()
        for _ in range(rounds):
            pw.check("sandbox-jsonrpc-pass")
        assert PBKDF2_ITERATIONS > 0
    else:
        sessions = Sessions()
        key = sessions.issue(("integrator", 2))
        started = time.process_time()
        for _ in range(rounds):
            sessions.check(key, ("integrator", 2))
    return (time.process_time() - started) * 1000 / rounds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    for flow in ("order_to_jsonrpc", "order_to_odoo"):
        runs = [once(flow, args.orders) for _ in range(args.repeat)]
        rows[flow] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    session, password = rows["order_to_jsonrpc"], rows["order_to_odoo"]
    print(f"{args.orders} orders, median of {args.repeat} runs each, fresh servers per run")
    print(f"{'recipe':<34}{'ERP calls':>10}{'CPU ms/call':>13}{'orders/s':>10}{'pw checks':>11}")
    for name, row in (("session header (order_to_jsonrpc)", session),
                      ("password per call (order_to_odoo)", password)):  # fmt: skip
        print(f"{name:<34}{row['calls']:>10.0f}{row['cpu_ms_per_call']:>13.2f}"
              f"{row['orders_per_s']:>10.1f}{row['password_checks']:>11.0f}")  # fmt: skip
    ratio = password["cpu_ms_per_call"] / session["cpu_ms_per_call"]
    print(f"CPU per call, password ÷ session: {ratio:.1f} times")
    print(
        f"the ERP's own check per call: password {erp_check_ms('password'):.1f} ms, "
        f"session {erp_check_ms('session') * 1000:.0f} µs"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
