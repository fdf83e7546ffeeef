"""Hostile scripts cannot cross wires between orders or reach into the runner.

Each test runs the real order flow against the sandbox with one order's script misbehaving
(forks, stray bytes on the worker's pipes, a reply cut short, children left behind) and checks
the run's promises: every order in the ERP carries its own number, none is sent twice or lost,
the misbehaving order fails alone with a clear message before its write, the run ends within a
bound, and nothing the script started outlives it.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import Project, stats, unsent
from support.scripts import call, write

from integrator.sandbox import Sandbox
from integrator.scripting import ScriptPool
from integrator.scripting.pool import REPLY_MARGIN
from integrator.scripting.worker import MAGIC


def check_delivery(project: Project, sandbox: Sandbox, numbers: list[str], bad: set[str]) -> None:
    """Every good order in the ERP once under its own number and done; the bad ones failed,
    never written; no payload under another order's number."""
    erp = stats(sandbox.erp.url)
    assert erp["duplicates"] == 0, erp["duplicate_numbers"]
    good = [n for n in numbers if n not in bad]
    assert sorted(sandbox.erp.received) == sorted(good)
    for n in good:
        payload = sandbox.erp.payload(n)
        assert payload is not None and payload["order_number"] == n
        assert project.state(n) == "done", n
    for n in bad:
        assert project.state(n) == "failed", n
        assert n not in sandbox.erp.received
    sent = {o["number"] for o in sandbox.omnitron.orders.values() if o["is_send"]} & set(numbers)
    assert sent == set(good)  # nothing marked sent that the ERP does not hold


def script_error(project: Project, number: str) -> str:
    rows = project.sql(
        f"SELECT value FROM order_log WHERE order_number='{number}' AND key='log.script.error'"
    )
    assert rows, f"no log.script.error for {number}"
    return str(rows[0][0])


def test_a_forked_child_returning_into_the_worker_cannot_answer_for_another_order(
    project: Project, sandbox: Sandbox
) -> None:
    """The child of os.fork() returns from process() into the worker's loop: it must neither
    answer the call a second time nor take the next order's call (that put one order's
    payload under another order's number)."""
    numbers = unsent(sandbox)
    bad = numbers[1]
    project.misbehave_for(bad, "import os", "os.fork()")
    started = time.monotonic()
    r = project.run("run-flow", "order_flow", "--no-progress", timeout=60)
    assert time.monotonic() - started < 30
    # The fork itself is harmless: both processes return the same data; only one answers.
    check_delivery(project, sandbox, numbers, set())
    assert r.code == 0, r.out + r.err
    assert "Traceback" not in r.err


# ------------------------------------------------------------------ hostile scripts in a flow
# Appended to scripts/enrich_order.py; `misbehave_for` calls them for one order.
HOSTILE = '''

import fcntl as _fcntl
import json as _json
import os as _os
import stat as _stat
import subprocess as _subprocess
import sys as _sys
import time as _time


def _pipes_to_write():
    """Every pipe this process may write to, but stderr: the worker's reply pipe among them."""
    found = []
    for fd in range(3, 256):
        try:
            if not _stat.S_ISFIFO(_os.fstat(fd).st_mode):
                continue
            if _fcntl.fcntl(fd, _fcntl.F_GETFL) & _os.O_ACCMODE == _os.O_WRONLY:
                found.append(fd)
        except OSError:
            pass
    return found


def _fake_reply(call_id, data):
    """A well-formed reply frame carrying ``data`` under ``call_id``, on whichever wire the
    worker speaks."""
    reply = {"ok": True, "result": data, "raw": None, "attributes": {}, "log": []}
    try:
        from integrator.scripting.worker import encode
    except ImportError:  # the pickle wire: a length and a pickle
        import pickle
        import struct
        body = pickle.dumps(reply)
        return struct.pack("!I", len(body)) + body
    return encode(call_id, reply)


def _current_call_id():
    """The id of the call this script runs in, from the worker's frames (a script can read
    anything in its worker: it can forge its own answer, which is no more than returning it)."""
    frame = _sys._getframe()
    while frame is not None:
        if "call_id" in frame.f_locals:
            return frame.f_locals["call_id"]
        frame = frame.f_back
    return 1


_seen = []  # the ids of the calls this worker ran


def _stale_id():
    """The id of this worker's previous call (0 on its first)."""
    return _seen[-2] if len(_seen) > 1 else 0


def _other(data, number):
    forged = dict(data)
    forged["number"] = number
    return forged
'''


def hostile(project: Project, number: str, *lines: str) -> None:
    """Give scripts/enrich_order.py the hostile helpers (every call notes its call id, as a
    thread or child left behind by an earlier call would know it) and run ``lines`` for
    ``number``."""
    script = project.root / "scripts" / "enrich_order.py"
    text = script.read_text()
    anchor = "def process(data, attributes):\n"
    assert anchor in text
    text = text.replace(anchor, anchor + "    _seen.append(_current_call_id())\n")
    script.write_text(text + HOSTILE)
    project.misbehave_for(number, *lines)


def run_bounded(project: Project, bound: float = 30) -> tuple[int, str]:
    """``run-flow order_flow``; it must end by itself within ``bound`` seconds. Output is read
    as bytes: what a script writes to fd 1 goes to the runner's stderr, valid UTF-8 or not."""
    started = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "integrator", "run-flow", "order_flow", "--no-progress"],
        cwd=project.root,
        capture_output=True,
        timeout=bound + 30,
        env={**os.environ, **project.env},
    )
    took = time.monotonic() - started
    out = (p.stdout + p.stderr).decode("utf-8", "replace")
    assert took < bound, f"the run took {took:.1f}s"
    assert "Traceback" not in out
    return p.returncode, out


def test_prints_and_writes_to_fd_1_never_reach_the_wire(project: Project, sandbox: Sandbox) -> None:
    """fd 1 is stderr in a worker: garbage, and even a well-formed reply for the current call
    id carrying another order's data, written there, are output, not answers."""
    numbers = unsent(sandbox)
    bad, other = numbers[3], numbers[4]
    hostile(
        project,
        bad,
        "print('garbage on stdout \\xff')",
        "_sys.stdout.write('more garbage'); _sys.stdout.flush()",
        "_os.write(1, b'\\x00\\x00\\x00\\x10raw bytes on fd 1')",
        f"_os.write(1, _fake_reply(_current_call_id(), _other(data, '{other}')))",
    )
    code, out = run_bounded(project)
    assert code == 0, out
    check_delivery(project, sandbox, numbers, set())
    assert "garbage on stdout" in out and "raw bytes on fd 1" in out  # shown, on stderr


def test_bytes_on_the_reply_pipe_fail_that_order_only(project: Project, sandbox: Sandbox) -> None:
    """A script that finds the worker's reply pipe and writes garbage into it: its order
    fails before its write, with a clear message; its worker is replaced; the others pass."""
    numbers = unsent(sandbox)
    bad = numbers[2]
    hostile(project, bad, "for fd in _pipes_to_write():", "    _os.write(fd, b'garbage')")
    code, out = run_bounded(project)
    assert code == 1, out
    check_delivery(project, sandbox, numbers, {bad})
    error = script_error(project, bad)
    assert error.startswith("WorkerProtocolError: the script's worker answered with bytes")
    assert "wrote to the worker's pipes" in error and "replaced" in error


def test_a_forged_reply_under_another_calls_id_is_not_taken(
    project: Project, sandbox: Sandbox
) -> None:
    """A well-formed frame under the id of the worker's previous call (what a thread or a
    child left behind by that call would know), carrying another order's data, written into
    the reply pipe before the worker's own reply: the order fails before its write; no
    payload goes out under another order's number."""
    numbers = unsent(sandbox)
    bad, other = numbers[9], numbers[5]
    hostile(
        project,
        bad,
        "for fd in _pipes_to_write():",
        f"    _os.write(fd, _fake_reply(_stale_id(), _other(data, '{other}')))",
    )
    code, out = run_bounded(project)
    assert code == 1, out
    check_delivery(project, sandbox, numbers, {bad})
    assert script_error(project, bad).startswith("WorkerProtocolError")


def test_a_forked_child_cannot_write_a_reply_later(
    project: Project, sandbox: Sandbox, tmp_path: Path
) -> None:
    """A script forks; the child looks for the worker's pipes and writes forged replies (under
    the current call's id, the previous one's, and small guesses), now and again later. The
    child finds none: the protocol's fds are closed in a forked child. Every order passes
    under its own number."""
    numbers = unsent(sandbox)
    bad = numbers[1]
    report = tmp_path / "fork-report.jsonl"
    hostile(
        project,
        bad,
        "guesses = [_current_call_id(), _stale_id(), 0, 1, 2, 3]",
        "if _os.fork() == 0:",
        "    try:",
        "        for attempt in range(3):",
        "            pipes, wrote = _pipes_to_write(), []",
        "            for fd in pipes:",
        "                for guess in guesses:",
        f"                    forged = _fake_reply(guess, _other(data, '{numbers[6]}'))",
        "                    try:",
        "                        _os.write(fd, forged)",
        "                        wrote.append(fd)",
        "                    except OSError:",
        "                        pass",
        f"            with open({str(report)!r}, 'a') as f:",
        "                f.write(_json.dumps({'pipes': pipes, 'wrote': wrote}) + '\\n')",
        "            _time.sleep(0.05)",
        "    finally:",
        "        _os._exit(0)",
    )
    code, out = run_bounded(project)
    assert code == 0, out
    check_delivery(project, sandbox, numbers, set())
    attempts = [json.loads(line) for line in report.read_text().splitlines()]
    assert attempts, "the forked child never ran"
    assert all(a["wrote"] == [] for a in attempts), attempts


def test_a_script_forging_its_own_reply_crosses_no_wires(
    project: Project, sandbox: Sandbox
) -> None:
    """A script can read its own call's id from its worker and write a reply for it: that is
    no more than returning that data. The runner takes one reply per call; the worker's own
    reply that follows is outside any frame: it fails the call it reaches (this order's, or
    the next in that worker) or retires the idle worker. Whatever the timing, no payload goes
    out under another order's number, none twice, none marked sent without the ERP having it."""
    numbers = unsent(sandbox)
    bad = numbers[4]
    hostile(
        project,
        bad,
        "for fd in _pipes_to_write():",
        "    _os.write(fd, _fake_reply(_current_call_id(), data))",
    )
    run_bounded(project)
    erp = stats(sandbox.erp.url)
    assert erp["duplicates"] == 0, erp["duplicate_numbers"]
    for n in sandbox.erp.received:
        payload = sandbox.erp.payload(n)
        assert payload is not None and payload["order_number"] == n
    sent = {o["number"] for o in sandbox.omnitron.orders.values() if o["is_send"]}
    assert sent & set(numbers) <= set(sandbox.erp.received)
    for n in numbers:
        if n not in sandbox.erp.received:
            assert project.state(n) == "failed", n
            assert script_error(project, n).startswith("WorkerProtocolError"), n


def test_one_byte_of_a_reply_cannot_hold_a_runner_thread(
    project: Project, sandbox: Sandbox
) -> None:
    """A script writes the first byte of a frame into the reply pipe and sleeps: the read has
    a deadline (the time limit plus a margin); the order fails, the run goes on and ends."""
    numbers = unsent(sandbox)
    bad = numbers[0]
    hostile(
        project,
        bad,
        "for fd in _pipes_to_write():",
        "    _os.write(fd, b'\\xff')",
        "_time.sleep(600)",
    )
    project.edit_flow(
        "path: scripts/enrich_order.py", "path: scripts/enrich_order.py\n      timeout: 0.5"
    )
    code, out = run_bounded(project, bound=15)
    assert code == 1, out
    check_delivery(project, sandbox, numbers, {bad})
    error = script_error(project, bad)
    assert error.startswith("TimeoutError: the script ran longer than its limit of 0.5s")
    assert "its reply began but never ended" in error


def alive(marker: str) -> list[int]:
    """Processes (not zombies) whose command line holds ``marker``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(") ", 1)[1][:1]
        except (OSError, IndexError):
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def pid_gone(pid: int) -> bool:
    """The process has ended: gone, or a zombie with every thread ended (its main thread can
    be a zombie while another thread still holds the process's files, its pipes included)."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
        states = [(t / "stat").read_text().rsplit(") ", 1)[1][:1] for t in tasks]
    except (OSError, IndexError):
        return True
    return all(state == "Z" for state in states) and len(states) <= 1


def test_children_a_script_leaves_die_with_its_worker(
    project: Project, sandbox: Sandbox, tmp_path: Path
) -> None:
    """One order's script starts `sleep` and a forked child that sleeps, and returns; another
    starts `sleep` and overruns its time limit. Both orders' children end with their workers
    (the timed-out worker is killed with its process group; the others kill theirs when the
    pool closes): nothing is left when the run ends, and the run is not held by them (they
    share its stderr)."""
    numbers = unsent(sandbox)
    leaves, hangs = numbers[1], numbers[2]
    marker = f"1000.{os.getpid()}{time.monotonic_ns() % 100000}"
    forked = tmp_path / "forked.pid"
    hostile(
        project,
        leaves,
        f"_subprocess.Popen(['sleep', '{marker}'])",
        "child = _os.fork()",
        "if child == 0:",
        "    _time.sleep(1000)",
        "    _os._exit(0)",
        f"open({str(forked)!r}, 'w').write(str(child))",
    )
    project.misbehave_for(hangs, f"_subprocess.Popen(['sleep', '{marker}'])", "_time.sleep(600)")
    project.edit_flow(
        "path: scripts/enrich_order.py", "path: scripts/enrich_order.py\n      timeout: 0.5"
    )
    try:
        code, out = run_bounded(project, bound=20)
        assert code == 1, out
        check_delivery(project, sandbox, numbers, {hangs})
        assert script_error(project, hangs).startswith("TimeoutError")
        assert alive(marker) == []
        assert pid_gone(int(forked.read_text()))
    finally:
        for pid in alive(marker):  # leave nothing behind, even when the test fails
            os.kill(pid, 9)


# ------------------------------------------------------------------ the pool, call by call
@pytest.fixture
def pool() -> Iterator[ScriptPool]:
    p = ScriptPool(size=1, memory_mb=256)
    yield p
    p.close()


FIND_PIPES = """
import fcntl, os, stat, subprocess, sys, threading, time

def reply_pipes():
    found = []
    for fd in range(3, 256):
        try:
            if stat.S_ISFIFO(os.fstat(fd).st_mode) and (
                fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_WRONLY
            ):
                found.append(fd)
        except OSError:
            pass
    return found

def call_id():
    frame = sys._getframe()
    while "call_id" not in frame.f_locals:
        frame = frame.f_back
    return frame.f_locals["call_id"]
"""


def hostile_script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / name
    path.write_text(FIND_PIPES + body)
    return path


def until(condition: Callable[[], bool], timeout: float = 5) -> bool:
    """True as soon as ``condition()`` holds, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.parametrize(
    ("result", "named"),
    [
        ("{1, 2}", "Object of type set is not JSON serializable"),
        ("float('nan')", "Out of range float values are not JSON compliant"),
        ("b'bytes'", "Object of type bytes is not JSON serializable"),
        ("__import__('decimal').Decimal('1.5')", "Object of type Decimal"),
        ("(lambda d: d.update(me=d) or d)({})", "Circular reference detected"),
    ],
)
def test_a_result_that_is_not_json_fails_its_call_named(
    pool: ScriptPool, tmp_path: Path, result: str, named: str
) -> None:
    path = write(
        tmp_path,
        "bad_result.py",
        f"def process(data, attributes):\n"
        f"    attributes['log.before'] = 'kept'\n"
        f"    return {result}\n",
    )
    reply = call(pool, path)
    assert not reply["ok"]
    error = reply["attributes"]["log.script.error"]
    assert error.startswith("ValueError: the script's result cannot be sent back to the runner")
    assert named in error and "dicts, lists, strings, finite numbers" in error
    assert reply["attributes"]["log.before"] == "kept"
    assert pool.replaced == 0  # the worker is sound: only the result could not cross


def test_data_that_is_not_json_is_refused_before_any_worker_runs(
    pool: ScriptPool, tmp_path: Path
) -> None:
    path = write(tmp_path, "ok.py", "def process(data):\n    return data\n")
    reply = call(pool, path, data={"n": float("inf")})
    assert not reply["ok"]
    assert reply["error"].startswith("ValueError: the order's data cannot be given to the script")
    assert pool.replaced == 0
    assert call(pool, path)["ok"]


def test_what_crosses_as_json(pool: ScriptPool, tmp_path: Path) -> None:
    """Tuples arrive as lists, keys as strings; data and order stay one object (as in the
    runner); non-ASCII crosses unchanged."""
    path = write(
        tmp_path,
        "shapes.py",
        """
        def process(data, order, attributes):
            attributes["log.same"] = data is order
            return {"t": (1, 2), 3: "three", "tr": data["tr"], "s": data["s"]}
        """,
    )
    order = {"number": "1", "tr": "Kad\u0131k\u00f6y \u011f\u00fc\u015f \u20ac", "s": "\U0001f600"}
    script_reply = call(pool, path, data=order, order=order)
    assert script_reply["ok"], script_reply
    assert script_reply["attributes"]["log.same"] == "true"
    expected = {"t": [1, 2], "3": "three", "tr": order["tr"], "s": "\U0001f600"}
    assert script_reply["result"] == expected


@pytest.mark.parametrize("where", ["result", "attribute", "error"])
def test_a_lone_surrogate_fails_its_call_and_never_reaches_the_runner(
    pool: ScriptPool, tmp_path: Path, where: str
) -> None:
    """A lone surrogate is not UTF-8: the runner's log files and store cannot hold it (it
    crashed every run that met the order). It fails its call, named, in either direction."""
    path = write(
        tmp_path,
        "surrogate.py",
        f"""
        def process(data, attributes):
            if {where!r} == "attribute":
                attributes["log.evil"] = "\\ud800"
            if {where!r} == "error":
                attributes["log.evil"] = "\\ud800"
                raise ValueError("bad \\udc80")
            data["x"] = "\\ud800" if {where!r} == "result" else "ok"
            return data
        """,
    )
    reply = call(pool, path)
    assert not reply["ok"]
    json.dumps(reply, ensure_ascii=False).encode("utf-8")  # nothing in it the runner cannot hold
    assert "surrogates not allowed" in reply["error"] or "\\udc80" in reply["error"]
    assert pool.replaced == 0  # the worker is sound
    refused = call(pool, write(tmp_path, "ok.py", "def process(data):\n    return data\n"),
                   data={"number": "1", "s": "\ud800"})  # fmt: skip
    assert not refused["ok"]
    assert refused["error"].startswith("ValueError: the order's data cannot be given")


def test_a_reply_under_another_id_kills_the_worker_and_fails_the_call(
    pool: ScriptPool, tmp_path: Path
) -> None:
    path = hostile_script(
        tmp_path,
        "forge.py",
        """
import json
def process(data):
    body = json.dumps({"ok": True, "result": {"forged": True}, "attributes": {}, "log": []})
    frame = struct.pack("!4sQI", MAGIC, 12345, len(body)) + body.encode()
    for fd in reply_pipes():
        os.write(fd, frame)
    return data
""".replace("MAGIC", repr(MAGIC)).replace("import json", "import json, struct"),
    )
    reply = call(pool, path)
    assert not reply["ok"]
    assert reply["error"].startswith(
        "WorkerProtocolError: the script's worker answered with a reply to another call"
    )
    assert pool.replaced == 1
    ok = write(tmp_path, "ok.py", "def process(data):\n    return data\n")
    assert call(pool, ok)["ok"]


def test_a_frame_announcing_gigabytes_is_refused_at_its_header(
    pool: ScriptPool, tmp_path: Path
) -> None:
    """Even under the right id (a script can read it), a header announcing 4 GB is refused
    at once: nothing is allocated, nothing is waited for."""
    path = hostile_script(
        tmp_path,
        "huge.py",
        f"""
import struct
def process(data):
    for fd in reply_pipes():
        os.write(fd, struct.pack("!4sQI", {MAGIC!r}, call_id(), 2**32 - 1))
    time.sleep(600)
""",
    )
    started = time.monotonic()
    reply = call(pool, path, timeout=30)
    assert time.monotonic() - started < 10
    assert "a frame announcing 4,294,967,295 bytes" in reply["error"]
    assert pool.replaced == 1


def test_a_stopped_worker_cannot_hold_the_write_of_a_call(pool: ScriptPool, tmp_path: Path) -> None:
    """A call larger than the pipe's buffer to a worker that does not read: the write has
    the call's deadline too."""
    pid_of = write(tmp_path, "pid.py", "import os\ndef process(data):\n    return os.getpid()\n")
    reply = call(pool, pid_of)
    worker = reply["result"]
    os.kill(worker, signal.SIGSTOP)
    try:
        started = time.monotonic()
        reply = call(pool, pid_of, timeout=0.3, data={"blob": "x" * (4 << 20)})
        took = time.monotonic() - started
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGCONT)
    assert not reply["ok"] and reply["error"].startswith("TimeoutError")
    assert took < 0.3 + REPLY_MARGIN + 2
    assert pool.replaced == 1
    assert call(pool, pid_of)["result"] != worker


@pytest.mark.parametrize("how", ["timeout", "garbage"])
def test_a_killed_worker_takes_its_scripts_children_along(
    pool: ScriptPool, tmp_path: Path, how: str
) -> None:
    """Killed for its time limit or for breaking the wire, a worker goes with its process
    group: the `sleep` its script started is gone while the pool goes on."""
    pidfile = tmp_path / "sleep.pid"
    path = hostile_script(
        tmp_path,
        "kids.py",
        f"""
def process(data):
    child = subprocess.Popen(["sleep", "1000"])
    open({str(pidfile)!r}, "w").write(str(child.pid))
    if {how == "garbage"!r}:
        for fd in reply_pipes():
            os.write(fd, b"garbage")
    time.sleep(600)
""",
    )
    reply = call(pool, path, timeout=0.5)
    assert not reply["ok"]
    assert reply["error"].startswith("TimeoutError" if how == "timeout" else "WorkerProtocol")
    sleeper = int(pidfile.read_text())
    try:
        assert until(lambda: pid_gone(sleeper))
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(sleeper, signal.SIGKILL)


def test_stray_bytes_on_an_idle_worker_retire_it_before_the_next_call(
    pool: ScriptPool, tmp_path: Path
) -> None:
    """A thread a script left behind writes into the reply pipe while the worker is idle:
    the worker is replaced before the next call, which passes (nothing was waiting)."""
    go, done = tmp_path / "go", tmp_path / "done"
    os.mkfifo(go)
    path = hostile_script(
        tmp_path,
        "leaves_a_thread.py",
        f"""
def later():
    open({str(go)!r}).read()
    for fd in reply_pipes():
        os.write(fd, b"late garbage")
    open({str(done)!r}, "w").write("written")

def process(data):
    threading.Thread(target=later, daemon=True).start()
    return os.getpid()
""",
    )
    first = call(pool, path)
    assert first["ok"], first
    with open(go, "w") as fifo:
        fifo.write("now")
    assert until(done.exists)
    assert until(lambda: done.read_text() == "written")
    pid_of = write(tmp_path, "pid.py", "import os\ndef process(data):\n    return os.getpid()\n")
    second = call(pool, pid_of)
    assert second["ok"], second
    assert second["result"] != first["result"]
    assert pool.replaced == 1


def test_replies_are_read_with_poll_above_fd_1024(pool: ScriptPool, tmp_path: Path) -> None:
    """select() cannot wait on a descriptor above 1023; a busy runner has that many."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the environment allows {hard} open files")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers: list[int] = []
    try:
        while not fillers or fillers[-1] < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        path = write(tmp_path, "ok.py", "def process(data):\n    return data\n")
        reply = call(pool, path)
        assert reply["ok"], reply
    finally:
        for fd in fillers:
            os.close(fd)
        pool.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_an_idle_worker_that_died_is_replaced_before_the_next_call(
    pool: ScriptPool, tmp_path: Path
) -> None:
    pid_of = write(tmp_path, "pid.py", "import os\ndef process(data):\n    return os.getpid()\n")
    first = call(pool, pid_of)["result"]
    os.kill(first, signal.SIGKILL)
    assert until(lambda: pid_gone(first))
    second = call(pool, pid_of)
    assert second["ok"], second
    assert second["result"] != first
    assert pool.replaced == 1
