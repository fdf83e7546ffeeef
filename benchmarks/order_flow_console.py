"""The order-flow benchmark with the console open and polling (issue 16: within 5 %).

    python benchmarks/order_flow_console.py [--orders 800] [--concurrency 16] [--repeat 5]

The same orders/s and CPU per order as ``benchmarks/order_flow.py`` (its sandbox, latency,
project and in-process runner, reused), measured in the same run in four setups:

  a      ``run-flow`` as today, no console;
  b      the same run while a standalone ``integrator console`` over the same store is open
         in a "browser" that polls it;
  c0     the daemon runs the flow (``POST /api/actions/run`` with an operator's API token),
         nobody polling: what a daemon's run costs;
  c      the same, while the browser polls the console the daemon serves.

The browser (``Browser``, a thread of this process) logs in as a viewer with a session cookie
and does what an open dashboard plus an open run page do: the dashboard ``/`` every second;
when the dashboard shows a ``running`` run of the flow, it opens that run's page and follows
htmx: every element of a page or fragment with ``hx-get`` and ``hx-trigger="every Ns"`` is
requested at that interval (``HX-Request: true``), a swapped fragment brings its own trigger
(or none), and an ``HX-Refresh`` answer reloads the page. The standalone console's run page has
no live part to poll (the live view needs the daemon), so there the browser reloads the run
page itself every second while the dashboard shows the run running: what an operator
following a run there would do.

Each pass runs the four setups once, in an order rotated each pass (the VM drifts); every run
gets a fresh sandbox, project and store. Printed: medians over the passes of orders/s and CPU
ms per order (a, b: the runner process with its script workers, as order_flow.py measures it;
c0, c: the daemon's process tree over the run, its console's serving included); "serving": in
b the console's own CPU per order (another process), in c0 and c the CPU of the daemon's
threads older than the run (its HTTP server's, which answer the browser, and the scheduler's:
c minus c0 is what answering the browser cost inside the daemon); what the browser requested
and how fast it was answered; then the ratios b/a and c/c0 (medians of each pass's ratio,
with the lowest and highest pass), and c0/a for reference (the daemon is not run-flow: its
ratio to a is not the console's cost). ``--setups c0,c`` measures the daemon's pair only.
"""

from __future__ import annotations

import argparse
import compileall
import contextlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import requests

# benchmarks/ is on sys.path when run as a script: order_flow's sandbox, project and runner
from order_flow import ERP_MS, OMNI_MS, ROOT, SandboxProcess, _child, copy_project, free_port

FLOW = "order_flow"
VIEWER, VIEWER_PASSWORD = "vera", "viewer-pass-bench"
OPERATOR_TOKEN = "otto-bench-token-" + "t" * 24
SESSION_SECRET = "bench-session-secret-" + "s" * 32
SETUPS = ("a", "b", "c0", "c")
NEVER = '  cron: "0 0 1 1 *"'  # the daemon runs the flow when asked, never on its own here
USERS = """
console:
  session_secret: ${CONSOLE_SESSION_SECRET}
  users:
    - {name: vera, role: viewer, password_hash: "${file:secrets/vera.hash}"}
    - {name: otto, role: operator, api_token: "${OTTO_API_TOKEN}"}
"""


# ------------------------------------------------------------------ the project
def make_project(concurrency: int, password_hash: str) -> Path:
    """order_flow.py's project with ``concurrency``, console users (a viewer who logs in, an
    operator's API token for run now), and order_flow as the only flow, scheduled never."""
    tmp = copy_project("integrator-bench-console-", "concurrency: 4", f"concurrency: {concurrency}")
    flow = tmp / "flows" / "order_flow.yaml"
    text = flow.read_text()
    old = '  cron: "*/5 * * * *"'
    assert old in text, f"{old!r} not in {flow}"
    flow.write_text(text.replace(old, NEVER))
    (tmp / "flows" / "order_status.yaml").unlink()  # the daemon would schedule it too
    (tmp / "secrets").mkdir()
    (tmp / "secrets" / "vera.hash").write_text(password_hash + "\n")
    with (tmp / "config.yaml").open("a") as cfg:
        cfg.write(USERS)
    return tmp


def project_env(sb: SandboxProcess) -> dict[str, str]:
    return {
        **sb.env(),
        "CONSOLE_SESSION_SECRET": SESSION_SECRET,
        "OTTO_API_TOKEN": OPERATOR_TOKEN,
    }


# ------------------------------------------------------------------ CPU of a process tree
def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds of the process and its reaped children)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return int(fields[1]), ticks / os.sysconf("SC_CLK_TCK")


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of each living thread of ``pid``."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of ``root`` and every descendant, living or reaped (script workers live as
    long as the daemon; their CPU counts as the runner's, as in order_flow.py)."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (s := _stat(int(entry))) is not None:
            stats[int(entry)] = s
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            total += stats[pid][1]
            todo.extend(children.get(pid, []))
    return total


# ------------------------------------------------------------------ the browser
class _Polled(HTMLParser):
    """Every element with ``hx-get`` and ``hx-trigger="every N[s|ms]"``: (id, url, seconds)."""

    EVERY = re.compile(r"\bevery\s+(\d+(?:\.\d+)?)(ms|s)\b")

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str, float]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        m = self.EVERY.search(a.get("hx-trigger", ""))
        if m and a.get("hx-get"):
            seconds = float(m.group(1)) / (1000 if m.group(2) == "ms" else 1)
            self.found.append((a.get("id", ""), a["hx-get"], seconds))


def polled(html: str) -> list[tuple[str, str, float]]:
    parser = _Polled()
    parser.feed(html)
    return parser.found


def running_run(dashboard: str, flow: str) -> int | None:
    """The run id in the flow's dashboard row when its status cell says running."""
    row = re.search(rf'<tr class="flow" data-flow="{re.escape(flow)}">(.*?)</tr>', dashboard, re.S)
    if row is None or '<td class="running">' not in row.group(1):
        return None
    link = re.search(r'href="/runs/(\d+)"', row.group(1))
    return int(link.group(1)) if link else None


@dataclass
class Timer:
    """A poll: ``url`` every ``every`` seconds, next at ``due``; ``target`` the element's id."""

    url: str
    every: float
    due: float
    target: str = ""


@dataclass
class BrowserStats:
    times: dict[str, list[float]] = field(default_factory=dict)  # kind -> ms per request
    errors: list[str] = field(default_factory=list)
    runs_seen: list[int] = field(default_factory=list)

    def add(self, kind: str, ms: float) -> None:
        self.times.setdefault(kind, []).append(ms)

    def count(self, kind: str) -> int:
        return len(self.times.get(kind, []))

    def median(self, kind: str) -> float:
        return statistics.median(self.times[kind]) if self.times.get(kind) else 0.0


class Browser(threading.Thread):
    """An open dashboard and an open run page, as htmx in a browser requests them."""

    def __init__(
        self, base: str, flow: str = FLOW, dashboard_every: float = 1.0, page_every: float = 1.0
    ) -> None:
        super().__init__(daemon=True, name="browser")
        self.base, self.flow = base.rstrip("/"), flow
        self.dashboard_every, self.page_every = dashboard_every, page_every
        self.http = requests.Session()
        self.stats = BrowserStats()
        self.ready, self.done = threading.Event(), threading.Event()
        self.run_id: int | None = None
        self.timers: list[Timer] = []
        self.reload_at: float | None = None  # a run page without polling: reloaded (F5)

    def _get(self, kind: str, path: str, **headers: str) -> requests.Response:
        started = time.perf_counter()
        r = self.http.get(self.base + path, headers=headers, timeout=30, allow_redirects=False)
        self.stats.add(kind, (time.perf_counter() - started) * 1000)
        if r.status_code != 200:
            self.stats.errors.append(f"{kind} {path}: {r.status_code} {r.text[:200]}")
        return r

    def login(self) -> None:
        form = self._get("login page", "/login").text
        token = re.search(r'name="csrf_token" value="([^"]*)"', form)
        r = self.http.post(
            self.base + "/login",
            data={
                "name": VIEWER,
                "password": VIEWER_PASSWORD,
                "next": "/",
                "csrf_token": token.group(1) if token else "",
            },
            timeout=30,
            allow_redirects=False,
        )
        if r.status_code != 303:
            raise RuntimeError(f"login refused: {r.status_code} {r.text[:300]}")
        self._get("static", "/static/htmx.min.js")  # once: the browser caches it

    def open_run(self, run_id: int, now: float) -> None:
        page = self._get("run page", f"/runs/{run_id}").text
        self.timers = [
            Timer(url, every, now + every, target) for target, url, every in polled(page)
        ]
        self.reload_at = None if self.timers else now + self.page_every

    def poll(self, timer: Timer, now: float) -> None:
        r = self._get(
            "live fragment",
            timer.url,
            **{
                "HX-Request": "true",
                "HX-Current-URL": f"{self.base}/runs/{self.run_id}",
                "HX-Target": timer.target,
                "HX-Trigger": timer.target,
            },
        )
        if timer in self.timers:
            self.timers.remove(timer)
        if r.headers.get("HX-Refresh") == "true":  # the run has ended: htmx reloads the page
            assert self.run_id is not None
            self.open_run(self.run_id, now)
            return
        # hx-swap="outerHTML": the new element carries its own trigger, or none (polling stops)
        self.timers += [
            Timer(url, every, now + every, target) for target, url, every in polled(r.text)
        ]

    def step(self, now: float, next_dashboard: float) -> float:
        if now >= next_dashboard:
            rid = running_run(self._get("dashboard", "/").text, self.flow)
            self.ready.set()
            if rid is not None and rid != self.run_id:
                self.run_id = rid
                self.stats.runs_seen.append(rid)
                self.open_run(rid, now)
            elif rid is None and self.reload_at is not None:
                self.reload_at = None  # the run has ended: the page shown last stays
            next_dashboard = max(next_dashboard + self.dashboard_every, now)
        for timer in [t for t in self.timers if t.due <= now]:
            if timer in self.timers:  # not dropped by a reload of the page meanwhile
                self.poll(timer, now)
        if self.reload_at is not None and self.reload_at <= now and self.run_id is not None:
            self.open_run(self.run_id, now)
        return next_dashboard

    def run(self) -> None:
        try:
            self.login()
            next_dashboard = time.monotonic()
            while not self.done.is_set():
                next_dashboard = self.step(time.monotonic(), next_dashboard)
                due = [next_dashboard, *(t.due for t in self.timers)]
                if self.reload_at is not None:
                    due.append(self.reload_at)
                self.done.wait(max(0.0, min(due) - time.monotonic()))  # pacing, as htmx's timers
        except (requests.RequestException, RuntimeError, ValueError) as exc:  # reported
            self.stats.errors.append(f"{type(exc).__name__}: {exc}")
            self.ready.set()

    def stop(self) -> BrowserStats:
        self.done.set()
        self.join(30)
        return self.stats


@contextlib.contextmanager
def browsing(base: str | None) -> Iterator[Browser | None]:
    """A started browser on ``base`` (None: nobody polls), its first dashboard loaded."""
    if base is None:
        yield None
        return
    b = Browser(base)
    b.start()
    if not b.ready.wait(60) or b.stats.errors:
        b.stop()
        raise RuntimeError(f"the browser could not open the console: {b.stats.errors}")
    try:
        yield b
    finally:
        b.stop()


# ------------------------------------------------------------------ the servers
class Logged:
    """A child process whose stderr JSON lines are read as they come; waits on events."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str], stdout: Any) -> None:
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **env},
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.changed:
                self.raw.append(line)
                with contextlib.suppress(ValueError):
                    self.events.append(json.loads(line))
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_event(self, check: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for e in self.events:
                    if check(e):
                        return e
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.reader.is_alive()):
                    tail = "".join(self.raw[-20:])
                    raise RuntimeError(f"{self.proc.args[3]}: no such event; its log:\n{tail}")
                self.changed.wait(left)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.reader.join(10)


@contextlib.contextmanager
def standalone_console(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, int]]:
    """``integrator console`` on a free port over the project's store: (URL, pid)."""
    c = Logged(
        [sys.executable, "-m", "integrator", "console", "--http", "127.0.0.1:0"],
        tmp,
        env,
        subprocess.PIPE,
    )
    try:
        assert c.proc.stdout is not None
        line = c.proc.stdout.readline()
        if not line.startswith("console on "):
            raise RuntimeError(f"the console did not start: {line!r} {''.join(c.raw)}")
        yield line.split()[2], c.proc.pid
    finally:
        c.stop()
        if c.proc.stdout is not None:
            c.proc.stdout.close()


@contextlib.contextmanager
def daemon(tmp: Path, env: dict[str, str]) -> Iterator[tuple[str, Logged]]:
    """``integrator daemon`` serving its console on a free port: (URL, process)."""
    port = free_port()
    d = Logged(
        [sys.executable, "-m", "integrator", "daemon", "--http", f"127.0.0.1:{port}"],
        tmp,
        env,
        subprocess.DEVNULL,
    )
    try:
        d.wait_event(lambda e: e.get("event") == "daemon_started", 60)
        yield f"http://127.0.0.1:{port}", d
    finally:
        d.stop()


# ------------------------------------------------------------------ one run of a setup
def measure(setup: str, orders: int, concurrency: int, password_hash: str) -> dict[str, Any]:
    """One run of ``setup`` on a fresh sandbox, project and store."""
    sb = SandboxProcess(orders)
    tmp = make_project(concurrency, password_hash)
    try:
        sb.latency(OMNI_MS, ERP_MS)
        env = project_env(sb)
        if setup == "a":
            data: dict[str, Any] = dict(_child("--child", "--project", str(tmp), env=env))
        elif setup == "b":
            with standalone_console(tmp, env) as (url, pid), browsing(url) as b:
                before = tree_cpu(pid)
                data = dict(_child("--child", "--project", str(tmp), env=env))
                data["console_cpu"] = tree_cpu(pid) - before
                assert b is not None
                data["browser"] = b.stop()
        else:
            with daemon(tmp, env) as (url, d), browsing(url if setup == "c" else None) as b:
                before, threads = tree_cpu(d.proc.pid), thread_cpu(d.proc.pid)
                r = requests.post(
                    url + "/api/actions/run",
                    json={"flow": FLOW},
                    headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                    timeout=30,
                )
                if r.status_code != 200:
                    raise RuntimeError(f"run now refused: {r.status_code} {r.text[:300]}")
                ended = d.wait_event(
                    lambda e: e.get("event") in {"run_ended", "run_failed", "run_crashed"}, 1800
                )
                cpu = tree_cpu(d.proc.pid) - before
                # the threads that were there before the run: the HTTP server's (the console's
                # answers), the scheduler's; the run's workers are new
                old = thread_cpu(d.proc.pid)
                served = sum(old[t] - threads[t] for t in threads if t in old)
                if ended["event"] != "run_ended":
                    raise RuntimeError(f"the daemon's run did not end well: {ended}")
                data = {
                    "ok": ended["ok"],
                    "failed": ended["failed"],
                    "wall": ended["seconds"],
                    "cpu": cpu,
                    "console_cpu": served,
                }
                if b is not None:
                    data["browser"] = b.stop()
        if "browser" in data and data["browser"].errors:  # it did not browse as a person would
            raise RuntimeError(f"setup {setup}: the browser's errors: {data['browser'].errors}")
        if not data["ok"] or data["failed"]:
            raise RuntimeError(f"setup {setup}: {data['ok']} orders sent of {orders}: {data}")
        return data
    finally:
        sb.stop()
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------ the report
def _rate(d: dict[str, Any]) -> float:
    return float(d["ok"]) / float(d["wall"])


def _cpu_ms(d: dict[str, Any]) -> float:
    return float(d["cpu"]) * 1000 / max(float(d["ok"]), 1.0)


def _polls(seen: list[BrowserStats]) -> str:
    """The browser's columns: requests of each kind and answer times, medians over runs."""
    if not seen:
        return f"{'-':>10} {'-':>9} {'-':>10} {'-':>8} {'-':>8}"

    def med(f: Callable[[BrowserStats], float]) -> float:
        return statistics.median(f(b) for b in seen)

    return (
        f"{med(lambda b: b.count('dashboard')):10.0f} "
        f"{med(lambda b: b.count('run page')):9.0f} "
        f"{med(lambda b: b.count('live fragment')):10.0f} "
        f"{med(lambda b: b.median('dashboard')):8.1f} "
        f"{med(lambda b: b.median('live fragment') or b.median('run page')):8.1f}"
    )


def report(
    passes: list[dict[str, dict[str, Any]]], orders: int, concurrency: int, setups: tuple[str, ...]
) -> list[str]:
    out = [
        f"{len(passes)} passes, {orders} orders, concurrency {concurrency}, "
        f"{OMNI_MS} ms per Omnitron call, {ERP_MS} ms per ERP call; medians",
        f"{'setup':<6} {'orders/s':>9} {'cpu ms/order':>12} {'serving ms/order':>16} "
        f"{'dashboards':>10} {'run pages':>9} {'live polls':>10} {'dash ms':>8} {'live ms':>8}",
    ]
    for s in setups:
        runs = [p[s] for p in passes]
        rate = statistics.median(_rate(d) for d in runs)
        cpu = statistics.median(_cpu_ms(d) for d in runs)
        console = (
            f"{statistics.median(d['console_cpu'] * 1000 / d['ok'] for d in runs):16.2f}"
            if "console_cpu" in runs[0]
            else f"{'-':>16}"
        )
        seen: list[BrowserStats] = [d["browser"] for d in runs if "browser" in d]
        polls = _polls(seen)
        out.append(f"{s:<6} {rate:9.1f} {cpu:12.2f} {console} {polls}")

    out.append(
        "serving: b, the standalone console's process (not in cpu ms/order); c0 and c, the "
        "daemon's threads older than the run (its HTTP server's, the scheduler's; in cpu)"
    )

    def ratio(num: str, den: str, f: Callable[[dict[str, Any]], float]) -> str:
        each = sorted(f(p[num]) / f(p[den]) for p in passes)
        return f"{statistics.median(each):.3f} ({each[0]:.3f}-{each[-1]:.3f})"

    out.append("ratios: median of each pass's ratio (lowest-highest pass)")
    for num, den, what in (
        ("b", "a", "standalone console polled / run-flow alone"),
        ("c", "c0", "daemon with its console polled / the daemon alone"),
        ("c0", "a", "the daemon alone / run-flow: for reference, not the console's cost"),
    ):
        if num not in setups or den not in setups:
            continue
        out.append(
            f"{num}/{den}: orders/s {ratio(num, den, _rate)}, "
            f"cpu/order {ratio(num, den, _cpu_ms)}  {what}"
        )
    errors = [e for p in passes for d in p.values() if "browser" in d for e in d["browser"].errors]
    if errors:
        out.append(f"the browser's errors ({len(errors)}): " + "; ".join(errors[:5]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=800, help="orders per run")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=5, help="passes (medians are shown)")
    ap.add_argument(
        "--setups",
        default=",".join(SETUPS),
        help="which setups, comma-separated (default: all; c,c0 for the daemon's pair only)",
    )
    ap.add_argument("--json", type=Path, help="write every run's figures to this file")
    args = ap.parse_args()
    setups = tuple(s for s in SETUPS if s in args.setups.split(","))
    unknown = set(args.setups.split(",")) - set(SETUPS)
    if unknown or not setups:
        ap.error(f"--setups: expected some of {', '.join(SETUPS)}, got {args.setups!r}")
    from integrator.console.users import hash_password

    compileall.compile_dir(ROOT / "integrator", quiet=1)  # as order_flow.py: no compile in a run
    password_hash = hash_password(VIEWER_PASSWORD)
    passes: list[dict[str, dict[str, Any]]] = []
    for i in range(args.repeat):
        order = setups[i % len(setups) :] + setups[: i % len(setups)]
        figures = {s: measure(s, args.orders, args.concurrency, password_hash) for s in order}
        sent = {s: figures[s]["ok"] for s in order}
        if len(set(sent.values())) != 1:  # the same seeded sandbox: the same unsent orders
            raise RuntimeError(f"pass {i + 1}: the setups sent different counts: {sent}")
        passes.append(figures)
        print(
            f"pass {i + 1}: "
            + ", ".join(
                f"{s} {_rate(figures[s]):.1f}/s {_cpu_ms(figures[s]):.2f} ms" for s in order
            ),
            flush=True,
        )
    print("\n".join(report(passes, args.orders, args.concurrency, setups)))
    if args.json:
        plain = [
            {
                s: {
                    **{k: v for k, v in d.items() if k != "browser"},
                    **(
                        {"browser": {k: len(v) for k, v in d["browser"].times.items()}}
                        | {"browser_errors": d["browser"].errors}
                        if "browser" in d
                        else {}
                    ),
                }
                for s, d in p.items()
            }
            for p in passes
        ]
        args.json.write_text(json.dumps(plain, indent=1))


if __name__ == "__main__":
    main()
