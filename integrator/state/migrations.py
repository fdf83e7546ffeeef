"""Versioned schema migrations: a store written by an earlier release is brought up to date.

Version 1 is the schema of release 0.1.0, which kept no version (a store with a ``journal``
table and no ``schema_version`` table is at version 1). Each later version is a list of steps
run in one transaction, under a lock, so two processes opening one store migrate it once.
A store written by a newer release is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.engine import Engine

from integrator.errors import FatalError
from integrator.state.schema import (
    alarm_notices,
    alarm_states,
    deliveries,
    leases,
    metadata,
    pending_events,
    schema_version,
)

__all__ = ["VERSION", "migrate", "stored_version"]

Step = Callable[[Connection], None]


def _add_column(table: str, column: str, ddl: str) -> Step:
    """``ALTER TABLE … ADD COLUMN``, skipped when the column is there (SQLite runs DDL outside
    the transaction, so a migration cut short must be able to run again)."""

    def step(c: Connection) -> None:
        if column not in {col["name"] for col in inspect(c).get_columns(table)}:
            c.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {ddl}")

    return step


def _add_index(name: str, table: str, columns: str) -> Step:
    """``CREATE INDEX IF NOT EXISTS`` (SQLite and PostgreSQL both take it)."""

    def step(c: Connection) -> None:
        c.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {name} ON {table} ({columns})")

    return step


def _held_states(c: Connection) -> None:
    """Quarantined rows of 0.1.0 did not keep where they were held: infer it. A row whose
    answer was stored had been written (hold it as sent, so a release resumes after the
    write); an ambiguous one was in `sending`; any other had failed before its write."""
    c.execute(
        text(
            "UPDATE journal SET held_state = CASE"
            " WHEN response_json IS NOT NULL AND error_kind IS DISTINCT FROM 'ambiguous'"
            " THEN 'sent' WHEN error_kind = 'ambiguous' THEN 'sending' ELSE 'failed' END"
            " WHERE state = 'quarantined'"
        )
        if c.dialect.name == "postgresql"
        else text(
            "UPDATE journal SET held_state = CASE"
            " WHEN response_json IS NOT NULL AND error_kind IS NOT 'ambiguous' THEN 'sent'"
            " WHEN error_kind = 'ambiguous' THEN 'sending' ELSE 'failed' END"
            " WHERE state = 'quarantined'"
        )
    )


def _exports_as_deliveries(c: Connection) -> None:
    """0.1.0 recorded an export as an event ``Exported`` with the text ``<connector>: <note>``
    (``(test mode)`` when skipped): make each a delivery, so an upgrade exports nothing twice."""
    split = "strpos(message, ': ')" if c.dialect.name == "postgresql" else "instr(message, ': ')"
    c.execute(
        text(
            "INSERT INTO deliveries (flow, order_number, run_id, at, kind, connector, "
            f"connector_id, note) SELECT flow, order_number, run_id, at, 'export', "
            f"substr(message, 1, {split} - 1), '', substr(message, {split} + 2) FROM events "
            f"WHERE state = 'Exported' AND order_number IS NOT NULL AND {split} > 1 "
            "AND message NOT LIKE '%(test mode)'"
        )
    )


MIGRATIONS: dict[int, list[Step]] = {
    # 0.1.0 → 0.2.0: the ledger's table (facts on events, the write's target, the state a
    # quarantined order was held in), exports as deliveries, the event queue, skip reasons.
    2: [
        _add_column("runs", "skipped_json", "TEXT"),
        _add_column("journal", "target_id", "VARCHAR(200)"),
        _add_column("journal", "held_state", "VARCHAR(20)"),
        _add_column("journal", "repeatable", "INTEGER NOT NULL DEFAULT 0"),
        _add_column("events", "fact", "VARCHAR(30)"),
        lambda c: deliveries.create(c, checkfirst=True),
        lambda c: pending_events.create(c, checkfirst=True),
        _held_states,
        _exports_as_deliveries,
    ],
    # 0.2.0 → 0.3.0: the oldest unsent order's age per run; alarms, their notices, leases;
    # indexes for the console's reads (order search across flows, counts by state).
    3: [
        _add_column("runs", "oldest_unsent_seconds", "FLOAT"),
        lambda c: alarm_states.create(c, checkfirst=True),
        lambda c: alarm_notices.create(c, checkfirst=True),
        lambda c: leases.create(c, checkfirst=True),
        _add_index("ix_journal_number", "journal", "order_number"),
        _add_index("ix_journal_flow_state", "journal", "flow, state"),
    ],
}
VERSION = max(MIGRATIONS)


def _version(c: Connection) -> int | None:
    """The store's schema version; None for an empty database."""
    names = set(inspect(c).get_table_names())
    if "journal" not in names:
        return None
    if "schema_version" not in names:
        return 1
    found = c.execute(select(schema_version.c.version)).scalar()
    return int(found) if found is not None else 1


def stored_version(engine: Engine) -> int | None:
    """The store's schema version without changing anything (None: an empty database)."""
    with engine.connect() as c:
        return _version(c)


def migrate(engine: Engine, lock_path: Path | None) -> int:
    """Create the schema in an empty store, or bring an older one up to :data:`VERSION`.

    Returns the version the store was at (0 when it was empty).
    """
    with _lock(engine, lock_path), engine.begin() as c:
        if c.dialect.name == "postgresql":
            key = int.from_bytes(hashlib.blake2b(b"migrate").digest()[:8], "big", signed=True)
            c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
        found = _version(c)
        if found is None:
            metadata.create_all(c)
            c.execute(schema_version.insert().values(version=VERSION))
            return 0
        if found > VERSION:
            raise FatalError(
                f"the state store is at schema version {found}, written by a newer integrator "
                f"(this one knows up to {VERSION}): upgrade integrator, or use another store"
            )
        for version in range(found + 1, VERSION + 1):
            for step in MIGRATIONS[version]:
                step(c)
        if found < VERSION:
            schema_version.create(c, checkfirst=True)
            c.execute(schema_version.delete())
            c.execute(schema_version.insert().values(version=VERSION))
        return found


@contextlib.contextmanager
def _lock(engine: Engine, path: Path | None) -> Iterator[None]:
    """SQLite: an exclusive flock beside the database file (PostgreSQL locks in the
    transaction; an in-memory database has one connection)."""
    if engine.dialect.name != "sqlite" or path is None:
        yield
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
