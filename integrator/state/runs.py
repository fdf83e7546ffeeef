"""Runs: one row per run of a flow, its end status and its counts.

Every run gets an end status, written in a ``finally``; a run whose process died is closed as
``interrupted`` by the next run that takes the flow's lock (holding it proves the old holder is
gone).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert, select, update

from integrator.state.clock import now
from integrator.state.schema import runs

if TYPE_CHECKING:
    from integrator.state.store import Store

__all__ = ["RunStatus", "Runs"]


class RunStatus(StrEnum):
    """How a run ended (``running`` while it goes on)."""

    RUNNING = "running"
    OK = "ok"  # every order went through (or was skipped for a reason)
    PARTIAL = "partial"  # some orders failed
    FAILED = "failed"  # the run stopped: login refused, circuit open, store down, ...
    INTERRUPTED = "interrupted"  # a signal, or the process died


class Runs:
    """The ``runs`` table."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def start(self, flow: str, *, dry_run: bool = False, log_file: str = "") -> int:
        """Record a run's start; returns its id."""
        with self.store.transaction(deferred=False) as c:
            res = c.execute(
                insert(runs).values(
                    flow=flow,
                    started_at=now(),
                    status=RunStatus.RUNNING,
                    orders_ok=0,
                    orders_failed=0,
                    orders_skipped=0,
                    dry_run=int(dry_run),
                    log_file=log_file,
                )
            )
            return int(res.inserted_primary_key[0])  # type: ignore[index]  # one-column PK

    def finish(
        self,
        run_id: int,
        status: RunStatus,
        ok: int,
        failed: int,
        skipped: Mapping[str, int],
        error: str | None = None,
        oldest_unsent_seconds: float | None = None,
    ) -> None:
        """Record a run's end, its counts, why orders were skipped, and the age of the oldest
        unsent order the run saw in the whole source list (None: not measured)."""
        with self.store.transaction(deferred=False) as c:
            c.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    ended_at=now(),
                    status=status,
                    orders_ok=ok,
                    orders_failed=failed,
                    orders_skipped=sum(skipped.values()),
                    skipped_json=json.dumps(dict(skipped)) if skipped else None,
                    error=error,
                    oldest_unsent_seconds=oldest_unsent_seconds,
                )
            )

    def close_abandoned(self, flow: str) -> int:
        """Close the runs of ``flow`` still marked running as ``interrupted``. Only for a
        caller holding the flow's lock. Returns how many."""
        with self.store.transaction(deferred=False) as c:
            return int(
                c.execute(
                    update(runs)
                    .where(runs.c.flow == flow, runs.c.status == RunStatus.RUNNING)
                    .values(
                        status=RunStatus.INTERRUPTED,
                        ended_at=now(),
                        error="the process running it ended before the run did (killed?)",
                    )
                ).rowcount
            )

    def latest(self, flow: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs, newest first."""
        q = select(runs).order_by(runs.c.id.desc()).limit(limit)
        if flow:
            q = q.where(runs.c.flow == flow)
        with self.store.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q)]

    def flows(self) -> list[str]:
        """Every flow that has runs."""
        with self.store.engine.connect() as c:
            return [str(f) for (f,) in c.execute(select(runs.c.flow).distinct())]
