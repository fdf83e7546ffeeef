"""``integrator console`` in a subprocess: started on a free port, its URL read from stdout."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import requests

from integrator.console.users import hash_password
from support import Project

PASSWORDS = {"vera": "viewer-pass-123", "otto": "operator-pass-123", "ada": "admin-pass-1234"}
TOKENS = {"otto": "otto-token-" + "x" * 24, "vera": "vera-token-" + "y" * 24}
SESSION_SECRET = "s" * 40


def with_users(project: Project) -> None:
    """Three users (hashes in files, tokens and the session secret from the environment)."""
    folder = project.root / "secrets"
    folder.mkdir(exist_ok=True)
    for name, password in PASSWORDS.items():
        (folder / f"{name}.hash").write_text(hash_password(password) + "\n")
    project.env.update(
        CONSOLE_SESSION_SECRET=SESSION_SECRET,
        OTTO_API_TOKEN=TOKENS["otto"],
        VERA_API_TOKEN=TOKENS["vera"],
    )
    cfg = project.root / "config.yaml"
    cfg.write_text(
        cfg.read_text()
        + """
console:
  session_secret: ${CONSOLE_SESSION_SECRET}
  users:
    - {name: vera, role: viewer, password_hash: "${file:secrets/vera.hash}",
       api_token: "${VERA_API_TOKEN}"}
    - {name: otto, role: operator, password_hash: "${file:secrets/otto.hash}",
       api_token: "${OTTO_API_TOKEN}"}
    - {name: ada, role: admin, password_hash: "${file:secrets/ada.hash}"}
"""
    )


class ConsoleProcess:
    """A started console; ``get`` asks it with a loopback Host header unless told."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc, self.url = proc, url.rstrip("/")

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=10, allow_redirects=False, **kwargs)

    def json(self, path: str) -> Any:
        r = self.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("application/json"), r.headers
        return r.json()

    def page(self, path: str) -> str:
        r = self.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
        assert r.headers["Content-Type"].startswith("text/html"), r.headers
        return r.text


@contextmanager
def console(project: Project, args: Sequence[str] = ()) -> Iterator[ConsoleProcess]:
    """``integrator console --http 127.0.0.1:0``, stopped (SIGTERM) at the end."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "integrator", "console", "--http", "127.0.0.1:0", *args],
        cwd=project.root,
        env={**os.environ, **project.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the first line names the URL (or the pipe ends)
        if not line.startswith("console on "):
            proc.kill()
            _out, err = proc.communicate(timeout=10)
            raise AssertionError(f"the console did not start: {line!r} {err}")
        yield ConsoleProcess(proc, line.split()[2])
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
