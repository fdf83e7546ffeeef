"""``integrator daemon`` in a subprocess, as users run it, with its JSON log lines collected."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from support import Project, free_port, wait_for


class DaemonProcess:
    """``integrator daemon`` in a subprocess; its JSON log lines collected as they come."""

    def __init__(
        self, project: Project, grace: float = 20, watch: float = 0.3, args: Sequence[str] = ()
    ) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "integrator",
                "daemon",
                "--http",
                f"127.0.0.1:{self.port}",
                "--watch",
                str(watch),
                "--grace",
                str(grace),
                *args,
            ],
            cwd=project.root,
            env={**os.environ, **project.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.events: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        with suppress(ValueError):  # the pipe closed under us by daemon()'s clean-up
            for line in self.proc.stderr:
                self.raw.append(line)
                with suppress(ValueError):
                    self.events.append(json.loads(line))

    def named(self, event: str) -> list[dict[str, Any]]:
        """The log events called ``event``, so far."""
        return [e for e in list(self.events) if e.get("event") == event]

    def url(self, path: str) -> str:
        """The URL of ``path`` on the daemon's HTTP server."""
        return f"http://127.0.0.1:{self.port}{path}"

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """``/metrics`` parsed: (name, sorted labels) -> value."""
        text = requests.get(self.url("/metrics"), timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM, then its exit code; every log line it wrote has been read by then."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.reader.join(5)  # the reader ends at the end of the daemon's stderr
        return code

    def kill(self) -> None:
        """SIGKILL it if it still runs."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@contextmanager
def daemon(
    project: Project, grace: float = 20, watch: float = 0.3, args: Sequence[str] = ()
) -> Iterator[DaemonProcess]:
    """A started daemon (its ``daemon_started`` logged), killed at the end."""
    d = DaemonProcess(project, grace, watch, args)
    try:
        wait_for(lambda: d.named("daemon_started") or d.proc.poll() is not None, 20, "start")
        assert d.proc.poll() is None, "".join(d.raw)
        yield d
    finally:
        d.kill()
        if d.proc.stderr is not None:
            d.proc.stderr.close()


def every(project: Project, interval: str = "1s") -> None:
    """Schedule order_flow ``every: interval`` instead of its cron."""
    project.edit_flow('  cron: "*/5 * * * *"\n  timezone: Europe/Istanbul', f"  every: {interval}")


def unscheduled(project: Project) -> None:
    """Schedule order_flow for 03:00 on 29 February only, so a daemon runs it only when asked
    (its default ``*/5`` cron would fire a run of its own in a test that crosses a 5-minute
    boundary, and a count of runs or notices would be off by one)."""
    project.edit_flow('cron: "*/5 * * * *"', 'cron: "0 3 29 2 *"')
