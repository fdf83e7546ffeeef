"""Per-host limits shared by every flow in the process, and the retry delays.

A host has at most ``max_in_flight`` requests at a time and at most ``requests_per_second``;
a 429 pauses the whole host (every connector and flow that calls it) until its Retry-After
has passed, not only the request that got it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import random
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

__all__ = ["HostLimiter", "backoff", "limiter_for", "retry_after_seconds"]


class HostLimiter:
    """In-flight and rate limits, and pauses, for one host."""

    def __init__(self, max_in_flight: int = 0, requests_per_second: float = 0.0) -> None:
        self._sem = threading.BoundedSemaphore(max_in_flight) if max_in_flight > 0 else None
        self._interval = 1.0 / requests_per_second if requests_per_second > 0 else 0.0
        self._lock = threading.Lock()
        self._next_start = 0.0
        self._paused_until = 0.0
        self.max_in_flight, self.requests_per_second = max_in_flight, requests_per_second

    def _wait_turn(self) -> None:
        if not self._interval and self._paused_until <= time.monotonic():
            return  # no rate limit and no pause: nothing to wait for, no lock to take
        while True:
            with self._lock:
                now = time.monotonic()
                wait = self._paused_until - now
                if wait <= 0:
                    start = max(now, self._next_start)
                    self._next_start = start + self._interval
                    wait = start - now
                    if wait <= 0:
                        return
                    # The slot is ours: sleep until it, outside the lock.
                    break
            time.sleep(min(wait, 1.0))
        time.sleep(wait)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one request's place: waits for a pause to end, the rate and the in-flight cap."""
        self._wait_turn()
        if self._sem is None:
            yield
            return
        with self._sem:
            yield

    def pause_left(self) -> float:
        """How long the host is still paused (after a 429), 0 when it is not."""
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> float:
        """Hold back every request to this host for ``seconds`` (after a 429). Returns how long
        the host is paused from now (longer when an earlier pause lasts longer)."""
        with self._lock:
            now = time.monotonic()
            self._paused_until = max(self._paused_until, now + seconds)
            return self._paused_until - now


_limiters: dict[str, HostLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(url: str, max_in_flight: int, requests_per_second: float) -> HostLimiter:
    """The process-wide limiter of ``url``'s host; the strictest settings win."""
    host = urlsplit(url).netloc.lower()
    with _limiters_lock:
        old = _limiters.get(host)
        if old is not None:
            mif = _strictest(old.max_in_flight, max_in_flight)
            rps = _strictest(old.requests_per_second, requests_per_second)
            if (mif, rps) == (old.max_in_flight, old.requests_per_second):
                return old
            max_in_flight, requests_per_second = int(mif), float(rps)
        new = HostLimiter(max_in_flight, requests_per_second)
        if old is not None:
            new._paused_until = old._paused_until
        _limiters[host] = new
        return new


def _strictest(a: float, b: float) -> float:
    return min(x for x in (a, b) if x > 0) if (a > 0 or b > 0) else 0


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


def retry_after_seconds(value: str | None, now: dt.datetime | None = None) -> float | None:
    """A Retry-After header in seconds (``120`` or an HTTP date), or None when absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # "²" is a digit to isdigit, not to float()
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or dt.datetime.now(dt.UTC))).total_seconds())
