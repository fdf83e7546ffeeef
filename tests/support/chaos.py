"""The crash-test harness: faults on both servers, SIGKILLs tied to the work, until done.

The sandbox runs in this process (it survives the kills); the runner is the real
``integrator run-flow`` in a subprocess. Every kill lands mid-run: the harness picks a moment
in the work itself (the k-th ERP write, Omnitron PATCH or detail read this run makes, seen by
the sandbox as it serves it) and kills the runner there. When the backlog runs low, orders are
added to Omnitron, so a fast machine cannot drain it and outrun the kills. The whole test is
bounded by time and by runs; a bound that is hit fails the test with the figures.

``poison`` orders are refused by the ERP with a 400 on every write: they are the only ones
that may end quarantined.

With ``hostile`` (the default) a misbehaving proxy (``support/proxy.py``) stands in front
of each server. Before every run of the kill phase, up to two of ``HOSTILE_FAULTS`` are armed
at random, each for the next one or two matching requests after a random number of them:
drips, bodies without end, bombs, answers that cannot be read, redirects after a write (to the
same host and to another one, which must receive no body or credential), a login redirected
away. Each rule dies out with its count, and the runs that drain the backlog after the last
kill get none. Left out: answers that leave an order held for a person by design (a 2xx write
answer that cannot be read: not JSON, cut short, or stalled after its status line), and
failures charged to the order (a value the ERP body cannot carry): with ``max_attempts: 2``
they would quarantine good orders. tests/hostile covers them one by one.
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integrator.sandbox import Sandbox
from support import faults, stats, unsent
from support.proxy import HostileProxy, Rule

ROOT = Path(__file__).resolve().parents[2]

# Where a kill may land (server, route), with weights: after the ERP committed a write (its
# answer not yet read), after Omnitron took a PATCH (the deferred `done` not yet stored), after
# an item PATCH, or while orders are being read.
KILL_POINTS: tuple[tuple[tuple[str, str], int], ...] = (
    (("erp", "create"), 5),
    (("omnitron", "patch_order"), 3),
    (("omnitron", "patch_item"), 1),
    (("omnitron", "item_detail"), 1),
)
LOW_WATER = 20  # add orders when fewer than this are left to deliver
DATA_LIMIT = 1 << 30  # RLIMIT_DATA of each runner: a bomb read whole fails, not the machine

_WRITE = {"method": "POST", "path": r"^/api/orders/$"}
_QUERY = {"method": "GET", "path": r"^/api/orders/\?"}
_DETAIL = {"method": "GET", "path": r"/orders_integration/\d+/detailed_integration/"}
_MARK = {"method": "PATCH", "path": r"/api/(i1|v1)/orders/\d+/$"}
_LOGIN = {"method": "POST", "path": r"/auth/login/$"}
_LOGIN_FAULT = {"mode": "redirect", "status": 307, "to": "other", "forward": False, **_LOGIN}
# Hostile answers the proxies give, (server, rule); forwarded first unless said otherwise: a
# write the ERP committed, a mark Omnitron took. Timing modes only on the ERP (Timeout 2 s).
HOSTILE_FAULTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("erp", {"mode": "drip_headers", **_WRITE}),
    ("erp", {"mode": "html", "status": 502, **_WRITE}),
    ("erp", {"mode": "redirect", "status": 302, **_WRITE}),
    ("erp", {"mode": "redirect", "status": 307, **_WRITE}),
    ("erp", {"mode": "redirect", "status": 308, "to": "other", **_WRITE}),
    ("erp", {"mode": "drip_body", **_QUERY}),
    ("erp", {"mode": "endless_chunked", **_QUERY}),
    ("erp", {"mode": "huge_length", **_QUERY}),
    ("erp", {"mode": "gzip_bomb", **_QUERY}),
    ("erp", {"mode": "deep_json", **_QUERY}),
    ("omnitron", {"mode": "nan", "key": "amount", **_DETAIL}),
    ("omnitron", {"mode": "invalid_utf8", **_DETAIL}),
    ("omnitron", {"mode": "huge_int", "key": "amount", **_DETAIL}),
    ("omnitron", {"mode": "html", "status": 200, **_DETAIL}),
    ("omnitron", {"mode": "fake_gzip", **_DETAIL}),
    ("omnitron", {"mode": "redirect", "status": 301, **_DETAIL}),
    ("omnitron", {"mode": "close_mid_body", **_MARK}),
    ("omnitron", _LOGIN_FAULT),
)
HOSTILE_RULES, HOSTILE_RATE = 2, 0.7  # a run gets up to 2 rules, each armed 70 % of the time


@dataclass
class Report:
    """What a chaos run did and found."""

    orders: int = 0
    kills: int = 0
    runs: int = 0
    faults: int = 0
    hostile: int = 0  # hostile answers the proxies gave
    hostile_modes: dict[str, int] = field(default_factory=dict)  # ... by mode
    added: int = 0  # orders added to keep every kill mid-run
    interrupted_runs: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    unmarked: list[str] = field(default_factory=list)
    silent_sending: list[str] = field(default_factory=list)
    wrongly_quarantined: list[str] = field(default_factory=list)
    unended_runs: list[int] = field(default_factory=list)
    left_at_sent: list[str] = field(default_factory=list)  # rows a crash left, never settled
    leaked: list[str] = field(default_factory=list)  # bodies/credentials sent to another host
    bound: str = ""  # the bound that was hit, if any
    seconds: float = 0.0

    def line(self) -> str:
        """``N orders, K kills, F faults: 0 lost, 0 duplicated``."""
        return (
            f"{self.orders} orders, {self.kills} kills, {self.faults} faults, "
            f"{self.hostile} hostile answers: "
            f"{len(self.lost)} lost, {len(self.duplicated)} duplicated "
            f"({self.runs} runs, {self.interrupted_runs} recorded interrupted, "
            f"{self.added} orders added, {self.seconds:.0f} s)"
        )

    def problems(self) -> dict[str, Any]:
        """Every check that failed, by name (empty when all passed)."""
        bad: dict[str, Any] = {k: v for k, v in vars(self).items() if isinstance(v, list) and v}
        if self.bound:
            bad["bound"] = self.bound
        if self.interrupted_runs != self.kills:
            bad["interrupted"] = (
                f"{self.interrupted_runs} runs recorded interrupted, {self.kills} killed"
            )
        return bad


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


class Tripwire:
    """Counts the calls the sandbox serves, by (server, route), and wakes whoever waits."""

    def __init__(self, sb: Sandbox) -> None:
        self.cond = threading.Condition()
        self.counts: dict[tuple[str, str], int] = {}
        for server, name in ((sb.erp, "erp"), (sb.omnitron, "omnitron")):
            server.watchers.append(functools.partial(self._seen, name))

    def _seen(self, server: str, route: str) -> None:
        with self.cond:
            key = (server, route)
            self.counts[key] = self.counts.get(key, 0) + 1
            self.cond.notify_all()

    def count(self, point: tuple[str, str]) -> int:
        """Calls served so far at ``point``."""
        with self.cond:
            return self.counts.get(point, 0)

    def wait_exit_or(self, proc: subprocess.Popen[bytes], point: tuple[str, str], target: int,
                     timeout: float) -> bool:  # fmt: skip
        """Wait until ``point`` has served ``target`` calls (True) or ``proc`` ended (False).
        Each run has its own exit flag: a reaper of an earlier run cannot touch this one's."""
        exited = threading.Event()

        def reaped() -> None:
            proc.wait()
            with self.cond:
                exited.set()
                self.cond.notify_all()

        threading.Thread(target=reaped, daemon=True).start()
        with self.cond:
            self.cond.wait_for(
                lambda: exited.is_set() or self.counts.get(point, 0) >= target, timeout=timeout
            )
            return not exited.is_set() and self.counts.get(point, 0) >= target


def run_chaos(
    sb: Sandbox,
    root: Path,
    env: dict[str, str],
    *,
    kills: int,
    seed: int = 1,
    poison: int = 3,
    max_seconds: float = 600.0,
    max_runs: int | None = None,
    hostile: bool = True,
) -> Report:
    """Kill the runner ``kills`` times mid-run, then run it until nothing is left.

    Bounded by ``max_seconds`` and ``max_runs`` (default: 4 per kill, plus 50); a bound that
    is hit ends the test with ``Report.bound`` set. ``hostile``: proxies in front of both
    servers, random hostile answers armed before each run of the kill phase (``HOSTILE_FAULTS``).
    """
    rng = random.Random(seed)
    started = time.monotonic()
    deadline = started + max_seconds
    max_runs = max_runs if max_runs is not None else 4 * kills + 50
    numbers = unsent(sb)
    poisoned = rng.sample(numbers, poison)
    erp_faults, omni_faults = fault_table(poisoned, seed)
    faults(sb.erp.url, erp_faults)
    faults(sb.omnitron.url, omni_faults)
    report = Report()
    wire = Tripwire(sb)
    # Spread the kills over the backlog: about one per (orders / kills) writes.
    spread = max(2, 2 * len(numbers) // max(kills, 1))
    cmd = [sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress"]
    full_env = {**os.environ, **env}
    proxies = HostileProxies(sb, seed) if hostile else None
    if proxies is not None:
        full_env.update(proxies.env())
    proc: subprocess.Popen[bytes] | None = None
    try:
        while report.kills < kills:
            if time.monotonic() > deadline or report.runs >= max_runs:
                report.bound = _bound(report, started, max_seconds, max_runs, kills)
                break
            if _remaining(sb, root, numbers, poisoned) < LOW_WATER:
                numbers += sb.omnitron.add_orders(LOW_WATER * 2)
                report.added += LOW_WATER * 2
            point = rng.choices([p for p, _ in KILL_POINTS], [w for _, w in KILL_POINTS])[0]
            target = wire.count(point) + rng.randint(1, spread)
            if proxies is not None:
                proxies.arm()
            proc = _start(cmd, root, full_env)
            report.runs += 1
            if wire.wait_exit_or(
                proc, point, target, timeout=max(1.0, deadline - time.monotonic())
            ):
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
                report.kills += 1
            proc = None
        # The sandbox's faults stay on, the hostile answers end (the drain is bounded); run until
        # every order that can be done is done.
        if proxies is not None:
            proxies.disarm()
        while not report.bound and _remaining(sb, root, numbers, poisoned):
            if time.monotonic() > deadline or report.runs >= max_runs:
                report.bound = _bound(report, started, max_seconds, max_runs, kills)
                break
            if not _run(cmd, root, full_env, max(1.0, deadline - time.monotonic())):
                report.bound = _bound(report, started, max_seconds, max_runs, kills)
            report.runs += 1
        report.orders = len(numbers)
        report.faults = (
            stats(sb.erp.url)["faults_injected"] + stats(sb.omnitron.url)["faults_injected"]
        )
        faults(sb.erp.url, {})
        faults(sb.omnitron.url, {})
        # One more run without faults: it settles, from the source, the rows the last kills
        # left at `sent` (the source no longer lists those orders).
        if not _run(cmd, root, full_env, 120):
            report.bound = report.bound or "the last run, without faults, took over 120 s"
        report.runs += 1
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if proxies is not None:
            report.hostile_modes = proxies.hits()
            report.hostile = sum(report.hostile_modes.values())
            report.leaked = proxies.leaks()
            proxies.stop()
    _check(sb, root, numbers, poisoned, report)
    report.seconds = time.monotonic() - started
    return report


class HostileProxies:
    """A HostileProxy in front of each server; ``arm`` picks rules for the next run."""

    def __init__(self, sb: Sandbox, seed: int) -> None:
        self.proxies = {
            "erp": HostileProxy(sb.erp.url, seed=seed).start(),
            "omnitron": HostileProxy(sb.omnitron.url, seed=seed).start(),
        }
        self.random = random.Random(seed + 2)  # its own: the kills fall as without it
        self.armed: list[Rule] = []

    def env(self) -> dict[str, str]:
        """The runner's connectors aimed at the proxies."""
        return {"ERP_URL": self.proxies["erp"].url, "OMNITRON_URL": self.proxies["omnitron"].url}

    def arm(self) -> None:
        """Up to HOSTILE_RULES hostile rules (each HOSTILE_RATE of the time), each for the
        next one or two matching requests after up to 8 of them (the login: the run's first)."""
        self.disarm()
        for _ in range(HOSTILE_RULES):
            if self.random.random() >= HOSTILE_RATE:
                continue
            server, spec = self.random.choice(HOSTILE_FAULTS)
            count = self.random.randint(1, 2)
            skip = 0 if spec is _LOGIN_FAULT else self.random.randint(0, 8)  # one login a run
            self.armed.append(self.proxies[server].hostile(count=count, skip=skip, **spec))

    def disarm(self) -> None:
        """Every proxy back to pass-through."""
        for proxy in self.proxies.values():
            proxy.clear()

    def hits(self) -> dict[str, int]:
        """Hostile answers given, by mode."""
        found: dict[str, int] = {}
        for rule in self.armed:
            if rule.hits:
                name = f"{rule.mode} {rule.status}" if rule.status else rule.mode
                found[name] = found.get(name, 0) + rule.hits
        return found

    def leaks(self) -> list[str]:
        """What reached another host (the traps): bodies, credentials, cookies."""
        return [leak for proxy in self.proxies.values() for leak in proxy.trap.leaks()]

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()


def _start(cmd: list[str], root: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """The runner, its data segment capped at DATA_LIMIT (set from outside right after the
    start: ``preexec_fn`` is unsafe with the sandbox's threads)."""
    proc = subprocess.Popen(
        cmd, cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    with contextlib.suppress(ProcessLookupError):
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        resource.prlimit(proc.pid, resource.RLIMIT_DATA, (DATA_LIMIT, hard))
    return proc


def _run(cmd: list[str], root: Path, env: dict[str, str], timeout: float) -> bool:
    """One run to its end (False: killed after ``timeout``)."""
    proc = _start(cmd, root, env)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        return False
    return True


def _bound(report: Report, started: float, max_seconds: float, max_runs: int, kills: int) -> str:
    return (
        f"stopped by a bound after {time.monotonic() - started:.0f} s (limit {max_seconds:.0f}) "
        f"and {report.runs} runs (limit {max_runs}), with {report.kills} of {kills} kills"
    )


def _rows(root: Path, query: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(root / "state" / "integrator.db") as c:
        return list(c.execute(query))


def _last_error(root: Path, number: str) -> str:
    rows = _rows(root, f"SELECT last_error FROM journal WHERE order_number = '{number}'")
    return str(rows[0][0]) if rows else "?"


def _remaining(sb: Sandbox, root: Path, numbers: list[str], poisoned: list[str]) -> int:
    """Orders not yet where they must end: in the ERP and marked sent, or (poisoned)
    quarantined."""
    if not (root / "state" / "integrator.db").exists():
        return len(numbers)
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
        if state in ("sent", "marked") and n not in poisoned:
            report.left_at_sent.append(n)
    runs = dict(_rows(root, "SELECT status, COUNT(*) FROM runs GROUP BY status"))
    report.interrupted_runs = int(runs.get("interrupted", 0))
    report.unended_runs = [
        int(i) for (i,) in _rows(root, "SELECT id FROM runs WHERE status='running'")
    ]


def seeded(count: int) -> int:
    """How many orders to seed for ``count`` unsent ones (about 10 % are sent or cancelled)."""
    return int(count / 0.85) + 10
