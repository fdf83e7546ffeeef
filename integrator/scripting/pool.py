"""A pool of script worker processes: every script call has a time limit and a memory limit.

A call that overruns its limit gets its worker killed and replaced; a worker that dies (exit,
crash, out of memory) fails only the call it was running. Workers start on first need and
load each script once.

Lifecycle, designed once:

- a worker runs in a session of its own, so a signal meant for the runner (Ctrl-C in a
  terminal, SIGTERM to the runner's process group) never kills it mid-call: the runner decides
  when its orders stop;
- every worker holds the read end of the runner's *lifeline*, a pipe whose write end only the
  runner has and never writes; when the runner dies, however (SIGKILL included), the worker
  reads end-of-file and kills its own process group: itself and anything its script started;
- a worker the runner gives up on (a time limit, a broken reply) is killed with its whole
  process group, so what its script started dies with it.

The wire (see :mod:`integrator.scripting.worker`): JSON frames on two pipes of the worker's
own, each call with a random id that its reply must echo. Every read of a reply, and every
write of a call, has a deadline (the script's time limit plus ``REPLY_MARGIN``) and waits with
``poll`` on non-blocking fds: a script that writes one byte and stops cannot hold a runner
thread. A reply with another call's id, a frame that is not one, or bytes outside a frame
kill the worker and fail that call only; bytes found on an idle worker's pipe retire it
before it is given a call.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from integrator.scripting.worker import CROSSES, HEADER, MAGIC, MAX_FRAME, SCRIPT_ERROR
from integrator.scripting.worker import decode as decode_frame
from integrator.scripting.worker import encode as encode_frame

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT", "REPLY_MARGIN", "ScriptPool"]


DEFAULT_TIMEOUT = 300.0  # seconds, as Akinon Integrator
DEFAULT_MEMORY_MB = 1024
REPLY_MARGIN = 1.0  # seconds past a script's time limit for its call and reply to cross
_WORKER_MAIN = "from integrator.scripting.worker import main; main()"
_CHUNK = 1 << 16


_lifeline: tuple[int, int, int] | None = None  # (read end, write end, owner pid)
_lifeline_lock = threading.Lock()


def lifeline() -> int:
    """The read end of this process's lifeline (made once per process; both ends are not
    inherited by default, the read end is passed to each worker alone)."""
    global _lifeline
    with _lifeline_lock:
        if _lifeline is None or _lifeline[2] != os.getpid():
            read, write = os.pipe()
            _lifeline = (read, write, os.getpid())
        return _lifeline[0]


class _Timeout(Exception):
    """The deadline passed; ``partial``: some bytes of the reply had come."""

    def __init__(self, partial: bool) -> None:
        super().__init__()
        self.partial = partial


class _Broken(Exception):
    """The worker broke the wire: the message says how."""


def _ms(left: float) -> int:
    """poll()'s timeout for ``left`` seconds (-1: none)."""
    return -1 if math.isinf(left) else max(math.ceil(left * 1000), 0)


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        line = lifeline()
        call_r, call_w = os.pipe()  # both pipes are close-on-exec: only pass_fds crosses
        reply_r, reply_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER_MAIN, str(memory_mb), str(line),
                 str(call_r), str(reply_w)],
                stdin=subprocess.DEVNULL,  # the worker points fd 1 at stderr itself
                stdout=None,
                stderr=None,  # what scripts print shows up beside the runner's own output
                start_new_session=True,  # the runner's signals are the runner's
                pass_fds=(line, call_r, reply_w),
            )  # fmt: skip
        except BaseException:
            for fd in (call_w, reply_r):
                os.close(fd)
            raise
        finally:
            for fd in (call_r, reply_w):
                os.close(fd)
        self.calls, self.replies = call_w, reply_r
        os.set_blocking(call_w, False)
        os.set_blocking(reply_r, False)
        self._readable = select.poll()
        self._readable.register(reply_r, select.POLLIN)
        self._writable = select.poll()
        self._writable.register(call_w, select.POLLOUT)
        self._open = {call_w, reply_r}

    def idle_trouble(self) -> str | None:
        """Why this idle worker cannot take a call: bytes on its reply pipe (something a
        script left behind writes there) or the pipe's end (it died); None when it can."""
        events = self._readable.poll(0)
        if not events:
            return None
        if events[0][1] & select.POLLIN:
            return "bytes outside a frame on its reply pipe while idle"
        return "it ended while idle"

    def send(self, frame: bytes, deadline: float) -> None:
        """Write a call; _Timeout when the worker does not take it in time."""
        view = memoryview(frame)
        while view:
            try:
                view = view[os.write(self.calls, view) :]
                continue
            except BlockingIOError:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Timeout(partial=False)
            self._writable.poll(_ms(left))

    def receive(self, call_id: int, deadline: float) -> dict[str, Any]:
        """The reply to ``call_id``. _Timeout when the deadline passes first, EOFError when
        the worker ended, _Broken when what came is not that reply and nothing else."""
        buf = bytearray()
        need = HEADER.size
        size = -1
        while True:
            while len(buf) < need:
                left = deadline - time.monotonic()
                if left <= 0 or not self._readable.poll(_ms(left)):
                    raise _Timeout(partial=bool(buf))
                try:
                    chunk = os.read(self.replies, max(need - len(buf), _CHUNK))
                except BlockingIOError:  # woken without data (a spurious wake-up)
                    continue
                if not chunk:
                    raise EOFError
                buf += chunk
                if size < 0 and not MAGIC.startswith(bytes(buf[: len(MAGIC)])):
                    raise _Broken("bytes outside a frame")  # not shown: they may be anything
            if size >= 0:
                break
            _, got, size = HEADER.unpack_from(buf)  # the magic was checked as it came
            if got != call_id:
                raise _Broken("a reply to another call than this one")
            if size > MAX_FRAME:
                raise _Broken(f"a frame announcing {size:,} bytes")
            need = HEADER.size + size
        if len(buf) > need:
            raise _Broken(f"{len(buf) - need} bytes after the reply, outside any frame")
        try:
            reply = decode_frame(bytes(buf[HEADER.size :]))
        except (ValueError, RecursionError) as exc:
            raise _Broken(f"a reply that is not JSON ({exc})") from None
        return _checked(reply)

    def kill(self) -> int | None:
        """Kill the worker's whole process group (the worker and what its scripts started)."""
        if self.proc.returncode is None:  # not reaped: its pid is still its group's id
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)  # the worker leads its own session
            with contextlib.suppress(OSError):
                self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.close_fds()
        return self.proc.returncode

    def stop(self) -> None:
        """End an idle worker: at the end of its call pipe it kills its own process group."""
        self.close_fds(replies=False)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)
        self.kill()

    def close_fds(self, *, replies: bool = True) -> None:
        for fd in (self.calls, self.replies) if replies else (self.calls,):
            if fd in self._open:
                self._open.discard(fd)
                with contextlib.suppress(OSError):
                    os.close(fd)


def _checked(reply: Any) -> dict[str, Any]:
    """A reply as the wire defines it, or _Broken."""
    if not isinstance(reply, dict) or not isinstance(reply.get("ok"), bool):
        raise _Broken("a reply without its fields")
    attributes = reply.get("attributes")
    if not isinstance(attributes, dict) or not all(isinstance(v, str) for v in attributes.values()):
        raise _Broken("a reply whose attributes are not strings")
    entries = reply.get("log")
    if not isinstance(entries, list) or not all(
        isinstance(e, list) and len(e) == 2 and all(isinstance(x, str) for x in e) for e in entries
    ):
        raise _Broken("a reply whose log is not (level, text) pairs")
    reply["log"] = [(level, text) for level, text in entries]
    if not isinstance(reply.get("raw"), str | None) or not isinstance(reply.get("error", ""), str):
        raise _Broken("a reply whose raw output or error is not text")
    return reply


class ScriptPool:
    """At most ``size`` worker processes, shared by every script stage of a run."""

    def __init__(self, size: int = 4, memory_mb: int = DEFAULT_MEMORY_MB) -> None:
        self.size, self.memory_mb = max(size, 1), memory_mb
        self._idle: queue.LifoQueue[_Worker] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._workers = 0
        self._closed = False
        self.replaced = 0  # workers killed or lost, for tests and metrics

    def _acquire(self) -> _Worker:
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                break
            if self._usable(worker):
                return worker
        with self._lock:
            if self._workers < self.size:
                self._workers += 1
                start = True
            else:
                start = False
        if start:
            try:
                return _Worker(self.memory_mb)
            except OSError:
                with self._lock:
                    self._workers -= 1
                raise
        worker = self._idle.get()
        return worker if self._usable(worker) else self._acquire()

    def _usable(self, worker: _Worker) -> bool:
        """An idle worker may take a call; if not, it is replaced (no call was waiting on it,
        so nothing is lost)."""
        trouble = worker.idle_trouble()
        if trouble is None:
            return True
        self._lose(worker)
        import structlog  # only when a worker is replaced: test-script starts without it

        structlog.get_logger("integrator.script").warning("script_worker_replaced", reason=trouble)
        return False

    def _lose(self, worker: _Worker) -> int | None:
        code = worker.kill()
        with self._lock:
            self._workers -= 1
            self.replaced += 1
        return code

    def call(
        self,
        *,
        path: str,
        entry: str,
        runtime: str,
        args: dict[str, Any],
        attributes: dict[str, str],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> dict[str, Any]:
        """Run one script call in a worker. The reply: ``ok``, ``result``, ``raw`` (compat
        output that is not JSON), ``attributes`` (strings; ``log.script.error`` on failure),
        ``error``, ``log`` ((level, text) pairs). ``args`` must be JSON values (see
        :mod:`integrator.scripting.worker`); what is not fails the call, named."""
        call_id = int.from_bytes(os.urandom(8), "big")
        call: dict[str, Any] = {
            "path": path,
            "entry": entry,
            "runtime": runtime,
            "args": args,
            "attributes": attributes,
        }
        if "order" in args and "data" in args and args["order"] is args["data"]:
            call["args"] = {k: v for k, v in args.items() if k != "order"}
            call["order_is_data"] = True  # sent once, one object in the worker too
        try:
            frame = encode_frame(call_id, call)
        except (TypeError, ValueError, RecursionError) as exc:
            return _failure(
                attributes,
                f"ValueError: the order's data cannot be given to the script: {exc} "
                f"({CROSSES.replace('a result crosses to the runner', 'data crosses')})",
            )
        worker = self._acquire()
        deadline = time.monotonic() + timeout + REPLY_MARGIN
        try:
            worker.send(frame, deadline)
            reply = worker.receive(call_id, deadline)
        except (EOFError, OSError):
            code = self._lose(worker)
            why = f"exit code {code}" if code is not None else "it could not be stopped"
            if code is not None and code < 0:
                why = f"killed by signal {-code}"
            return _failure(
                attributes,
                f"WorkerDied: the script's worker process ended while running it ({why}); "
                "a replacement was started",
            )
        except _Timeout as exc:
            self._lose(worker)
            cut = " (its reply began but never ended)" if exc.partial else ""
            return _failure(
                attributes,
                f"TimeoutError: the script ran longer than its limit of {timeout:g}s{cut}; "
                "its worker was killed and replaced",
            )
        except _Broken as exc:
            self._lose(worker)
            return _failure(
                attributes,
                f"WorkerProtocolError: the script's worker answered with {exc}; a script, "
                "or a process it started, wrote to the worker's pipes. The worker was "
                "killed with everything it started, and replaced; nothing from it was used",
            )
        except BaseException:
            self._lose(worker)
            raise
        if self._closed:  # the run ended while this call went on: nobody will reuse it
            self._lose(worker)
        else:
            self._idle.put(worker)
        if not reply["ok"] and SCRIPT_ERROR not in reply["attributes"]:
            return _failure(attributes, reply.get("error") or "the call failed")  # not run
        return reply

    def close(self) -> None:
        """Stop every idle worker (busy ones end with their call)."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            worker.stop()


def _failure(attributes: dict[str, str], error: str) -> dict[str, Any]:
    return {
        "ok": False,
        "error": error,
        "attributes": {**attributes, SCRIPT_ERROR: error},
        "log": [],
    }
