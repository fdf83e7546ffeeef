"""Orderly interrupts, through the real CLI: a signal to the runner's process group (what a
terminal's Ctrl-C and systemd's default KillMode do) lets the orders in flight finish, prints
the summary, records the run as interrupted and exits 128 + the signal; script workers are not
hit mid-call, and they die with the runner even when it is SIGKILLed."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import Project, assert_exactly_once, stats, unsent

from integrator.sandbox import Sandbox


def fifo_in(project: Project) -> Path:
    path = project.root / "mid-call.fifo"
    os.mkfifo(path)
    return path


def announce_then_sleep(project: Project, number: str, seconds: float) -> None:
    """The script, for order ``number``: write its pid into the FIFO named by
    $MID_CALL_FIFO (blocks until the test reads it), start a child, then sleep."""
    project.misbehave_for(
        number,
        "import os, subprocess, time",
        "child = subprocess.Popen(['sleep', '300'])",
        "with open(os.environ['MID_CALL_FIFO'], 'w') as f:",
        "    f.write(f'{os.getpid()} {child.pid}\\n')",
        f"time.sleep({seconds})",
    )


def start(project: Project, fifo: Path, *args: str) -> subprocess.Popen[str]:
    """``integrator run-flow`` as the leader of its own process group, as in a terminal."""
    return subprocess.Popen(
        [sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress", *args],
        cwd=project.root,
        env={**os.environ, **project.env, "MID_CALL_FIFO": str(fifo)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_mid_call(fifo: Path, timeout: float = 60) -> tuple[int, int]:
    """Block until the script is mid-call; returns (worker pid, the child it started)."""
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            assert left > 0, "the script never reached its call"
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                data += os.read(fd, 100)
    finally:
        os.close(fd)
    worker, child = data.split()
    return int(worker), int(child)


def gone(pid: int, timeout: float = 15) -> bool:
    """True once process ``pid`` no longer exists (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:  # a zombie left to its parent is gone too
            if f.read().split(") ")[-1].startswith("Z"):
                return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_process_group_lets_orders_in_flight_finish(
    project: Project, sandbox: Sandbox, signum: signal.Signals
) -> None:
    numbers = unsent(sandbox)
    slow = numbers[0]
    announce_then_sleep(project, slow, 1.5)
    fifo = fifo_in(project)
    proc = start(project, fifo)
    worker, child = wait_mid_call(fifo)
    os.killpg(proc.pid, signum)  # the whole group, as a terminal or systemd would
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, out + err
    assert "Traceback" not in out + err
    assert "run interrupted" in out and "orders ok" in out  # the summary is printed
    assert sandbox.erp.received.get(slow) == 1  # its script was not killed mid-call
    assert next(o for o in sandbox.omnitron.orders.values() if o["number"] == slow)["is_send"]
    assert project.state(slow) == "done"
    assert project.sql("SELECT status FROM runs") == [("interrupted",)]
    assert len(sandbox.erp.received) < len(numbers)  # no new order was taken
    assert stats(sandbox.erp.url)["duplicates"] == 0
    assert gone(worker) and gone(child)  # the runner ended: its workers did too
    r = project.run("run-flow", "order_flow", "--no-progress", env={"MID_CALL_FIFO": "/dev/null"})
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)


def test_a_second_signal_stops_at_once(project: Project, sandbox: Sandbox) -> None:
    numbers = unsent(sandbox)
    announce_then_sleep(project, numbers[0], 120)
    fifo = fifo_in(project)
    proc = start(project, fifo, "--grace", "300")
    wait_mid_call(fifo)
    os.killpg(proc.pid, signal.SIGINT)
    assert proc.stderr is not None
    for _ in range(100):  # the runner took the first one: a second one means "now"
        if "SIGINT: stopping" in proc.stderr.readline():
            break
    else:
        pytest.fail("the runner never said it was stopping")
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=30)  # not the 120 s of the script, nor the grace
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err and "stopping now" in err
    assert project.sql("SELECT status FROM runs") == [("interrupted",)]


def test_script_workers_die_with_a_sigkilled_runner(project: Project, sandbox: Sandbox) -> None:
    """No orphans: the worker mid-call, and the child its script started, end with the
    runner even when the runner gets no chance to clean up."""
    announce_then_sleep(project, unsent(sandbox)[0], 300)
    fifo = fifo_in(project)
    proc = start(project, fifo)
    worker, child = wait_mid_call(fifo)
    proc.kill()  # SIGKILL to the runner alone
    proc.communicate(timeout=30)
    assert gone(worker), "the script worker outlived its runner"
    assert gone(child), "the script's child outlived its worker"


def test_a_signal_after_the_listing_ended_still_stops_in_order(
    project: Project, sandbox: Sandbox
) -> None:
    """Fewer orders than the pool takes at once: the listing has ended when the signal
    comes. The orders in flight finish, the ones taken but not started are left, the run is
    recorded interrupted (before: it waited for all of them and recorded `ok`)."""
    numbers = unsent(sandbox)[:6]  # concurrency 4 takes 8 at once: all 6, the listing ends
    for n in numbers[1:]:
        project.misbehave_for(n, "import time", "time.sleep(1.0)")
    announce_then_sleep(project, numbers[0], 1.0)
    sandbox.omnitron.orders = {
        pk: o for pk, o in sandbox.omnitron.orders.items() if o["number"] in numbers
    }
    fifo = fifo_in(project)
    proc = start(project, fifo)
    wait_mid_call(fifo)  # the listing (one page of 6) is over: 4 in flight, 2 waiting
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert project.sql("SELECT status FROM runs") == [("interrupted",)]
    assert sandbox.erp.received.get(numbers[0]) == 1
    assert len(sandbox.erp.received) < len(numbers)  # the ones not started were left
