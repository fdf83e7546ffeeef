"""A real PostgreSQL server for the tests: ``INTEGRATOR_TEST_PG_URL``, or the one that
``.ci/postgres.sh`` starts on loopback (Debian's postgresql, a throw-away cluster)."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = "postgresql+psycopg://postgres:postgres-secret@127.0.0.1:54329/postgres"
_started: list[str] = []


def server_url() -> str:
    """The server's URL, starting it when nobody gave one."""
    url = os.environ.get("INTEGRATOR_TEST_PG_URL")
    if url:
        return url
    if not _started:
        p = subprocess.run(
            ["bash", str(ROOT / ".ci" / "postgres.sh")], capture_output=True, text=True
        )
        if p.returncode != 0:
            pytest.fail(
                "PostgreSQL is needed for these tests and .ci/postgres.sh could not start it "
                f"(set INTEGRATOR_TEST_PG_URL to use another server):\n{p.stdout}\n{p.stderr}"
            )
        _started.append(DEFAULT_URL)
    return DEFAULT_URL


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new empty database on the server, dropped afterwards; yields its URL."""
    base = server_url()
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
