"""Live progress of the runs in progress, in memory, in the process that runs them.

The daemon gives each run a ``LiveHooks`` (a ``Metrics`` that passes every hook on to the
daemon's Prometheus metrics and also publishes here): the run's id when it starts, the
listing's count, each order as it ends (``order_ended``, the runner's ``on_order``) and the
run's end. What is published is kept in memory only: a few counters and the last
``buffer`` orders of each run (a bounded deque), so live progress costs no store commit, and
a run of a million orders holds no more than a run of ten. The console of the same process
reads it (``LiveRuns.snapshot``); a standalone console has none and says so.

This module imports neither a web framework nor the store.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any

from integrator.metrics import Metrics

if TYPE_CHECKING:
    from integrator.pipeline.runner import Outcome

__all__ = ["BUFFER", "LiveHooks", "LiveRun", "LiveRuns"]

BUFFER = 200  # the most orders a run keeps in memory (its latest)
KEEP_ENDED = 20  # ended runs kept a while, for a page that polls once more after the end
MESSAGE_CHARS = 500  # an order's message is cut to this many characters


class LiveRun:
    """One run's progress; changed under its registry's lock."""

    def __init__(self, flow: str, run_id: int, buffer: int) -> None:
        self.flow, self.run_id = flow, run_id
        self.started_at = dt.datetime.now(dt.UTC)
        self.started = time.monotonic()
        self.total: int | None = None
        self.ok = self.failed = self.skipped = 0
        self.seq = itertools.count(1)
        self.last_seq = 0
        self.orders: deque[dict[str, Any]] = deque(maxlen=buffer)
        self.status = "running"
        self.ended_seconds: float | None = None

    def as_json(self, after: int = 0, limit: int | None = None) -> dict[str, Any]:
        seconds = self.ended_seconds
        if seconds is None:
            seconds = time.monotonic() - self.started
        return {
            "run": self.run_id,
            "flow": self.flow,
            "status": self.status,
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "seconds": round(seconds, 3),
            "total": self.total,
            "ok": self.ok,
            "failed": self.failed,
            "skipped": self.skipped,
            "done": self.ok + self.failed + self.skipped,
            "last_seq": self.last_seq,
            "kept": self.orders.maxlen,
            # newest first; ``after``: only those published after that sequence number;
            # ``limit``: the newest that many (the page shows fewer than the buffer keeps)
            "orders": list(
                itertools.islice((o for o in reversed(self.orders) if o["seq"] > after), limit)
            ),
        }


class LiveRuns:
    """Every live run of this process, by run id; thread-safe."""

    def __init__(self, buffer: int = BUFFER, keep_ended: int = KEEP_ENDED) -> None:
        self.buffer, self.keep_ended = buffer, keep_ended
        self._lock = threading.Lock()
        self._running: dict[int, LiveRun] = {}
        self._ended: OrderedDict[int, LiveRun] = OrderedDict()

    def hooks(self, inner: Metrics, flow: str) -> LiveHooks:
        """The hooks of one run of ``flow`` (a daemon job): they publish here, and pass
        everything on to ``inner``."""
        return LiveHooks(self, inner, flow)

    # ----------------------------------------------------------- writing
    def _begin(self, flow: str, run_id: int) -> LiveRun:
        run = LiveRun(flow, run_id, self.buffer)
        with self._lock:
            self._running[run_id] = run
        return run

    def _listed(self, run: LiveRun, count: int) -> None:
        with self._lock:
            run.total = count

    def _order(self, run: LiveRun, outcome: Outcome) -> None:
        at = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with self._lock:
            if outcome.status == "ok":
                run.ok += 1
            elif outcome.status == "skipped":
                run.skipped += 1
            else:
                run.failed += 1
            run.last_seq = next(run.seq)
            run.orders.append(
                {
                    "seq": run.last_seq,
                    "number": outcome.number,
                    "status": outcome.status,
                    "state": outcome.state,
                    "message": (outcome.message or outcome.reason)[:MESSAGE_CHARS],
                    "at": at,
                }
            )

    def _end(self, run: LiveRun, status: str) -> None:
        with self._lock:
            run.status = status
            run.ended_seconds = time.monotonic() - run.started
            self._running.pop(run.run_id, None)
            self._ended[run.run_id] = run
            while len(self._ended) > self.keep_ended:
                self._ended.popitem(last=False)

    # ----------------------------------------------------------- reading
    def snapshot(
        self, run_id: int, after: int = 0, limit: int | None = None
    ) -> dict[str, Any] | None:
        """A run's progress (running, or ended a short while ago), or None; ``limit``: at
        most that many of its latest orders."""
        with self._lock:
            run = self._running.get(run_id) or self._ended.get(run_id)
            return None if run is None else run.as_json(after, limit)

    def running(self) -> list[dict[str, Any]]:
        """The runs in progress, without their orders."""
        with self._lock:
            found = [r.as_json() for r in self._running.values()]
        for r in found:
            del r["orders"]
        return sorted(found, key=lambda r: int(r["run"]))


class LiveHooks(Metrics):
    """One run's hooks: each passed on to ``inner``, and the run's progress published.

    A daemon job makes one per run (``LiveRuns.hooks``), so the hooks know their run; call
    ``close`` when the job ends, whatever happened."""

    def __init__(self, registry: LiveRuns, inner: Metrics, flow: str) -> None:
        self.registry, self.inner, self.flow = registry, inner, flow
        self.live: LiveRun | None = None
        self._pending_total: int | None = None

    # what this run publishes
    def run_started(self, flow: str, run_id: int) -> None:
        self.inner.run_started(flow, run_id)
        self.live = self.registry._begin(flow, run_id)
        if self._pending_total is not None:
            self.registry._listed(self.live, self._pending_total)

    def listed(self, flow: str, count: int) -> None:
        self.inner.listed(flow, count)
        if self.live is None:
            self._pending_total = count
        else:
            self.registry._listed(self.live, count)

    def order_ended(self, outcome: Outcome) -> None:
        """The runner's ``on_order``: one order ended (ok, failed or skipped)."""
        if self.live is not None:
            self.registry._order(self.live, outcome)

    def close(self, status: str) -> None:
        """The run ended with ``status`` (or never started: nothing to do)."""
        if self.live is not None and self.live.status == "running":
            self.registry._end(self.live, status)

    # passed on unchanged
    def order(self, flow: str, outcome: str) -> None:
        self.inner.order(flow, outcome)

    def stage(self, flow: str, stage: str, seconds: float) -> None:
        self.inner.stage(flow, stage, seconds)

    def http_status(self, connector: str, status: int) -> None:
        self.inner.http_status(connector, status)

    def run(self, flow: str, status: str) -> None:
        self.inner.run(flow, status)

    def oldest_unsent(self, flow: str, age_seconds: float) -> None:
        self.inner.oldest_unsent(flow, age_seconds)

    def journal_states(self, flow: str, counts: dict[str, int]) -> None:
        self.inner.journal_states(flow, counts)

    def reconciled(self, flow: str, counts: dict[str, int]) -> None:
        self.inner.reconciled(flow, counts)

    def alarms(self, states: list[tuple[str, str, bool]]) -> None:
        self.inner.alarms(states)
