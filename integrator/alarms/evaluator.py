"""The alarms' evaluator of a long-running process: the daemon and the standalone console.

One place for the evaluation loop: a thread evaluates every alarm at once and then every
``interval`` seconds (the daemon also asks after each run of a flow, :meth:`evaluate`), one
evaluation at a time in the process, under the store's lease (``store.Lease``), which it
keeps and renews for ``max(3 x interval, 30 s)``. So several daemons, or a daemon and
consoles, over one store take turns: one of them evaluates and notifies, the others find the
lease held and do nothing; when the holder dies, the lease runs out and another takes over.
:meth:`stop` ends the loop and gives the lease up, so another process takes over at its next
tick.

Light on purpose: the engine, the store's tables and SQLAlchemy are imported when it first
evaluates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from integrator.alarms.config import ALARM_INTERVAL

if TYPE_CHECKING:
    from integrator.alarms.engine import Evaluation
    from integrator.alarms.store import Lease
    from integrator.config.model import AppConfig, FlowConfig
    from integrator.state.store import Store

__all__ = ["ALARM_INTERVAL", "Evaluator", "Subject"]

log = structlog.get_logger("integrator.alarms")

# what to evaluate now: the configuration (its notifiers), every flow, the store; None: nothing
Subject = tuple["AppConfig", Sequence["FlowConfig"], "Store"]


class Evaluator:
    """Evaluates ``subject()``'s alarms on a timer and on demand, under the store's lease.

    ``on_states``: called after each evaluation (whoever holds the lease) with every declared
    alarm's state as the store holds it, ``(flow, alarm, firing)`` (the daemon's gauges)."""

    def __init__(
        self,
        interval: float,
        subject: Callable[[], Subject | None],
        on_states: Callable[[list[tuple[str, str, bool]]], None] | None = None,
        stop_seconds: float = 5.0,
    ) -> None:
        self.interval = interval
        self.lease_seconds = max(3 * interval, 30.0)
        self.subject, self.on_states = subject, on_states
        self.stop_seconds = stop_seconds  # the most stop() waits for an evaluation under way
        self._lock = threading.Lock()  # one evaluation at a time in this process
        self._stopped = threading.Event()
        self._lease: Lease | None = None
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> str | None:
        """This process's name in the lease (None before the first evaluation)."""
        return None if self._lease is None else self._lease.holder

    def start(self) -> None:
        """Evaluate now, then every ``interval`` seconds, in a thread of its own."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="alarms", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self.evaluate()
            if self._stopped.wait(self.interval):
                return

    def evaluate(self, flow: str | None = None) -> Evaluation | None:
        """Evaluate the alarms (of ``flow``; all of them when None) if this process gets the
        lease; None when there was nothing to do or it failed (logged). Never raises."""
        try:
            with self._lock:
                return self._evaluate(flow)
        except Exception as exc:  # noqa: BLE001 - alarms must never stop their process
            log.error("alarms_failed", error=f"{type(exc).__name__}: {exc}")
            return None

    def _evaluate(self, flow: str | None) -> Evaluation | None:
        if self._stopped.is_set():  # checked under the lock: stop() may have given it up
            return None
        subject = self.subject()
        if subject is None:
            return None
        from integrator.alarms.engine import evaluate
        from integrator.alarms.store import AlarmStore, Lease

        app, flows, store = subject
        if self._lease is None or self._lease.store is not store:
            self._give_up()  # a reload changed the store: free the old one's lease
            self._lease = Lease(store)
        chosen = [f for f in flows if flow in (None, f.name)]
        done = None
        if any(f.alarms for f in chosen):
            done = evaluate(app, chosen, store, lease=self._lease, lease_seconds=self.lease_seconds)
            if not done.held:
                log.debug("alarms_elsewhere", holder=done.holder)
        if self.on_states is not None:
            declared = {(f.name, a.name) for f in flows for a in f.alarms}
            self.on_states(
                [
                    (r.flow, r.alarm, r.state == "firing")
                    for r in AlarmStore(store).states()
                    if (r.flow, r.alarm) in declared
                ]
            )
        return done

    def stop(self) -> None:
        """End the loop and give the lease up (another process takes over at its next tick).

        Waits up to ``stop_seconds`` for an evaluation under way (a slow notifier); after
        that the lease is given up anyway, and the evaluation, which checks the lease before
        each alarm, stops at the next one."""
        self._stopped.set()
        deadline = time.monotonic() + self.stop_seconds
        if self._thread is not None:
            self._thread.join(self.stop_seconds)
        got = self._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))
        try:
            self._give_up()
        finally:
            if got:
                self._lock.release()

    def _give_up(self) -> None:
        if self._lease is None:
            return
        try:
            self._lease.release()
        except Exception as exc:  # noqa: BLE001 - the store may be gone already
            log.warning("alarm_lease_not_released", error=f"{type(exc).__name__}: {exc}")

    def describe(self) -> dict[str, Any]:
        """For the console: how often, and this process's name in the lease."""
        return {"interval_seconds": self.interval, "this_process": self.holder}
