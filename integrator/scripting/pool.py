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
  reads end-of-file and kills its own process group: itself and anything its script started.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import select
import subprocess
import sys
import threading
from typing import IO, Any

from integrator.scripting.worker import HEADER, SCRIPT_ERROR

__all__ = ["DEFAULT_MEMORY_MB", "DEFAULT_TIMEOUT", "ScriptPool"]

DEFAULT_TIMEOUT = 300.0  # seconds, as Akinon Integrator
DEFAULT_MEMORY_MB = 1024
_WORKER_MAIN = "from integrator.scripting.worker import main; main()"


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


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        line = lifeline()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_MAIN, str(memory_mb), str(line)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # what scripts print shows up beside the runner's own output
            start_new_session=True,  # the runner's signals are the runner's
            pass_fds=(line,),
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin: IO[bytes] = self.proc.stdin
        self.stdout: IO[bytes] = self.proc.stdout

    def send(self, call: dict[str, Any]) -> None:
        data = pickle.dumps(call, protocol=5)
        self.stdin.write(HEADER.pack(len(data)) + data)
        self.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any] | None:
        """The reply; None on timeout; EOFError when the worker died."""
        fd = self.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            return None
        header = _read_exact(fd, HEADER.size)
        (size,) = HEADER.unpack(header)
        reply: dict[str, Any] = pickle.loads(_read_exact(fd, size))
        return reply

    def kill(self) -> int | None:
        self.proc.kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None
        finally:
            for stream in (self.stdin, self.stdout):
                with contextlib.suppress(OSError):
                    stream.close()
        return self.proc.returncode


def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


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
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
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
        return self._idle.get()

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
        output that is not JSON), ``attributes`` (with ``log.script.error`` on failure),
        ``error``, ``log``."""
        call = {
            "path": path,
            "entry": entry,
            "runtime": runtime,
            "args": args,
            "attributes": attributes,
        }
        worker = self._acquire()
        try:
            worker.send(call)
            reply = worker.receive(timeout)
        except (EOFError, OSError, pickle.UnpicklingError):
            code = self._lose(worker)
            why = f"exit code {code}" if code is not None else "it could not be stopped"
            if code is not None and code < 0:
                why = f"killed by signal {-code}"
            return _failure(
                attributes,
                f"WorkerDied: the script's worker process ended while running it ({why}); "
                "a replacement was started",
            )
        except BaseException:
            self._lose(worker)
            raise
        if reply is None:
            self._lose(worker)
            return _failure(
                attributes,
                f"TimeoutError: the script ran longer than its limit of {timeout:g}s; "
                "its worker was killed and replaced",
            )
        if self._closed:  # the run ended while this call went on: nobody will reuse it
            self._lose(worker)
        else:
            self._idle.put(worker)
        return reply

    def close(self) -> None:
        """Stop every idle worker (busy ones end with their call)."""
        self._closed = True
        while True:
            try:
                worker = self._idle.get_nowait()
            except queue.Empty:
                return
            try:
                worker.stdin.close()  # the worker's loop ends on EOF
                worker.proc.wait(5)
                worker.stdout.close()
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()


def _failure(attributes: dict[str, str], error: str) -> dict[str, Any]:
    return {
        "ok": False,
        "error": error,
        "attributes": {**attributes, SCRIPT_ERROR: error},
        "log": [],
    }
