"""The state store: one database, and the parts that live in it.

SQLite (WAL) by default, PostgreSQL by URL. ``Store`` owns the engine, the transactions, group
commit and the driver SQL of the hot path; each part is a module of its own:

=============  ==================================================================
``runs``        one row per run: start, end status, counts (``state/runs.py``)
``journal``     where each order stands, its events and ``log.`` rows, deliveries;
                written by the ledger alone (``state/journal.py``, ``state/ledger.py``)
``locks``       one run of a flow at a time, across processes (``state/locks.py``)
``watermarks``  delta-polling positions per flow (``state/watermarks.py``)
``pending``     orders events asked for, until a run takes them (``state/pending.py``)
=============  ==================================================================

SQLite in WAL mode with ``synchronous=NORMAL`` keeps every committed transaction across a
process crash (SIGKILL); only a power loss may drop the last ones. The schema is brought up to
date when a store is opened (``state/migrations.py``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Connection, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from integrator.errors import FatalError
from integrator.state.journal import Journal
from integrator.state.locks import FlowLocks
from integrator.state.migrations import migrate
from integrator.state.pending import PendingEvents
from integrator.state.runs import Runs
from integrator.state.watermarks import Watermarks

__all__ = ["DEFER_SECONDS", "DriverSQL", "StateStoreError", "Store"]

DEFER_SECONDS = 0.5  # the longest a deferred write waits for another transaction

log = structlog.get_logger("integrator.store")


class StateStoreError(FatalError):
    """The state store failed in the middle of a run: the run stops, clearly."""


class Store:
    """Typed access to the state database; safe to share between worker threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.path: Path | None = None
        if self.is_sqlite and url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :])
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=not self.is_sqlite)
            if self.is_sqlite:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            self.found_version = migrate(
                self.engine, self.path.with_name(self.path.name + ".migrate") if self.path else None
            )
        except SQLAlchemyError as exc:
            raise FatalError(
                f"state store {self.safe_url} unreachable: {exc.__class__.__name__}: "
                f"{str(exc.orig) if hasattr(exc, 'orig') else exc}"
            ) from None
        # SQLite allows one writer: serialize writers here rather than meet "database is locked".
        self._write_lock = threading.Lock() if self.is_sqlite else contextlib.nullcontext()
        # Deferred writes: committed with the next transaction of any thread, or by flush().
        self._deferred: list[Callable[[Connection], None]] = []
        self._deferred_lock = threading.Lock()
        self._deferred_since = 0.0
        self._writer: Connection | None = None  # SQLite: the one connection that writes
        self.sql = DriverSQL(self.engine.dialect.name)
        # SQLite: one kept-open reader connection per thread for the per-order journal read
        # (a pool checkout, and the rollback on its return, cost more than the SELECT).
        self._reader = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.runs = Runs(self)
        self.journal = Journal(self)
        self.locks = FlowLocks(self)
        self.watermarks = Watermarks(self)
        self.pending = PendingEvents(self)

    @property
    def safe_url(self) -> str:
        """The URL without its credentials: everything between ``://`` and the last ``@`` is
        masked (a password with an unencoded ``@`` included)."""
        scheme, sep, rest = self.url.partition("://")
        if not sep or "@" not in rest:
            return self.url
        return f"{scheme}://***@{rest.rpartition('@')[2]}"

    @contextlib.contextmanager
    def _begin(self) -> Iterator[Connection]:
        """A transaction; on SQLite always on the one writer connection, kept open."""
        if not self.is_sqlite:
            with self.engine.begin() as conn:
                yield conn
            return
        if self._writer is None or self._writer.closed:
            self._writer = self.engine.connect()
        with self._writer.begin():
            yield self._writer

    @contextlib.contextmanager
    def transaction(self, *, deferred: bool = True) -> Iterator[Connection]:
        """A write transaction; the deferred writes of every thread ride on it (not with
        ``deferred=False``: a run's own record must not fail with an order's write)."""
        with self._write_lock, self._begin() as conn:
            if not deferred:
                yield conn
                return
            with self._deferred_lock:
                deferred_writes, self._deferred = self._deferred, []
            try:
                for write in deferred_writes:
                    write(conn)
            except BaseException:
                with self._deferred_lock:
                    self._deferred[:0] = deferred_writes
                raise
            yield conn

    def write(self, write: Callable[[Connection], None], *, defer: bool = False) -> None:
        """Run ``write`` in a transaction of its own, or (``defer``) in the next transaction of
        any thread (group commit), at the latest once it has waited ``DEFER_SECONDS`` or at
        :meth:`flush`. Deferred writes are for changes whose loss in a crash is harmless."""
        if defer:
            with self._deferred_lock:
                if not self._deferred:
                    self._deferred_since = time.monotonic()
                self._deferred.append(write)
                due = time.monotonic() - self._deferred_since >= DEFER_SECONDS
            if due:  # nobody else committed for a while: do not let the window grow
                self.flush()
            return
        with self.transaction() as c:
            write(c)

    def flush(self) -> None:
        """Commit the deferred writes now (the runner calls this at the end of every run)."""
        if self._deferred:
            with self.transaction():
                pass

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as c:
                c.exec_driver_sql("SELECT 1")
            return True
        except SQLAlchemyError:
            return False

    @contextlib.contextmanager
    def read_cursor(self) -> Iterator[Any]:
        """A DBAPI cursor for one read: this thread's SQLite reader, or a pooled connection's."""
        reader = self._sqlite_reader()
        if reader is not None:
            cur: Any = reader.cursor()
            try:
                yield cur
            finally:
                cur.close()
            return
        with self.engine.connect() as c:
            cur = c.connection.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _sqlite_reader(self) -> sqlite3.Connection | None:
        """This thread's reader connection (SQLite file databases only)."""
        if self.path is None:
            return None
        conn: sqlite3.Connection | None = getattr(self._reader, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout=10000")
            self._reader.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Commit what is deferred (what cannot be is harmless to lose: those orders stay
        `sent` and resume after the write); release the connection pool."""
        try:
            self.flush()
        except SQLAlchemyError as exc:
            log.warning("deferred_writes_lost", store=self.safe_url, error=str(exc).splitlines()[0])
            self._deferred = []
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._reader = threading.local()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()


class DriverSQL:
    """The ledger's hot statements as the driver's own SQL, run on the DBAPI cursor of the
    current transaction: SQLAlchemy Core's per-execute work (compile cache, parameter and
    result processing) cost more CPU per order than the statements themselves. Written for
    the two dialects the store supports; values are stored exactly as SQLAlchemy stores them,
    so every other query reads them back unchanged."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self._updates: dict[tuple[str, ...], str] = {}
        self._inserts: dict[tuple[str, ...], str] = {}
        cols = "flow, order_number, run_id, at, state, message, fact"
        self.insert_event = self._q(f"INSERT INTO events ({cols}) VALUES ({self._ph(cols)})")
        cols = "flow, order_number, run_id, at, key, value"
        self.insert_log = self._q(f"INSERT INTO order_log ({cols}) VALUES ({self._ph(cols)})")
        cols = "flow, order_number, run_id, at, kind, connector, connector_id, note"
        self.insert_delivery = self._q(f"INSERT INTO deliveries ({cols}) VALUES ({self._ph(cols)})")
        self.select_entry = self._q(
            "SELECT * FROM journal WHERE flow = :k_flow AND order_number = :k_number"
        )

    def _q(self, sql: str) -> str:
        return re.sub(r":(\w+)", r"%(\1)s", sql) if self.pg else sql

    @staticmethod
    def _ph(cols: str) -> str:
        return ", ".join(":" + c.strip() for c in cols.split(","))

    def update_entry(self, names: tuple[str, ...]) -> str:
        """``UPDATE journal SET …`` for these columns, keyed by ``k_flow``/``k_number``."""
        sql = self._updates.get(names)
        if sql is None:
            sets = ", ".join(f"{n} = :{n}" for n in names)
            sql = self._q(
                f"UPDATE journal SET {sets} WHERE flow = :k_flow AND order_number = :k_number"
            )
            self._updates[names] = sql
        return sql

    def insert_entry(self, names: tuple[str, ...]) -> str:
        """``INSERT INTO journal`` for these columns."""
        sql = self._inserts.get(names)
        if sql is None:
            sql = self._q(
                f"INSERT INTO journal ({', '.join(names)}) VALUES ({self._ph(', '.join(names))})"
            )
            self._inserts[names] = sql
        return sql

    def row(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameters as the driver takes them (SQLite: timestamps as SQLAlchemy writes them)."""
        if self.pg:
            return dict(values)
        return {
            k: v.strftime("%Y-%m-%d %H:%M:%S.%f") if isinstance(v, dt.datetime) else v
            for k, v in values.items()
        }

    def timestamp(self, value: Any) -> dt.datetime | None:
        """A timestamp read back (SQLite gives the text SQLAlchemy wrote), as aware UTC."""
        if value is None:
            return None
        at = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
        return at if at.tzinfo else at.replace(tzinfo=dt.UTC)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
