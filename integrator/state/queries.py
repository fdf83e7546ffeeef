"""Read-only views of the store for the operator console and its API.

The console never reads the tables itself: every question it asks is here, each answered by
an index (``ix_journal_number`` for an order number across flows, ``ix_journal_flow_state``
for the counts by state, ``ix_events_order``/``ix_order_log_order``/``ix_deliveries_order``
for an order's timeline, the primary key of ``runs`` for its history). Values are returned as
stored: masking what is shown is the caller's (the console's redactor).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, func, select

from integrator.state.schema import deliveries, events, journal, order_log, runs

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["FlowFigures", "Queries", "RunFilter"]

NOT_OK = ("failed", "partial", "interrupted")  # a run that did not end ok counts as an error


@dataclass(frozen=True)
class FlowFigures:
    """What the dashboard shows of one flow, from its runs and its journal."""

    flow: str
    last_run: dict[str, Any] | None
    window: int  # the runs the rates are over (at most the window asked for)
    error_rate: float | None  # share of those runs that ended failed, partial or interrupted
    average_seconds: float | None  # their mean duration
    oldest_unsent_seconds: float | None  # as the latest run that measured it saw it
    oldest_unsent_run: int | None
    quarantined: int
    states: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {
            "flow": self.flow,
            "last_run": None if self.last_run is None else run_json(self.last_run),
            "window_runs": self.window,
            "error_rate": self.error_rate,
            "average_run_seconds": self.average_seconds,
            "oldest_unsent_seconds": self.oldest_unsent_seconds,
            "oldest_unsent_run": self.oldest_unsent_run,
            "quarantined": self.quarantined,
            "states": self.states,
        }


@dataclass(frozen=True)
class RunFilter:
    """Which runs to list: a flow, a status, started in [since, until), ids below ``before``
    (the next page), at most ``limit``."""

    flow: str | None = None
    status: str | None = None
    since: dt.datetime | None = None
    until: dt.datetime | None = None
    before: int | None = None
    limit: int = 50


def _utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, dt.datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def iso(value: Any) -> str | None:
    """A stored time as ISO 8601 in UTC (None when absent)."""
    at = _utc(value)
    return at.isoformat(timespec="seconds") if at else None


def duration(row: dict[str, Any]) -> float | None:
    """A run's duration in seconds (None while it runs)."""
    start, end = _utc(row.get("started_at")), _utc(row.get("ended_at"))
    return (end - start).total_seconds() if start and end else None


def run_json(row: dict[str, Any]) -> dict[str, Any]:
    """A ``runs`` row as the API shows it (the log file's path is not shown)."""
    skipped = row.get("skipped_json")
    return {
        "id": row["id"],
        "flow": row["flow"],
        "status": row["status"],
        "started_at": iso(row["started_at"]),
        "ended_at": iso(row.get("ended_at")),
        "duration_seconds": duration(row),
        "orders_ok": row["orders_ok"],
        "orders_failed": row["orders_failed"],
        "orders_skipped": row["orders_skipped"],
        "skipped": json.loads(skipped) if skipped else {},
        "dry_run": bool(row.get("dry_run")),
        "error": row.get("error"),
        "oldest_unsent_seconds": row.get("oldest_unsent_seconds"),
    }


class Queries:
    """The console's questions to one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------- flows
    def flow_names(self) -> list[str]:
        """Every flow with runs or journal rows."""
        with self.store.engine.connect() as c:
            names = {str(f) for (f,) in c.execute(select(runs.c.flow).distinct())}
            names |= {str(f) for (f,) in c.execute(select(journal.c.flow).distinct())}
        return sorted(names)

    def flow_figures(self, flows: Iterable[str], window: int = 20) -> list[FlowFigures]:
        """The dashboard's figures of each flow: last run, error rate and average duration
        over its last ``window`` finished runs, the oldest unsent age, the quarantined count."""
        out = []
        with self.store.engine.connect() as c:
            for flow in flows:
                last = c.execute(
                    select(runs).where(runs.c.flow == flow).order_by(runs.c.id.desc()).limit(1)
                ).first()
                recent = [
                    dict(r._mapping)
                    for r in c.execute(
                        select(runs)
                        .where(
                            runs.c.flow == flow,
                            runs.c.status != "running",
                            runs.c.dry_run == 0,
                        )
                        .order_by(runs.c.id.desc())
                        .limit(max(1, window))
                    )
                ]
                measured = c.execute(
                    select(runs.c.id, runs.c.oldest_unsent_seconds)
                    .where(runs.c.flow == flow, runs.c.oldest_unsent_seconds.is_not(None))
                    .order_by(runs.c.id.desc())
                    .limit(1)
                ).first()
                states = {
                    str(s): int(n)
                    for s, n in c.execute(
                        select(journal.c.state, func.count())
                        .where(journal.c.flow == flow)
                        .group_by(journal.c.state)
                    )
                }
                durations = [d for d in map(duration, recent) if d is not None]
                out.append(
                    FlowFigures(
                        flow=flow,
                        last_run=dict(last._mapping) if last is not None else None,
                        window=len(recent),
                        error_rate=(
                            sum(r["status"] in NOT_OK for r in recent) / len(recent)
                            if recent
                            else None
                        ),
                        average_seconds=sum(durations) / len(durations) if durations else None,
                        oldest_unsent_seconds=(
                            float(measured[1]) if measured is not None else None
                        ),
                        oldest_unsent_run=int(measured[0]) if measured is not None else None,
                        quarantined=states.get("quarantined", 0),
                        states=states,
                    )
                )
        return out

    # -------------------------------------------------------------- runs
    def runs(self, f: RunFilter) -> list[dict[str, Any]]:
        """Runs matching ``f``, newest first."""
        q = select(runs).order_by(runs.c.id.desc()).limit(max(1, min(f.limit, 500)))
        if f.flow:
            q = q.where(runs.c.flow == f.flow)
        if f.status:
            q = q.where(runs.c.status == f.status)
        if f.since:
            q = q.where(runs.c.started_at >= f.since)
        if f.until:
            q = q.where(runs.c.started_at < f.until)
        if f.before:
            q = q.where(runs.c.id < f.before)
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def run(self, run_id: int) -> dict[str, Any] | None:
        with self.store.engine.connect() as c:
            row = c.execute(select(runs).where(runs.c.id == run_id)).first()
        return dict(row._mapping) if row is not None else None

    # ------------------------------------------------------------ orders
    def find_orders(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Orders whose number is ``text`` or starts with it, across flows (by the index on
        the number: a range, not a LIKE, so any database uses it)."""
        q = (
            select(
                journal.c.flow,
                journal.c.order_number,
                journal.c.state,
                journal.c.attempts,
                journal.c.updated_at,
            )
            .where(
                and_(
                    journal.c.order_number >= text,
                    journal.c.order_number < text + "\U0010ffff",
                )
            )
            .order_by(journal.c.order_number, journal.c.flow)
            .limit(max(1, min(limit, 500)))
        )
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def timeline(self, number: str) -> dict[str, list[dict[str, Any]]]:
        """One order in every flow that knows it: journal rows (with the ERP request and
        answer as stored), events, ``log.`` attributes and deliveries, oldest first."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.store.engine.connect() as c:
            out["journal"] = [
                dict(r._mapping)
                for r in c.execute(
                    select(journal).where(journal.c.order_number == number).order_by(journal.c.flow)
                )
            ]
            flows = [j["flow"] for j in out["journal"]]
            for name, table in (("events", events), ("log", order_log), ("deliveries", deliveries)):
                out[name] = (
                    [
                        dict(r._mapping)
                        for r in c.execute(
                            select(table)
                            .where(table.c.flow.in_(flows), table.c.order_number == number)
                            .order_by(table.c.id)
                        )
                    ]
                    if flows
                    else []
                )
        return out

    def failures(self, flow: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Failed and quarantined orders grouped by flow, state, error kind and last error,
        the largest groups first, with one example order number each."""
        q = (
            select(
                journal.c.flow,
                journal.c.state,
                journal.c.error_kind,
                journal.c.last_error,
                func.count().label("orders"),
                func.min(journal.c.order_number).label("example"),
                func.max(journal.c.updated_at).label("latest"),
            )
            .where(journal.c.state.in_(("failed", "quarantined")))
            .group_by(journal.c.flow, journal.c.state, journal.c.error_kind, journal.c.last_error)
            .order_by(func.count().desc(), journal.c.flow)
            .limit(max(1, min(limit, 500)))
        )
        if flow:
            q = q.where(journal.c.flow == flow)
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]
