"""`run-flow`'s progress bar and summary, through the CLI on a pseudo-terminal: log lines never
share a line with the bar, the bar knows its total when the source gives a count, and the
summary counts skipped orders by reason with examples and what to do."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass

from support import Project, fault_rule, faults

from integrator.sandbox import Sandbox

ANSI = re.compile(r"\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[()][A-Z0-9])")
BAR = re.compile(r"(\d+)/(\d+|\?)\s+failed (\d+)")


@dataclass
class Screen:
    code: int
    out: str  # stdout (a pipe): the summary
    tty: str  # what reached the terminal on stderr, control sequences included

    def lines(self) -> list[str]:
        """The terminal's output cut where the cursor goes back to a line's start (CR, LF, or
        an erase-line sequence), control sequences removed."""
        cut = re.sub(r"\x1b\[[0-2]?K", "\r", self.tty)
        return [ANSI.sub("", part) for part in re.split(r"[\r\n]", cut)]


def run_on_a_terminal(project: Project, *args: str) -> Screen:
    """``integrator ARGS`` with stderr on a pseudo-terminal (160 columns), stdout piped."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {**os.environ, **project.env, "TERM": "xterm-256color", "COLUMNS": "160"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        env.pop(name, None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", *args],
        cwd=project.root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks: list[bytes] = []

    def pump() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=pump)
    reader.start()
    try:
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        code = proc.wait(timeout=120)
        reader.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        os.close(master)
    return Screen(code, out, b"".join(chunks).decode("utf-8", "replace"))


def unsent_listed(sandbox: Sandbox) -> list[str]:
    """The orders the order flow's read lists (unsent, status 400), in pk order."""
    return [
        o["number"]
        for _pk, o in sorted(sandbox.omnitron.orders.items())
        if not o["is_send"] and o["status"] == "400"
    ]


def test_log_lines_never_share_a_line_with_the_bar(project: Project, sandbox: Sandbox) -> None:
    listed = unsent_listed(sandbox)
    refused = listed[2]
    faults(
        sandbox.erp.url,
        {
            "rules": [
                {"action": "status", "route": "create", "status": 400, "numbers": [refused]},
                {"action": "status", "route": "query", "status": 503, "count": 3},
            ]
        },
    )
    # a script that prints to stderr, from its own process, mid-run
    project.misbehave_for(listed[5], "import sys", "print('script says hello', file=sys.stderr)")
    screen = run_on_a_terminal(project, "run-flow", "order_flow")
    assert screen.code == 1, screen.out + screen.tty  # the refused order failed
    lines = screen.lines()
    bars = [line for line in lines if BAR.search(line)]
    assert bars, screen.tty  # the bar was drawn
    logged = [line for line in lines if "order_failed" in line or "script says hello" in line]
    last = BAR.search(bars[-1])
    assert last is not None and int(last[3]) >= 3  # three 503s at least, the 400 perhaps
    assert sum("order_failed" in line for line in logged) == int(last[3]), screen.tty
    assert any("script says hello" in line for line in logged), screen.tty
    for line in logged:
        assert "━" not in line and not BAR.search(line), f"a log line on the bar: {line!r}"
        assert re.match(r"\d{4}-\d\d-\d\dT|script says", line), f"not a line's start: {line!r}"


def test_the_bar_shows_the_total_the_source_gives(project: Project, sandbox: Sandbox) -> None:
    total = len(unsent_listed(sandbox))
    screen = run_on_a_terminal(project, "run-flow", "order_flow")
    assert screen.code == 0, screen.out + screen.tty
    shown = [(int(m[1]), m[2]) for m in (BAR.search(line) for line in screen.lines()) if m]
    assert (total, str(total)) in shown, shown  # it ends full: N/N
    assert all(of in ("?", str(total)) for _done, of in shown), shown
    assert (0, str(total)) in shown, shown  # drawn as soon as the first page came

    # --limit: the total is what the run may take
    more = sandbox.omnitron.add_orders(5)
    screen = run_on_a_terminal(project, "run-flow", "order_flow", "--limit", "3")
    assert screen.code == 0, screen.out + screen.tty
    totals = [m[2] for m in (BAR.search(line) for line in screen.lines()) if m]
    assert "3" in totals and str(len(more)) not in totals, totals


def test_no_bar_and_no_capture_when_stderr_is_not_a_terminal(
    project: Project, sandbox: Sandbox
) -> None:
    r = project.run("run-flow", "order_flow")
    assert r.code == 0, r.out + r.err
    assert "━" not in r.err and not BAR.search(r.err)


def test_the_summary_counts_skipped_orders_by_reason(project: Project, sandbox: Sandbox) -> None:
    listed = unsent_listed(sandbox)
    refused = listed[1]
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[refused])
    r = project.run("run-flow", "order_flow")
    assert r.code == 1 and project.state(refused) == "failed", r.out + r.err
    assert "skipped:" not in r.out  # nothing was skipped: no line about it

    # the next run: the refused order waits out its backoff; the list shows every row twice
    new = sandbox.omnitron.add_orders(2)
    fault_rule(sandbox.omnitron.url, action="duplicate_rows", route="list", count=1)
    r = project.run("run-flow", "order_flow")
    assert r.code == 0, r.out + r.err
    assert [line for line in r.out.splitlines() if line.startswith("skipped:")] == [
        f"skipped: backing off: 1 ({refused}): they failed lately and are tried again once "
        "their backoff ends (integrator orders show NUMBER)",
        f"skipped: listed twice in this run: 3 ({refused}, {new[0]}, {new[1]}): the source "
        "listed them twice; each was processed once",
    ], r.out
