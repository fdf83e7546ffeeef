"""Orders that events asked for, kept until a run of their flow takes them.

An accepted event is a row here before its 202 goes out, so it survives a restart and is
shared by every daemon on one database. A run claims the waiting rows of its flow (its run id
on them) and deletes them once it has handled them; rows claimed by a run that died are given
back when the flow's lock is next taken (holding it proves that run is gone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import delete, func, insert, select, update

from integrator.state.clock import now
from integrator.state.schema import pending_events

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["PendingEvents"]


class PendingEvents:
    """The ``pending_events`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, flow: str, order_id: str) -> None:
        """Queue ``order_id`` for a run of ``flow`` (committed before this returns)."""
        with self.store.transaction() as c:
            c.execute(
                insert(pending_events).values(flow=flow, order_id=order_id, received_at=now())
            )

    def waiting(self, flow: str) -> int:
        """How many orders of ``flow`` wait for a run."""
        q = select(func.count()).where(
            pending_events.c.flow == flow, pending_events.c.run_id.is_(None)
        )
        with self.store.engine.connect() as c:
            return int(c.execute(q).scalar() or 0)

    def flows_waiting(self) -> list[str]:
        """The flows with orders waiting."""
        q = select(pending_events.c.flow).where(pending_events.c.run_id.is_(None)).distinct()
        with self.store.engine.connect() as c:
            return [str(f) for (f,) in c.execute(q)]

    def claim(self, flow: str, run_id: int, limit: int = 500) -> list[str]:
        """Take up to ``limit`` waiting orders of ``flow`` for run ``run_id`` (oldest first,
        each order once)."""
        with self.store.transaction() as c:
            rows = c.execute(
                select(pending_events.c.id, pending_events.c.order_id)
                .where(pending_events.c.flow == flow, pending_events.c.run_id.is_(None))
                .order_by(pending_events.c.id)
                .limit(limit)
            ).all()
            if not rows:
                return []
            c.execute(
                update(pending_events)
                .where(pending_events.c.id.in_([r[0] for r in rows]))
                .values(run_id=run_id)
            )
        return list(dict.fromkeys(str(r[1]) for r in rows))

    def done(self, flow: str, run_id: int) -> None:
        """The run has handled what it claimed."""
        with self.store.transaction() as c:
            c.execute(
                delete(pending_events).where(
                    pending_events.c.flow == flow, pending_events.c.run_id == run_id
                )
            )

    def release(self, flow: str, run_id: int) -> None:
        """The run stopped before it handled what it claimed: give it back."""
        with self.store.transaction() as c:
            c.execute(
                update(pending_events)
                .where(pending_events.c.flow == flow, pending_events.c.run_id == run_id)
                .values(run_id=None)
            )

    def release_abandoned(self, flow: str) -> int:
        """Give back what runs of ``flow`` claimed and never finished (the caller holds the
        flow's lock, so no run of it is alive)."""
        with self.store.transaction() as c:
            return int(
                c.execute(
                    update(pending_events)
                    .where(pending_events.c.flow == flow, pending_events.c.run_id.is_not(None))
                    .values(run_id=None)
                ).rowcount
            )
