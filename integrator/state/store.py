"""The state store: runs, the per-order journal (the ledger), events and ``log.`` attributes.

SQLite (WAL) by default, PostgreSQL by URL. Every journal change is one transaction that
updates the order's row and appends an event, so the history can always explain the state.
SQLite in WAL mode with ``synchronous=NORMAL`` keeps every committed transaction across a
process crash (SIGKILL); only a power loss may drop the last ones.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, insert, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from integrator.errors import FatalError
from integrator.state.schema import events, journal, metadata, order_log, runs, watermarks

__all__ = ["JournalEntry", "Store", "Transition"]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


DEFER_SECONDS = 0.5  # the longest a deferred write waits for another transaction

# Built once: SQLAlchemy then reuses their compiled form (the hot path has _DriverSQL).
_INSERT_EVENT = insert(events)
_INSERT_LOG = insert(order_log)


@dataclass(frozen=True)
class Transition:
    """A journal change made in memory, written with the order's next durable change."""

    state: str
    message: str
    at: dt.datetime
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class JournalEntry:
    """Where one order of one flow stands."""

    flow: str
    order_number: str
    order_pk: str | None
    state: str
    attempts: int
    next_try: float | None
    error_kind: str | None
    last_error: str | None
    erp_ref: str | None
    request: Any
    response: Any
    updated_at: dt.datetime | None = None  # UTC

    def age_seconds(self) -> float:
        """Seconds since the last change (0 when unknown)."""
        if self.updated_at is None:
            return 0.0
        at = self.updated_at
        if at.tzinfo is None:  # SQLite keeps no zone: stored as UTC
            at = at.replace(tzinfo=dt.UTC)
        return (dt.datetime.now(dt.UTC) - at).total_seconds()


class Store:
    """Typed access to the state database; safe to share between worker threads."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite and url.startswith("sqlite:///"):
            Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(url, pool_pre_ping=not self.is_sqlite)
            if self.is_sqlite:
                event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
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
        self._sql = _DriverSQL(self.engine.dialect.name)
        # SQLite: one kept-open reader connection per thread for the per-order journal read
        # (a pool checkout, and the rollback on its return, cost more than the SELECT).
        self._reader = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()

    @property
    def safe_url(self) -> str:
        """The URL without its password."""
        return (
            self.engine.url.render_as_string(hide_password=True)
            if hasattr(self, "engine")
            else self.url.split("@")[-1]
        )

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
    def _tx(self) -> Iterator[Connection]:
        with self._write_lock, self._begin() as conn:
            with self._deferred_lock:
                deferred, self._deferred = self._deferred, []
            try:
                for write in deferred:
                    write(conn)
            except BaseException:
                with self._deferred_lock:
                    self._deferred[:0] = deferred
                raise
            yield conn

    def flush(self) -> None:
        """Commit the deferred writes now (the runner calls this at the end of every run)."""
        if self._deferred:
            with self._tx():
                pass

    # ------------------------------------------------------------------ runs
    def start_run(self, flow: str, *, dry_run: bool = False, log_file: str = "") -> int:
        """Record a run's start; returns its id."""
        with self._tx() as c:
            res = c.execute(
                insert(runs).values(
                    flow=flow,
                    started_at=_now(),
                    status="running",
                    orders_ok=0,
                    orders_failed=0,
                    orders_skipped=0,
                    dry_run=int(dry_run),
                    log_file=log_file,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]  # one-column PK

    def finish_run(
        self, run_id: int, status: str, ok: int, failed: int, skipped: int, error: str | None = None
    ) -> None:
        """Record a run's end and its counts."""
        with self._tx() as c:
            c.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    ended_at=_now(),
                    status=status,
                    orders_ok=ok,
                    orders_failed=failed,
                    orders_skipped=skipped,
                    error=error,
                )
            )

    def close_abandoned_runs(self, flow: str) -> int:
        """Close the runs of ``flow`` still marked running as ``interrupted``: the caller holds
        the flow's lock, which proves their process is gone. Returns how many."""
        with self._tx() as c:
            return int(
                c.execute(
                    update(runs)
                    .where(runs.c.flow == flow, runs.c.status == "running")
                    .values(
                        status="interrupted",
                        ended_at=_now(),
                        error="the process running it ended before the run did (killed?)",
                    )
                ).rowcount
            )

    def list_runs(self, flow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs, newest first."""
        q = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if flow:
            q = q.where(runs.c.flow == flow)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    # --------------------------------------------------------------- journal
    def entry(self, flow: str, number: str) -> JournalEntry | None:
        """The journal row of one order, or None when never seen."""
        with self._read_cursor() as cur:
            cur.execute(self._sql.select_entry, self._sql.row({"k_flow": flow, "k_number": number}))
            row = cur.fetchone()
            names = [d[0] for d in cur.description or ()]
        if row is None:
            return None
        m = dict(zip(names, row, strict=True))
        return JournalEntry(
            flow=m["flow"],
            order_number=m["order_number"],
            order_pk=m["order_pk"],
            state=m["state"],
            attempts=m["attempts"],
            next_try=m["next_try"],
            error_kind=m["error_kind"],
            last_error=m["last_error"],
            erp_ref=m["erp_ref"],
            request=_loads(m["request_json"]),
            response=_loads(m["response_json"]),
            updated_at=self._sql.timestamp(m["updated_at"]),
        )

    def record(
        self,
        flow: str,
        number: str,
        run_id: int | None,
        state: str,
        message: str = "",
        *,
        earlier: Iterable[Transition] = (),
        log: Mapping[str, str] | None = None,
        defer: bool = False,
        **fields: Any,
    ) -> None:
        """Move an order to ``state`` and append its events, in one transaction.

        ``defer``: do not wait for a commit of its own; the change rides on the next
        transaction of any thread (group commit), or is committed once it has waited
        ``DEFER_SECONDS``, or by :meth:`flush`. Only for changes whose loss
        in a crash is harmless (``done``: the order stays ``sent`` and resumes after the write).

        ``earlier``: transitions made in memory since the last durable change; each gets its
        event, and their fields are applied under this one's. ``log``: the order's ``log.``
        attributes, stored in the same transaction. ``fields``: order_pk, attempts, next_try,
        error_kind, last_error, erp_ref, and ``request``/``response`` (stored as JSON; pass
        them already redacted), or ``request_json``/``response_json`` as that JSON text.
        """
        now = _now()
        earlier = list(earlier)
        values: dict[str, Any] = {}
        for t in earlier:
            values.update(t.fields)
        values.update(fields)
        for k in ("request", "response"):
            if k in values:
                values[f"{k}_json"] = json.dumps(values.pop(k), ensure_ascii=False, default=str)
        values.update(state=state, updated_at=now, run_id=run_id)
        key = {"k_flow": flow, "k_number": number}
        rows = [_event_row(flow, number, run_id, t.state, t.message, t.at) for t in earlier] + [
            _event_row(flow, number, run_id, state, message, now)
        ]

        def write(c: Connection) -> None:
            sql = self._sql
            cur = c.connection.cursor()
            try:
                cur.execute(sql.update_entry(tuple(values)), sql.row({**values, **key}))
                if cur.rowcount == 0:
                    values.setdefault("attempts", 0)
                    row = {**values, "flow": flow, "order_number": number}
                    cur.execute(sql.insert_entry(tuple(row)), sql.row(row))
                cur.executemany(sql.insert_event, [sql.row(r) for r in rows])
                if log:
                    cur.executemany(
                        sql.insert_log,
                        [sql.row(r) for r in _log_rows(flow, number, run_id, now, log)],
                    )
            finally:
                cur.close()

        if defer:
            with self._deferred_lock:
                if not self._deferred:
                    self._deferred_since = time.monotonic()
                self._deferred.append(write)
                due = time.monotonic() - self._deferred_since >= DEFER_SECONDS
            if due:  # nobody else committed for a while: do not let the window grow
                self.flush()
            return
        with self._tx() as c:
            write(c)

    def add_event(
        self, flow: str, number: str | None, run_id: int | None, state: str, message: str
    ) -> None:
        """An event that does not change the journal (a skip, a note)."""
        with self._tx() as c:
            _insert_event(c, flow, number, run_id, state, message)

    def exported(self, flow: str, number: str, connector: str) -> int | None:
        """The run that exported order ``number`` through ``connector`` (test mode aside)."""
        q = (
            select(events.c.run_id)
            .where(
                events.c.flow == flow,
                events.c.order_number == number,
                events.c.state == "Exported",
                events.c.message.startswith(f"{connector}: ", autoescape=True),
                ~events.c.message.endswith("(test mode)"),
            )
            .limit(1)
        )
        with self.engine.connect() as c:
            row = c.execute(q).first()
        return None if row is None else int(row[0] or 0)

    def states(self, flow: str, numbers: Iterable[str]) -> dict[str, str]:
        """Journal states of the given orders (absent ones left out)."""
        wanted = list(numbers)
        out: dict[str, str] = {}
        with self.engine.connect() as c:
            for i in range(0, len(wanted), 500):
                q = select(journal.c.order_number, journal.c.state).where(
                    journal.c.flow == flow, journal.c.order_number.in_(wanted[i : i + 500])
                )
                out.update({str(n): str(s) for n, s in c.execute(q)})
        return out

    def watermark(self, flow: str) -> str | None:
        """The flow's delta-polling watermark, or None before its first run."""
        with self.engine.connect() as c:
            value = c.execute(
                select(watermarks.c.value).where(watermarks.c.flow == flow)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def set_watermark(self, flow: str, value: str) -> None:
        """Move the flow's watermark (the caller decides it is safe)."""
        with self._tx() as c:
            done = c.execute(
                update(watermarks)
                .where(watermarks.c.flow == flow)
                .values(value=value, updated_at=_now())
            ).rowcount
            if not done:
                c.execute(insert(watermarks).values(flow=flow, value=value, updated_at=_now()))

    def add_log(self, flow: str, number: str, run_id: int | None, attrs: Mapping[str, str]) -> None:
        """Store an order's ``log.`` attributes at the end of its execution."""
        if not attrs:
            return
        with self._tx() as c:
            c.execute(_INSERT_LOG, _log_rows(flow, number, run_id, _now(), attrs))

    def order_history(
        self, number: str, flow: str | None = None
    ) -> dict[str, list[dict[str, Any]]]:
        """Journal rows, events and ``log.`` attributes of one order, oldest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as c:
            for name, table, order in (
                ("journal", journal, journal.c.flow),
                ("events", events, events.c.id),
                ("log", order_log, order_log.c.id),
            ):
                q = select(table).where(table.c.order_number == number).order_by(order)
                if flow:
                    q = q.where(table.c.flow == flow)
                out[name] = [dict(r._mapping) for r in c.execute(q)]
        return out

    def in_state(self, state: str, flow: str | None = None) -> list[dict[str, Any]]:
        """Journal rows in ``state`` (of one flow when given), oldest change first."""
        q = select(journal).where(journal.c.state == state).order_by(journal.c.updated_at)
        if flow:
            q = q.where(journal.c.flow == flow)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def flows_of(self, number: str) -> list[str]:
        """The flows whose journal knows order ``number``."""
        q = select(journal.c.flow).where(journal.c.order_number == number).order_by(journal.c.flow)
        with self.engine.connect() as c:
            return [str(f) for (f,) in c.execute(q)]

    def count_states(self, flow: str) -> dict[str, int]:
        """How many orders of ``flow`` are in each journal state."""
        q = text("SELECT state, COUNT(*) FROM journal WHERE flow = :f GROUP BY state")
        with self.engine.connect() as c:
            return {str(s): int(n) for s, n in c.execute(q, {"f": flow})}

    # ----------------------------------------------------------------- locks
    @contextlib.contextmanager
    def flow_lock(self, flow: str) -> Iterator[None]:
        """Hold the flow's run lock; FatalError when another process holds it.

        SQLite: an exclusive ``flock`` on a file beside the database (the kernel drops it when
        the holder dies). PostgreSQL: a session-level ``pg_try_advisory_lock``.
        """
        if self.is_sqlite:
            db = Path(self.url[len("sqlite:///") :]) if self.url.startswith("sqlite:///") else None
            lock_dir = db.parent if db else Path.cwd()
            path = lock_dir / f".{flow}.lock"
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    raise FatalError(
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
        with self.engine.connect() as c:
            got = c.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            if not got:
                raise FatalError(f"flow {flow!r} is already running in another process")
            try:
                yield
            finally:
                c.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            with self.engine.connect() as c:
                c.execute(text("SELECT 1"))
            return True
        except SQLAlchemyError:
            return False

    @contextlib.contextmanager
    def _read_cursor(self) -> Iterator[Any]:
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
        if not self.is_sqlite or not self.engine.url.database:
            return None
        conn: sqlite3.Connection | None = getattr(self._reader, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.engine.url.database, isolation_level=None, check_same_thread=False
            )
            conn.execute("PRAGMA busy_timeout=10000")
            self._reader.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Commit what is deferred; release the connection pool."""
        self.flush()
        with self._readers_lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()
        self._reader = threading.local()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self.engine.dispose()


class _DriverSQL:
    """The ledger's hot statements as the driver's own SQL, run on the DBAPI cursor of the
    current transaction: SQLAlchemy Core's per-execute work (compile cache, parameter and
    result processing) cost more CPU per order than the statements themselves. Written for
    the two dialects the store supports; values are stored exactly as SQLAlchemy stores them,
    so every other query reads them back unchanged."""

    def __init__(self, dialect: str) -> None:
        self.pg = dialect == "postgresql"
        self._updates: dict[tuple[str, ...], str] = {}
        self._inserts: dict[tuple[str, ...], str] = {}
        cols = "flow, order_number, run_id, at, state, message"
        self.insert_event = self._q(f"INSERT INTO events ({cols}) VALUES ({self._ph(cols)})")
        cols = "flow, order_number, run_id, at, key, value"
        self.insert_log = self._q(f"INSERT INTO order_log ({cols}) VALUES ({self._ph(cols)})")
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

    def timestamp(self, value: Any) -> dt.datetime:
        """A timestamp read back (SQLite gives the text SQLAlchemy wrote)."""
        return dt.datetime.fromisoformat(value) if isinstance(value, str) else value


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _event_row(
    flow: str, number: str | None, run_id: int | None, state: str, message: str, at: dt.datetime
) -> dict[str, Any]:
    return {
        "flow": flow,
        "order_number": number,
        "run_id": run_id,
        "at": at,
        "state": state,
        "message": message,
    }


def _insert_event(
    c: Connection, flow: str, number: str | None, run_id: int | None, state: str, message: str
) -> None:
    c.execute(_INSERT_EVENT, _event_row(flow, number, run_id, state, message, _now()))


def _log_rows(
    flow: str, number: str, run_id: int | None, at: dt.datetime, attrs: Mapping[str, str]
) -> list[dict[str, Any]]:
    return [
        {"flow": flow, "order_number": number, "run_id": run_id, "at": at, "key": k, "value": v}
        for k, v in attrs.items()
    ]


def _loads(value: str | None) -> Any:
    return json.loads(value) if value else None
