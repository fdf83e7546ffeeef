"""Tables of the state store (SQLAlchemy Core): runs, journal, events, log attributes."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy import Table as _Table

__all__ = ["events", "journal", "metadata", "order_log", "runs", "watermarks"]

metadata = MetaData()

runs = _Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),  # running, ok, partial, failed, interrupted
    Column("orders_ok", Integer, nullable=False, default=0),
    Column("orders_failed", Integer, nullable=False, default=0),
    Column("orders_skipped", Integer, nullable=False, default=0),
    Column("dry_run", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("log_file", Text),
)

# One row per (flow, order): where that order stands. States:
# read, checked, sending, sent, marked, done, failed, quarantined.
journal = _Table(
    "journal",
    metadata,
    Column("flow", String(200), primary_key=True),
    Column("order_number", String(100), primary_key=True),
    Column("order_pk", String(50)),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_try", Float),  # unix time; NULL = due now
    Column("error_kind", String(20)),
    Column("last_error", Text),
    Column("erp_ref", String(200)),
    Column("request_json", Text),  # redacted ERP request, kept from `sending` on
    Column("response_json", Text),  # redacted ERP answer, kept from `sent` on
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
)

events = _Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False),
    Column("order_number", String(100)),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("state", String(20), nullable=False),
    Column("message", Text),
    Index("ix_events_order", "flow", "order_number"),
)

order_log = _Table(
    "order_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False),
    Column("order_number", String(100), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("key", String(200), nullable=False),
    Column("value", Text),
    Index("ix_order_log_order", "flow", "order_number"),
)

# Delta-polling sources (Omnium): the last modification time read up to, per flow. Advanced
# only past orders that are done.
watermarks = _Table(
    "watermarks",
    metadata,
    Column("flow", String(200), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
