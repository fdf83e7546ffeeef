"""The real services some tests need, on loopback: a PostgreSQL server and the message brokers
(RabbitMQ, Azurite's Azure Storage Queue, a Kafka-protocol broker).

Each comes from its ``INTEGRATOR_TEST_*`` variable (``.ci/run`` starts them and sets these), or
is started here by the same ``.ci`` script: PostgreSQL and RabbitMQ from Debian's packages,
Azurite from npm, the Kafka-protocol broker (Tansu) from a PyPI wheel.

Only a test marked ``services`` may ask for one: this module is a pytest plugin
(``conftest.py``'s ``pytest_plugins``) whose autouse fixture opens the gate for such a test. Any
other test that asks fails at once, naming the marker, so the offline lane
(``pytest -m "not services"``) neither starts nor needs any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import create_engine, text

from support import ROOT

PG_URL = "postgresql+psycopg://postgres:postgres-secret@127.0.0.1:54329/postgres"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
SERVICES = {
    # name: (environment variable, .ci script, value once the script has started it)
    "postgres": ("INTEGRATOR_TEST_PG_URL", "postgres.sh", PG_URL),
    "rabbitmq": ("INTEGRATOR_TEST_AMQP_URL", "rabbitmq.sh", "amqp://127.0.0.1:5672/%2F"),
    "azurite": (
        "INTEGRATOR_TEST_AZURE_QUEUE",
        "azurite.sh",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
    ),
    "kafka": ("INTEGRATOR_TEST_KAFKA", "kafka.sh", "127.0.0.1:19092"),
}
_started: set[str] = set()
_allowed = False


@pytest.fixture(autouse=True)
def _services_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """Open the gate for a test marked ``services``; keep it shut for any other."""
    global _allowed
    _allowed = request.node.get_closest_marker("services") is not None
    try:
        yield
    finally:
        _allowed = False


def service(name: str) -> str:
    """The address of service ``name``, starting it with its ``.ci`` script when no
    ``INTEGRATOR_TEST_*`` variable gives one. Fails the test unless it is marked ``services``."""
    var, script, default = SERVICES[name]
    if not _allowed:
        pytest.fail(
            f"this test uses {name} but is not marked services: add @pytest.mark.services "
            '(the offline lane, pytest -m "not services", must not need it)',
            pytrace=False,
        )
    if os.environ.get(var):
        return os.environ[var]
    if name not in _started:
        p = subprocess.run(
            ["bash", str(ROOT / ".ci" / script)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHON": sys.executable},
        )
        if p.returncode != 0:
            pytest.fail(
                f"{name} is needed for this test and .ci/{script} could not start it "
                f"(set {var} to use another one):\n{p.stdout}\n{p.stderr}"
            )
        _started.add(name)
    return default


def broker(name: str) -> str:
    """The address of message broker ``name`` (rabbitmq, azurite, kafka)."""
    assert name != "postgres", "use fresh_database()"
    return service(name)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database on the PostgreSQL server, dropped afterwards; yields its URL."""
    base = service("postgres")
    name = f"it_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
