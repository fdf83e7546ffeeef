"""The circuit breaker: a run stops when one connector fails the same way for N orders in a
row, instead of failing (and retrying) its whole backlog against a system that is down."""

from __future__ import annotations

import threading
from collections.abc import Mapping

from integrator.errors import CircuitOpen

__all__ = ["CircuitBreaker"]


class CircuitBreaker:
    """Counts, across workers and as orders complete, the orders in a row that failed with the
    same failure (timeout, refused connection, 5xx) from the same connector."""

    def __init__(self, thresholds: Mapping[str, int]) -> None:
        self.thresholds = dict(thresholds)  # connector name → N (0: never trips)
        self._lock = threading.Lock()
        self._key: tuple[str, str] | None = None
        self._count = 0
        self.tripped: CircuitOpen | None = None

    def record(self, error: BaseException | None) -> CircuitOpen | None:
        """One order completed (``error`` None: it went through). Returns the CircuitOpen that
        stops the run once a threshold is reached (and from then on)."""
        connector = str(getattr(error, "connector", "") or "")
        failure = str(getattr(error, "failure", "") or "")
        with self._lock:
            if self.tripped is not None:
                return self.tripped
            if not connector or not failure:
                self._key, self._count = None, 0  # a success, or a failure of the order itself
                return None
            key = (connector, failure)
            self._count = self._count + 1 if key == self._key else 1
            self._key = key
            limit = self.thresholds.get(connector, 0)
            if limit and self._count >= limit:
                self.tripped = CircuitOpen(
                    f"circuit open: connector {connector!r} failed with {failure} for "
                    f"{self._count} orders in a row; the run stopped and no order was charged "
                    "(the next run tries again)",
                    connector=connector,
                )
            return self.tripped
