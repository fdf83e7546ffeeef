"""A newcomer's shell for the tests: a clean environment (none of the sandbox's variables), the
CLI in a subprocess, long-running commands whose output lines are waited for, and
``integrator sandbox`` on free ports."""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from integrator.sandbox import SANDBOX_ENV
from support import Result, free_port

__all__ = ["Proc", "clean_env", "cli", "sandbox_cmd"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a newcomer: none of the sandbox's variables, no INTEGRATOR_*."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in SANDBOX_ENV and not k.endswith("_URL") and not k.startswith("INTEGRATOR_")
    }
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


def _no_root_override() -> None:  # pragma: no cover - runs in the child before exec
    """Drop root's power to ignore file modes (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH), so that
    a permission problem is one for root too; a normal user has no such power anyway."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        for cap in (1, 2):  # PR_CAPBSET_DROP = 24: gone from the bounding set at exec
            if libc.prctl(24, cap, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def cli(root: Path, *args: str, env: dict[str, str] | None = None, as_user: bool = False) -> Result:
    """``integrator ARGS`` in ``root``, in a clean environment."""
    p = subprocess.run(
        [sys.executable, "-m", "integrator", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        env=env if env is not None else clean_env(),
        preexec_fn=_no_root_override if as_user else None,
    )
    return Result(p.returncode, p.stdout, p.stderr)


class Proc:
    """A long-running ``integrator`` command whose output lines are waited for."""

    def __init__(
        self, root: Path, *args: str, env: dict[str, str] | None = None, as_user: bool = False
    ) -> None:
        self.p = subprocess.Popen(
            [sys.executable, "-m", "integrator", *args],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env if env is not None else clean_env(),
            preexec_fn=_no_root_override if as_user else None,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_line(self, text: str, timeout: float = 30) -> str:
        """The first line holding ``text`` (fails at the end of the output)."""
        while True:
            line = self.lines.get(timeout=timeout)
            if line is None:
                raise AssertionError(f"{text!r} never came; output:\n{''.join(self.seen)}")
            self.seen.append(line)
            if text in line:
                return line

    def rest(self) -> str:
        """Everything seen, and the rest once the process has ended."""
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(line)
        return "".join(self.seen)

    def stop(self) -> int:
        """SIGINT (Ctrl-C), then its exit status; the pipe is closed."""
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGINT)
        code = self.p.wait(timeout=30)
        self.reader.join(timeout=30)
        assert self.p.stdout is not None
        self.p.stdout.close()
        return code


@contextmanager
def sandbox_cmd(
    root: Path, *extra: str, env: dict[str, str] | None = None, as_user: bool = False
) -> Iterator[Proc]:
    """``integrator sandbox`` on free ports, until it says how to stop it."""
    ports = [str(free_port()) for _ in range(5)]
    proc = Proc(
        root,
        "sandbox",
        "--omnitron-port",
        ports[0],
        "--erp-port",
        ports[1],
        "--omnium-port",
        ports[2],
        "--jsonrpc-erp-port",
        ports[3],
        "--soap-erp-port",
        ports[4],
        *extra,
        env=env,
        as_user=as_user,
    )
    try:
        proc.wait_line(".env")  # what it did about .env: said once the servers are up
        yield proc
    finally:
        proc.stop()
