"""Alarm state, notices and the evaluator's lease, in the state store.

The lease: one row per name (``leases``) with its holder and an expiry; taken with one
conditional ``UPDATE`` (free, expired, or already ours), or an ``INSERT`` that the primary key
lets only one process win. Each alarm's row changes by compare-and-set on ``version``, so even a
holder whose lease ran out while it worked cannot tell people twice what another told.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from integrator.state.schema import alarm_notices, alarm_states, leases, runs

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["AlarmRow", "AlarmStore", "Lease", "holder_id"]

LEASE = "alarms"


def holder_id() -> str:
    """Who holds a lease: host, process and a random part (two evaluators in one process)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class AlarmRow:
    """Where one alarm of one flow stands."""

    flow: str
    alarm: str
    state: str  # ok, firing
    since: float
    value: float | None
    message: str
    evaluated_at: float
    notified_state: str | None
    notified_at: float | None
    version: int

    def as_dict(self) -> dict[str, Any]:
        """For JSON (the console, `integrator alarms --json`)."""
        return dict(self.__dict__)


class Lease:
    """A named lease in the store: one holder at a time, until it expires."""

    def __init__(self, store: Store, name: str = LEASE, holder: str | None = None) -> None:
        self.store, self.name = store, name
        self.holder = holder or holder_id()

    def take(self, seconds: float) -> bool:
        """Take or renew the lease for ``seconds``; False when another holds it unexpired."""
        now = time.time()
        with self.store.transaction(deferred=False) as c:
            got = c.execute(
                update(leases)
                .where(
                    leases.c.name == self.name,
                    or_(leases.c.holder == self.holder, leases.c.expires_at <= now),
                )
                .values(holder=self.holder, expires_at=now + seconds)
            ).rowcount
        if got:
            return True
        try:
            with self.store.transaction(deferred=False) as c:
                c.execute(
                    insert(leases).values(
                        name=self.name, holder=self.holder, expires_at=now + seconds
                    )
                )
        except IntegrityError:
            return False  # another took it first
        return True

    def holds(self) -> bool:
        """Whether this holder's lease is unexpired now."""
        row = self.current()
        return row is not None and row[0] == self.holder and row[1] > time.time()

    def current(self) -> tuple[str, float] | None:
        """The holder and expiry (unix time), or None when never taken."""
        with self.store.engine.connect() as c:
            row = c.execute(
                select(leases.c.holder, leases.c.expires_at).where(leases.c.name == self.name)
            ).first()
        return (str(row[0]), float(row[1])) if row else None

    def release(self) -> None:
        """Give the lease up (only if held by this holder)."""
        with self.store.transaction(deferred=False) as c:
            c.execute(
                update(leases)
                .where(leases.c.name == self.name, leases.c.holder == self.holder)
                .values(expires_at=0.0)
            )


class AlarmStore:
    """The alarm tables, and what the conditions read from the runs."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # ------------------------------------------------------------- for the console and the CLI
    def states(self, flow: str | None = None) -> list[AlarmRow]:
        """The current state of every alarm evaluated so far (of ``flow``), by flow and name."""
        q = select(alarm_states).order_by(alarm_states.c.flow, alarm_states.c.alarm)
        if flow is not None:
            q = q.where(alarm_states.c.flow == flow)
        with self.store.engine.connect() as c:
            return [_row(r._mapping) for r in c.execute(q)]

    def notices(self, flow: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The latest notices sent or tried, newest first."""
        q = select(alarm_notices).order_by(alarm_notices.c.id.desc()).limit(limit)
        if flow is not None:
            q = q.where(alarm_notices.c.flow == flow)
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    # ------------------------------------------------------------- for the evaluator
    def get(self, flow: str, alarm: str) -> AlarmRow | None:
        """One alarm's row."""
        with self.store.engine.connect() as c:
            r = c.execute(
                select(alarm_states).where(
                    alarm_states.c.flow == flow, alarm_states.c.alarm == alarm
                )
            ).first()
        return _row(r._mapping) if r else None

    def put(self, new: AlarmRow, expected: AlarmRow | None) -> bool:
        """Write ``new`` if the row is still ``expected`` (None: absent); False when another
        evaluator changed it meanwhile. ``new.version`` is ignored: it becomes expected's + 1."""
        values = new.as_dict()
        if expected is None:
            try:
                with self.store.transaction(deferred=False) as c:
                    c.execute(insert(alarm_states).values({**values, "version": 1}))
            except IntegrityError:
                return False
            return True
        with self.store.transaction(deferred=False) as c:
            return bool(
                c.execute(
                    update(alarm_states)
                    .where(
                        and_(
                            alarm_states.c.flow == new.flow,
                            alarm_states.c.alarm == new.alarm,
                            alarm_states.c.version == expected.version,
                        )
                    )
                    .values({**values, "version": expected.version + 1})
                ).rowcount
            )

    def record_notice(
        self, flow: str, alarm: str, kind: str, notifier: str, ok: bool, detail: str
    ) -> None:
        """Keep what was sent, or why it could not be."""
        with self.store.transaction(deferred=False) as c:
            c.execute(
                insert(alarm_notices).values(
                    flow=flow, alarm=alarm, at=time.time(), kind=kind, notifier=notifier,
                    ok=int(ok), detail=detail,
                )
            )  # fmt: skip

    def forget(self, flow: str, keep: set[str]) -> None:
        """Drop the rows of alarms ``flow`` no longer declares."""
        with self.store.transaction(deferred=False) as c:
            q = alarm_states.delete().where(alarm_states.c.flow == flow)
            if keep:
                q = q.where(alarm_states.c.alarm.not_in(sorted(keep)))
            c.execute(q)

    def finished_runs(self, flow: str, limit: int) -> list[dict[str, Any]]:
        """The latest finished runs of ``flow`` (not running, not dry), newest first."""
        q = (
            select(runs)
            .where(runs.c.flow == flow, runs.c.status != "running", runs.c.dry_run == 0)
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]


def _row(m: Any) -> AlarmRow:
    return AlarmRow(
        flow=str(m["flow"]),
        alarm=str(m["alarm"]),
        state=str(m["state"]),
        since=float(m["since"]),
        value=None if m["value"] is None else float(m["value"]),
        message=str(m["message"] or ""),
        evaluated_at=float(m["evaluated_at"]),
        notified_state=m["notified_state"],
        notified_at=None if m["notified_at"] is None else float(m["notified_at"]),
        version=int(m["version"]),
    )
