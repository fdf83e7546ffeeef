"""One run of a flow at a time, across processes.

SQLite: an exclusive ``flock`` on a file beside the database (the kernel drops it when the
holder dies). PostgreSQL: a session-level ``pg_try_advisory_lock`` keyed by a hash of the flow
name (the server drops it when the holder's session ends).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text

from integrator.errors import FatalError

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["FlowBusy", "FlowLocks"]


class FlowBusy(FatalError):
    """Another process runs this flow now."""


class FlowLocks:
    """The flows' run locks."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def path(self, flow: str) -> Path:
        """SQLite: the lock file of ``flow``."""
        db = self.store.path
        return (db.parent if db else Path.cwd()) / f".{flow}.lock"

    @contextlib.contextmanager
    def hold(self, flow: str) -> Iterator[None]:
        """Hold the flow's run lock; FlowBusy when another process holds it."""
        if self.store.is_sqlite:
            path = self.path(flow)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FlowBusy(
                        f"flow {flow!r} is already running in another process (lock {path})"
                    ) from None
                os.ftruncate(fd, 0)
                os.write(fd, str(os.getpid()).encode())
                yield
            finally:
                os.close(fd)
            return
        key = int.from_bytes(
            hashlib.blake2b(flow.encode(), digest_size=8).digest(), "big", signed=True
        )
        with self.store.engine.connect() as c:
            got = c.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if not got:
                raise FlowBusy(f"flow {flow!r} is already running in another process")
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
