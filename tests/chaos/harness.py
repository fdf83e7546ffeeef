"""The crash-test harness: faults on both servers, SIGKILL at random moments, until done.

The sandbox runs in this process (it survives the kills); the runner is the real
``integrator run-flow`` in a subprocess. ``poison`` orders are refused by the ERP with a 400
on every write: they are the only ones that may end quarantined.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from integrator.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Report:
    """What a chaos run did and found."""

    orders: int = 0
    kills: int = 0
    runs: int = 0
    faults: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unmarked: list[str] = field(default_factory=list)
    silent_sending: list[str] = field(default_factory=list)
    wrongly_quarantined: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def line(self) -> str:
        """``N orders, K kills, F faults: 0 lost, 0 duplicated``."""
        return (
            f"{self.orders} orders, {self.kills} kills, {self.faults} faults: "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated "
            f"({self.runs} runs, {self.seconds:.0f} s)"
        )


def prepare(root: Path) -> None:
    """Tighten the copied project for chaos: short timeouts, fast retries, quick quarantine."""
    cfg = root / "config.yaml"
    text = cfg.read_text()
    text = text.replace(
        "    BearerToken: ${ERP_TOKEN}\n    Timeout: 30",
        "    BearerToken: ${ERP_TOKEN}\n    Timeout: 2\n"
        "    Retry: {Attempts: 2, BaseSeconds: 0.05, CapSeconds: 1}",
    )
    text = text.replace(
        '      HeaderFormat: "Token {token}"\n    Timeout: 30',
        '      HeaderFormat: "Token {token}"\n    Timeout: 5\n'
        "    Retry: {Attempts: 2, BaseSeconds: 0.05, CapSeconds: 1}",
    )
    assert "Timeout: 2" in text and "Timeout: 5" in text
    cfg.write_text(text)
    flow = root / "flows" / "order_flow.yaml"
    flow.write_text(
        flow.read_text().replace("max_attempts: 5", "max_attempts: 2\nbackoff_seconds: 0")
    )


def fault_table(poison: list[str], seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ERP faults, Omnitron faults)."""
    erp = {
        "seed": seed,
        "rules": [
            {"action": "status", "route": "create", "status": 400, "numbers": poison},
            {"action": "status", "route": "create", "status": 503, "rate": 0.04},
            {"action": "status", "route": "create", "status": 429, "rate": 0.03,
             "retry_after": "1"},
            {"action": "drop_after_commit", "route": "create", "rate": 0.04},
            {"action": "timeout", "route": "create", "rate": 0.01, "seconds": 3},
            {"action": "status", "route": "query", "status": 502, "rate": 0.03},
        ],
    }  # fmt: skip
    omni = {
        "seed": seed + 1,
        "rules": [
            {"action": "drop_before", "route": "patch_order", "rate": 0.05},
            {"action": "status", "route": "patch_item", "status": 503, "rate": 0.03},
            {"action": "status", "route": "item_detail", "status": 500, "rate": 0.01},
        ],
    }
    return erp, omni


def _configure(url: str, spec: dict[str, Any]) -> None:
    requests.post(f"{url}/_sandbox/faults", json=spec, timeout=5).raise_for_status()


def _stats(url: str) -> dict[str, Any]:
    data: dict[str, Any] = requests.get(f"{url}/_sandbox/stats", timeout=5).json()
    return data


def run_chaos(
    sb: Sandbox, root: Path, env: dict[str, str], *, kills: int, seed: int = 1, poison: int = 3
) -> Report:
    """Kill the runner ``kills`` times at random moments, then run it until nothing is left."""
    rng = random.Random(seed)
    started = time.monotonic()
    numbers = [
        o["number"]
        for o in sorted(sb.omnitron.orders.values(), key=lambda o: o["pk"])
        if not o["is_send"] and o["status"] == "400"
    ]
    poisoned = rng.sample(numbers, poison)
    erp_faults, omni_faults = fault_table(poisoned, seed)
    _configure(sb.erp.url, erp_faults)
    _configure(sb.omnitron.url, omni_faults)
    report = Report(orders=len(numbers))
    cmd = [sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress"]
    full_env = {**os.environ, **env}
    while report.kills < kills:
        proc = subprocess.Popen(
            cmd, cwd=root, env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        report.runs += 1
        try:
            proc.wait(rng.uniform(0.5, 3.0))
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            report.kills += 1
    # Faults stay on; run until every order that can be done is done.
    deadline = time.monotonic() + 300
    while _remaining(sb, root, numbers, poisoned) and time.monotonic() < deadline:
        subprocess.run(cmd, cwd=root, env=full_env, capture_output=True, text=True)
        report.runs += 1
    report.faults = (
        _stats(sb.erp.url)["faults_injected"] + _stats(sb.omnitron.url)["faults_injected"]
    )
    _configure(sb.erp.url, {})
    _configure(sb.omnitron.url, {})
    _check(sb, root, numbers, poisoned, report)
    report.seconds = time.monotonic() - started
    return report


def _rows(root: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(root / "state" / "integrator.db") as c:
        return list(c.execute(query))


def _last_error(root: Path, number: str) -> str:
    rows = _rows(root, f"SELECT last_error FROM journal WHERE order_number = '{number}'")
    return str(rows[0][0]) if rows else "?"


def _remaining(sb: Sandbox, root: Path, numbers: list[str], poisoned: list[str]) -> int:
    """Orders not yet where they must end: in the ERP and marked sent, or (poisoned)
    quarantined. The sandbox is the truth for the first: a run killed between the order PATCH
    and its deferred `done` leaves the journal at `sent`, which is harmless."""
    states = dict(_rows(root, "SELECT order_number, state FROM journal"))
    received = dict(sb.erp.received)
    sent = {o["number"] for o in sb.omnitron.orders.values() if o["is_send"]}
    return sum(
        1
        for n in numbers
        if (n in poisoned and states.get(n) != "quarantined")
        or (n not in poisoned and (received.get(n, 0) == 0 or n not in sent))
    )


def _check(
    sb: Sandbox, root: Path, numbers: list[str], poisoned: list[str], report: Report
) -> None:
    received = dict(sb.erp.received)
    sent = {o["number"] for o in sb.omnitron.orders.values() if o["is_send"]}
    states = dict(_rows(root, "SELECT order_number, state FROM journal"))
    with_sending_event = {
        n for (n,) in _rows(root, "SELECT DISTINCT order_number FROM events WHERE state='sending'")
    }
    for n in numbers:
        if n in poisoned:
            if received.get(n) or n in sent or states.get(n) != "quarantined":
                # a forced failure that did not end quarantined
                report.wrongly_quarantined.append(f"{n} (poisoned, {states.get(n)})")
            continue
        if received.get(n, 0) == 0:
            report.lost.append(n)
        if received.get(n, 0) > 1:
            report.duplicated.append(n)
        if n not in sent:
            report.unmarked.append(n)
        if states.get(n) == "quarantined":
            report.wrongly_quarantined.append(f"{n}: {_last_error(root, n)}")
    for n, state in states.items():
        if state == "sending" and n not in with_sending_event:
            report.silent_sending.append(n)
