"""The suite's own promises: the offline lane (``pytest -m "not services"``) needs and starts
none of the services, because only a test marked ``services`` may ask for one; and ``.ci/run``
stops the services it started when it exits, failing or not, and only those."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import ROOT, free_port

CI = ROOT / ".ci"

UNREACHABLE = {
    # where a service would be asked for: nothing listens there, so a test that reached one
    # would fail with a connection error, not with the gate's message
    "INTEGRATOR_TEST_PG_URL": "postgresql+psycopg://postgres:x@127.0.0.1:1/postgres",
    "INTEGRATOR_TEST_AMQP_URL": "amqp://127.0.0.1:1/%2F",
    "INTEGRATOR_TEST_AZURE_QUEUE": "QueueEndpoint=http://127.0.0.1:1/devstoreaccount1;",
    "INTEGRATOR_TEST_KAFKA": "127.0.0.1:1",
}
TESTS = """
import pytest
from support.services import broker, fresh_database

def test_unmarked_asks_for_a_broker():
    assert broker("kafka") == "127.0.0.1:1"

def test_unmarked_asks_for_postgresql():
    with fresh_database():
        pass

@pytest.mark.services
def test_marked_gets_its_broker():
    assert broker("kafka") == "127.0.0.1:1"
"""


def pytest_in(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run pytest on ``TESTS`` in ``tmp_path``, with the suite's gate plugin."""
    (tmp_path / "test_gate.py").write_text(TESTS)
    (tmp_path / "conftest.py").write_text('pytest_plugins = ["support.services"]\n')
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    services: needs services\n")
    path = os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--strict-markers", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **UNREACHABLE, "PYTHONPATH": path},
    )


def test_an_unmarked_test_that_asks_for_a_service_fails_naming_the_marker(
    tmp_path: Path,
) -> None:
    """Asking is enough to fail: the gate answers before any address is given or any service
    started, and says what to add."""
    p = pytest_in(tmp_path, "-m", "not services")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "2 failed, 1 deselected" in p.stdout, p.stdout
    says = "uses kafka but is not marked services: add @pytest.mark.services"
    assert says in p.stdout, p.stdout
    assert "uses postgres but is not marked services" in p.stdout, p.stdout
    assert "Connection refused" not in p.stdout and "OperationalError" not in p.stdout


def test_a_marked_test_gets_its_service_and_only_the_services_lane_runs_it(
    tmp_path: Path,
) -> None:
    p = pytest_in(tmp_path, "-m", "services")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "1 passed, 2 deselected" in p.stdout, p.stdout


@pytest.fixture
def pg_env() -> Iterator[dict[str, str]]:
    """The environment for a throw-away cluster of ``.ci/postgres.sh`` of this test's own (the
    postgres user must reach its directory: not under pytest's private tmp_path)."""
    top = Path(tempfile.mkdtemp(prefix="itci-", dir="/tmp"))
    top.chmod(0o755)
    env = {**os.environ, "PG_BASE": str(top / "pg"), "PG_PORT": str(free_port())}
    try:
        yield env
    finally:
        subprocess.run(["bash", str(CI / "postgres.sh"), "stop"], env=env, capture_output=True)
        shutil.rmtree(top, ignore_errors=True)


def pg_running(env: dict[str, str]) -> bool:
    """The cluster at ``PG_BASE`` runs (its pid file names a live postmaster)."""
    return subprocess.run(["bash", str(CI / "postgres.sh"), "status"], env=env).returncode == 0


@pytest.mark.services
@pytest.mark.parametrize("ending", ["exit 0", "false", "kill -TERM $$"])
def test_ci_services_are_stopped_when_the_script_ends(pg_env: dict[str, str], ending: str) -> None:
    """``.ci/run``'s services (``.ci/services.sh``): what it started is stopped when it exits
    normally, on a failing command (set -e) and on SIGTERM."""
    script = f"set -euo pipefail\n. {CI / 'services.sh'}\nstart_service postgres\n{ending}\n"
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=pg_env)
    assert "[postgres] server ready" in p.stdout, p.stdout + p.stderr
    assert "[ci] stopping postgres" in p.stdout, p.stdout + p.stderr
    assert p.returncode == {"exit 0": 0, "false": 1, "kill -TERM $$": 143}[ending]
    assert Path(pg_env["PG_BASE"], "data", "PG_VERSION").exists()  # it did run there
    assert not pg_running(pg_env), p.stdout + p.stderr


@pytest.mark.services
def test_ci_leaves_running_a_service_it_did_not_start(pg_env: dict[str, str]) -> None:
    """A service that was already running when ``.ci/run`` began is someone else's: it is left
    running, and says so."""
    started = subprocess.run(
        ["bash", str(CI / "postgres.sh")], capture_output=True, text=True, env=pg_env
    )
    assert started.returncode == 0, started.stdout + started.stderr
    assert pg_running(pg_env)
    script = f"set -euo pipefail\n. {CI / 'services.sh'}\nstart_service postgres\nfalse\n"
    p = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=pg_env)
    assert p.returncode == 1
    assert "[ci] postgres was already running: left running at the end" in p.stdout, p.stdout
    assert "[ci] stopping" not in p.stdout
    assert pg_running(pg_env)
