"""The tests' shared helpers, in one place: tests import from here, never from each other.

``support`` (this module): a project copied to a temp dir and the real ``integrator`` command
run in it (``Project``), the sandbox's faults and stats over HTTP, the exactly-once check and
``wait_for``. The other modules:

- ``support.daemon``: ``integrator daemon`` in a subprocess, its JSON log collected;
- ``support.omnium``: the Omnium-like and ERP sandboxes and a project of the Omnium flow;
- ``support.services``: the real PostgreSQL server and message brokers (tests marked
  ``services``; the offline lane, ``pytest -m "not services"``, starts none of them);
- ``support.proxy``: the misbehaving proxy (drips, bombs, redirects) of the hostile and chaos
  tests; ``support.hostile``: the hostile cases and their checks; ``support.measure``: a
  command run with a deadline and a memory ceiling; ``support.chaos``: the crash-test harness.

The fixtures that use these (``project``, ``sandbox``, ``servers``, ``omnium_project``,
``hostile``) are in the ``conftest.py`` files.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests

from integrator.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@dataclass
class Result:
    """A finished CLI call."""

    code: int
    out: str
    err: str


@dataclass
class Project:
    """A copy of the repository's config, flows and scripts in a temp dir."""

    root: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, env: dict[str, str] | None = None) -> Result:
        """Run ``integrator ARGS`` in the project directory, in a subprocess."""
        p = subprocess.run(
            [sys.executable, "-m", "integrator", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **self.env, **(env or {})},
        )
        return Result(p.returncode, p.stdout, p.stderr)

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``integrator ARGS`` without waiting."""
        return subprocess.Popen(
            [sys.executable, "-m", "integrator", *args],
            cwd=self.root,
            env={**os.environ, **self.env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    def flow(self, name: str = "order_flow") -> Path:
        """The path of a flow file."""
        return self.root / "flows" / f"{name}.yaml"

    def edit_flow(self, old: str, new: str, name: str = "order_flow") -> None:
        """Replace text in a flow file (the test fails if ``old`` is absent)."""
        path = self.flow(name)
        text = path.read_text()
        assert old in text, f"{old!r} not in {path}"
        path.write_text(text.replace(old, new))

    def misbehave_for(self, number: str, *lines: str) -> None:
        """Make scripts/enrich_order.py run ``lines`` for order ``number`` only."""
        script = self.root / "scripts" / "enrich_order.py"
        anchor = '    lines = data.get("orderitem_set", [])'
        text = script.read_text()
        assert anchor in text
        body = "".join(f"        {line}\n" for line in lines)
        script.write_text(
            text.replace(anchor, f'    if data["number"] == "{number}":\n{body}{anchor}')
        )

    def forward_channel_conf(self) -> None:
        """Make scripts/enrich_order.py try to leak channel.conf to the ERP, a log attribute
        and stdout (the read stage must have masked it already)."""
        script = self.root / "scripts" / "enrich_order.py"
        script.write_text(
            script.read_text().replace(
                "    return data",
                "    data['source_system'] = str(data['channel'])\n"
                "    attributes['log.channel'] = str(data['channel'])\n"
                "    print('script sees', data['channel'])\n"
                "    return data",
            )
        )

    def use_state_url(self, url: str) -> None:
        """Point config.yaml's state store at ``url`` (through the environment)."""
        self.env["INTEGRATOR_STATE_URL"] = url
        cfg = self.root / "config.yaml"
        text = cfg.read_text()
        assert "url: sqlite:///state/integrator.db" in text
        cfg.write_text(
            text.replace("url: sqlite:///state/integrator.db", "url: ${INTEGRATOR_STATE_URL}")
        )

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        """Rows from the project's SQLite state store."""
        with sqlite3.connect(self.root / "state" / "integrator.db") as c:
            return list(c.execute(query))

    def state(self, number: str) -> str:
        """The journal state of an order."""
        rows = self.sql(f"SELECT state FROM journal WHERE order_number = '{number}'")
        return str(rows[0][0]) if rows else "absent"

    def events(self, state: str) -> list[str]:
        """Messages of the events labelled ``state`` (a note) or reporting that fact (lower
        case: an export is the ledger's fact ``exported``)."""
        q = f"SELECT message FROM events WHERE state = '{state}' OR fact = '{state.lower()}'"
        return [m for (m,) in self.sql(q)]


def make_project(tmp_path: Path, env: dict[str, str]) -> Project:
    """Copy config.yaml, flows/ and scripts/ into ``tmp_path``."""
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    return Project(tmp_path, env)


def faults(url: str, spec: dict[str, Any]) -> None:
    """Configure a sandbox server's faults over HTTP."""
    requests.post(f"{url}/_sandbox/faults", json=spec, timeout=5).raise_for_status()


def fault_rule(url: str, **rule: Any) -> None:
    """Give a sandbox server one fault rule (and no other faults)."""
    faults(url, {"rules": [rule]})


def stats(url: str) -> dict[str, Any]:
    """A sandbox server's stats over HTTP."""
    resp = requests.get(f"{url}/_sandbox/stats", timeout=5)
    resp.raise_for_status()
    data: dict[str, Any] = resp.json()
    return data


def fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by a new interpreter (nothing imported yet), which must exit 0."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unsent(sb: Sandbox) -> list[str]:
    """Numbers of the orders the flow should deliver, in pk order."""
    return [
        o["number"]
        for o in sorted(sb.omnitron.orders.values(), key=lambda o: o["pk"])
        if not o["is_send"] and o["status"] == "400"
    ]


def assert_exactly_once(sb: Sandbox, numbers: list[str]) -> None:
    """Every order in the ERP once and marked sent in Omnitron."""
    erp = stats(sb.erp.url)
    assert erp["duplicates"] == 0, erp["duplicate_numbers"]
    assert sorted(sb.erp.received) == sorted(numbers)
    assert all(sb.erp.received[n] == 1 for n in numbers)
    assert stats(sb.omnitron.url)["unsent"] == 0


def wait_for(check: Callable[[], T | None], timeout: float = 30, what: str = "") -> T:
    """Poll ``check`` every 0.1 s until it returns something true; its value. The test fails
    with ``what`` when ``timeout`` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what or check}")
