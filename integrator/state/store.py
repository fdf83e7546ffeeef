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
import urllib.parse
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
from integrator.state.migrations import VERSION, migrate, stored_version
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

    def __init__(self, url: str, *, read_only: bool = False) -> None:
        """Open (and create, or migrate) the store at ``url``. ``read_only`` (a dry run, through
        :meth:`open_read_only`): nothing is created, migrated or written; a write fails."""
        self.url = url
        self.read_only = read_only
        self.is_sqlite = url.startswith("sqlite")
        self.path: Path | None = None
        self._ro_uri: str | None = None  # SQLite read-only: the URI every connection opens
        if self.is_sqlite and url.startswith("sqlite:///"):
            self.path = Path(url[len("sqlite:///") :])
            if read_only:
                self._ro_uri = _read_only_uri(self.path)
            else:
                self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = self._engine(url)
            if self.is_sqlite:
                event.listen(
                    self.engine, "connect", _sqlite_read_only if read_only else _sqlite_pragmas
                )
            if read_only:
                self.found_version = _current_or_none(self.engine, self.safe_url)
            else:
                self.found_version = migrate(
                    self.engine,
                    self.path.with_name(self.path.name + ".migrate") if self.path else None,
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

    @classmethod
    def open_read_only(cls, url: str) -> Store | None:
        """The store as it stands, for a dry run: read-only, never created, migrated or locked.
        None when there is none yet (no SQLite file, an empty database): nothing to read, so
        every order the source lists is new."""
        if url.startswith("sqlite") and (
            not url.startswith("sqlite:///") or not Path(url[len("sqlite:///") :]).is_file()
        ):
            return None  # no file (or an in-memory database, new in every process)
        store = cls(url, read_only=True)
        if store.found_version == 0:
            store.close()
            return None
        return store

    def _engine(self, url: str) -> Engine:
        if self._ro_uri is not None:
            uri = self._ro_uri  # the file's URL for the dialect; connections from the URI
            return create_engine(
                url,
                creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False),
            )
        if self.read_only and url.startswith("postgresql"):  # libpq: every transaction reads
            return create_engine(
                url,
                pool_pre_ping=True,
                connect_args={"options": "-c default_transaction_read_only=on"},
            )
        return create_engine(url, pool_pre_ping=not self.is_sqlite)

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
            if self._ro_uri is not None:
                conn = sqlite3.connect(
                    self._ro_uri, uri=True, isolation_level=None, check_same_thread=False
                )
            else:
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


def _read_only_uri(path: Path) -> str:
    """The SQLite URI that reads ``path`` and writes nothing beside it. SQLite reads a WAL
    database through its ``-wal`` and ``-shm`` files and creates them when they are absent,
    even read-only (and cannot remove them after): when they are absent, no connection has
    the database open and every commit is in the file itself, so it is read ``immutable``
    (no locks, no side files). A run that starts meanwhile writes to a WAL the dry run does
    not see; should it checkpoint into the file while the dry run reads, the dry run may
    stop with a store error (it writes nothing either way). When they exist, the dry run
    reads through them like any reader."""
    quoted = urllib.parse.quote(str(path.resolve()))
    side = [path.with_name(path.name + suffix) for suffix in ("-wal", "-shm")]
    immutable = "" if any(p.exists() for p in side) else "&immutable=1"
    return f"file:{quoted}?mode=ro{immutable}"


def _current_or_none(engine: Engine, where: str) -> int:
    """A read-only store's schema version (0: empty); one that is not this release's is
    refused, since a dry run cannot migrate it."""
    found = stored_version(engine)
    if found is None:
        return 0
    if found > VERSION:
        raise FatalError(
            f"the state store {where} is at schema version {found}, written by a newer "
            f"integrator (this one knows up to {VERSION}): upgrade integrator, or use another store"
        )
    if found < VERSION:
        raise FatalError(
            f"the state store {where} is at schema version {found}, older than this "
            f"integrator's {VERSION}; a dry run writes nothing, so it does not migrate it: a run, "
            "or any command that opens the store (`integrator runs`), migrates it first"
        )
    return found


def _sqlite_read_only(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA query_only=ON")
    cur.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()
