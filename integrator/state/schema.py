"""Tables of the state store (SQLAlchemy Core), at the latest schema version.

``migrations.py`` brings a store written by an earlier release up to this version.
"""

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

__all__ = [
    "alarm_notices",
    "alarm_states",
    "deliveries",
    "events",
    "journal",
    "leases",
    "metadata",
    "order_log",
    "pending_events",
    "runs",
    "schema_version",
    "watermarks",
]

metadata = MetaData()

runs = _Table(
    "runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False, index=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("status", String(20), nullable=False),  # RunStatus: running, ok, partial, ...
    Column("orders_ok", Integer, nullable=False, default=0),
    Column("orders_failed", Integer, nullable=False, default=0),
    Column("orders_skipped", Integer, nullable=False, default=0),
    Column("dry_run", Integer, nullable=False, default=0),
    Column("error", Text),
    Column("log_file", Text),
    Column("skipped_json", Text),  # {reason: count} of the skipped orders (v2)
    # the age of the oldest unsent order a whole read of the source saw (0: none; NULL: the run
    # did not read the whole list) (v3)
    Column("oldest_unsent_seconds", Float),
)

# One row per (flow, order): where that order stands (ledger.State). Only the ledger writes it.
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
    Column("request_json", Text),  # the ERP request as sent, kept from `sending` on
    Column("response_json", Text),  # the ERP answer as received, kept from `sent` on
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("target_id", String(200)),  # the ConnectorId the write went to (v2)
    Column("held_state", String(20)),  # quarantined: the state it was held in (v2)
    # the write in `sending` carried an idempotency key, or sets state: a resend is harmless
    # (what its flow said when it was sent, not what the flow says now) (v2)
    Column("repeatable", Integer, nullable=False, default=0, server_default="0"),
    # an order number across flows (the console's search), and counts by state per flow (v3)
    Index("ix_journal_number", "order_number"),
    Index("ix_journal_flow_state", "flow", "state"),
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
    Column("fact", String(30)),  # the ledger fact behind a journal change (v2)
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

# Delta-polling sources: the last modification time read up to, per flow. Advanced only past
# orders that are done.
watermarks = _Table(
    "watermarks",
    metadata,
    Column("flow", String(200), primary_key=True),
    Column("value", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Deliveries other than the flow's write: one row per export of an order through a connector
# (v2). The write's target is the journal's target_id.
deliveries = _Table(
    "deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False),
    Column("order_number", String(100), nullable=False),
    Column("run_id", Integer, ForeignKey("runs.id")),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("kind", String(20), nullable=False),  # export
    Column("connector", String(200), nullable=False),
    Column("connector_id", String(200), nullable=False, default=""),
    Column("note", Text),
    Index("ix_deliveries_order", "flow", "order_number"),
)

# Orders an event asked for, not yet run (v2): kept until a run of the flow has taken them, so
# an accepted event survives a restart and is shared by daemons on one database.
pending_events = _Table(
    "pending_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False),
    Column("order_id", String(200), nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("run_id", Integer),  # the run that took it (NULL: waiting)
    Index("ix_pending_flow", "flow", "run_id"),
)

# Alarms (v3): where each alarm of each flow stands, and what was last told about it. Written
# by the one evaluator that holds the ``alarms`` lease, each change compared-and-set on
# ``version``.
alarm_states = _Table(
    "alarm_states",
    metadata,
    Column("flow", String(200), primary_key=True),
    Column("alarm", String(200), primary_key=True),
    Column("state", String(10), nullable=False),  # ok, firing
    Column("since", Float, nullable=False),  # unix time of the last change of state
    Column("value", Float),  # what the condition measured at the last evaluation
    Column("message", Text),
    Column("evaluated_at", Float, nullable=False),
    Column("notified_state", String(10)),  # the state the last notice told (NULL: none)
    Column("notified_at", Float),  # unix time of the last notice sent
    Column("version", Integer, nullable=False, default=0),
)

# Every notice sent or tried (v3), newest by id.
alarm_notices = _Table(
    "alarm_notices",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("flow", String(200), nullable=False),
    Column("alarm", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("kind", String(10), nullable=False),  # firing, reminder, recovered
    Column("notifier", String(200), nullable=False),
    Column("ok", Integer, nullable=False),
    Column("detail", Text),  # why it failed (masked), or empty
    Index("ix_alarm_notices_flow", "flow", "alarm"),
)

# Leases (v3): one holder at a time for a job shared by processes on one store (``alarms``).
leases = _Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(200), nullable=False),
    Column("expires_at", Float, nullable=False),  # unix time
)

schema_version = _Table(
    "schema_version",
    metadata,
    Column("version", Integer, nullable=False),
)
