"""Shared fixtures: the sandbox servers and a project wired to them, the Omnium sandboxes and a
project of the Omnium flow. The helpers they use are in ``support``: tests import those from
there, never from this file or from each other.

The ``services`` marker: a test marked with it may use the real PostgreSQL server and message
brokers; any other test that asks for one fails (the plugin ``support.services``), so the
offline lane (``pytest -m "not services"``) never starts them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.register_assert_rewrite("support")  # its checks fail with pytest's detailed messages

from support import Project, make_project  # noqa: E402
from support.alarms import Receiver  # noqa: E402
from support.omnium import make_omnium_project  # noqa: E402

from integrator.sandbox import (  # noqa: E402
    SANDBOX_ENV,
    ErpSandbox,
    OmniumSandbox,
    Sandbox,
    running_sandbox,
)

pytest_plugins = ["support.services"]  # the services gate


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Both sandbox servers with 25 seeded orders."""
    with running_sandbox(25) as sb:
        yield sb


@pytest.fixture
def project(tmp_path: Path, sandbox: Sandbox) -> Project:
    """A project wired to the running sandbox."""
    return make_project(tmp_path, sandbox.env())


@pytest.fixture
def servers() -> Iterator[tuple[OmniumSandbox, ErpSandbox]]:
    """The Omnium-like sandbox (250 orders) and the ERP sandbox."""
    omnium = OmniumSandbox(
        orders=250,
        client_id=SANDBOX_ENV["OMNIUM_CLIENT_ID"],
        client_secret=SANDBOX_ENV["OMNIUM_CLIENT_SECRET"],
    ).start()
    erp = ErpSandbox(token=SANDBOX_ENV["ERP_TOKEN"]).start()
    yield omnium, erp
    omnium.stop()
    erp.stop()


@pytest.fixture
def omnium_project(tmp_path: Path, servers: tuple[OmniumSandbox, ErpSandbox]) -> Project:
    """A project of ``flows/omnium`` wired to ``servers``."""
    return make_omnium_project(tmp_path, *servers)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A local webhook receiver (alarms' notices), closed at the end."""
    r = Receiver()
    yield r
    r.close()
