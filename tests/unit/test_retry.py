"""The connector's retry policy and the per-host limits (fake transports: unit tests only)."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor
from integrator.connectors.limits import HostLimiter, backoff, retry_after_seconds
from integrator.errors import AmbiguousWriteError, RetriableError


class Script(BaseAdapter):
    """Answers from a list: a status code, or an exception to raise."""

    def __init__(self, *answers: int | Exception, delay: float = 0.0) -> None:
        super().__init__()
        self.answers, self.calls, self.delay = list(answers), 0, delay
        self.headers: dict[str, str] = {}
        self.in_flight = self.peak = 0
        self.lock = threading.Lock()

    def send(
        self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
    ) -> requests.Response:
        with self.lock:
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
            answer = self.answers[min(self.calls, len(self.answers) - 1)]
            self.calls += 1
        try:
            time.sleep(self.delay)
            if isinstance(answer, Exception):
                raise answer
            resp = requests.Response()
            resp.status_code, resp._content, resp.url = answer, b"{}", request.url or ""
            resp.headers.update(self.headers)
            resp.request = request
            return resp
        finally:
            with self.lock:
                self.in_flight -= 1

    def close(self) -> None:
        pass


@pytest.fixture
def sleeps() -> list[float]:
    """The connectors made by ``conn`` record their waits between tries here."""
    return SLEPT


SLEPT: list[float] = []


@pytest.fixture(autouse=True)
def _clear() -> None:
    SLEPT.clear()


def conn(adapter: BaseAdapter, host: str = "http://erp.test", **config: Any) -> Connector:
    config.setdefault("retry_base", 0.01)
    c = Connector(ConnectorConfig(name="erp", host=host, **config), Redactor([]))
    c.session.mount("http://", adapter)
    c._sleep = lambda seconds: SLEPT.append(float(seconds))
    return c


def test_idempotent_calls_are_retried_with_capped_backoff(sleeps: list[float]) -> None:
    a = Script(503, 502, 200)
    assert conn(a, retry_cap=0.015).request("GET", "/x").status_code == 200
    assert a.calls == 3 and len(sleeps) == 2 and all(0 <= s <= 0.015 for s in sleeps)


def test_retries_stop_after_the_configured_attempts(sleeps: list[float]) -> None:
    a = Script(503)
    with pytest.raises(RetriableError):
        conn(a, retry_attempts=4).request("GET", "/x")
    assert a.calls == 4


def test_the_policy_can_be_turned_off(sleeps: list[float]) -> None:
    a = Script(503, 200)
    with pytest.raises(RetriableError):
        conn(a, retry_disabled=True).request("GET", "/x")
    assert a.calls == 1 and sleeps == []


def test_retry_after_is_honoured_and_pauses_the_whole_host(sleeps: list[float]) -> None:
    a = Script(429, 200)
    a.headers["Retry-After"] = "1"
    c = conn(a, host="http://paused.test")
    other = conn(Script(200), host="http://paused.test")  # another flow, same host
    assert other.limiter is c.limiter
    start = time.monotonic()
    # A 429 means "not processed": a write may be repeated.
    assert c.request("POST", "/orders", json_body={}, idempotent=False).status_code == 200
    assert a.calls == 2 and time.monotonic() - start >= 0.95  # the host waited
    c.limiter.pause(0.5)
    start = time.monotonic()
    other.request("GET", "/x")
    assert time.monotonic() - start >= 0.45  # the pause holds every connector of the host


def test_writes_that_may_have_landed_are_not_retried(sleeps: list[float]) -> None:
    a = Script(503, 201)
    with pytest.raises(AmbiguousWriteError):
        conn(a).request("POST", "/orders", json_body={}, idempotent=False)
    assert a.calls == 1
    b = Script(503, 201)  # with an idempotency key, a repeat cannot create a second order
    c = conn(b)
    assert c.request("POST", "/o", json_body={}, idempotent=False, retry_unsafe=True).ok
    assert b.calls == 2


def test_writes_never_sent_are_retried(sleeps: list[float]) -> None:
    a = Script(requests.ConnectionError("NewConnectionError: Connection refused"), 201)
    assert conn(a).request("POST", "/orders", json_body={}, idempotent=False).status_code == 201
    assert a.calls == 2


def test_retry_after_http_date_and_backoff_bounds() -> None:
    now = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
    assert retry_after_seconds("Sun, 22 Nov 2026 12:00:30 GMT", now) == 30
    assert retry_after_seconds("120", now) == 120
    assert retry_after_seconds("soon", now) is None and retry_after_seconds(None) is None
    assert retry_after_seconds("\u00b2", now) is None  # a hostile server's Unicode digit: no crash
    assert retry_after_seconds("Sun, 22 Nov 2026 11:00:00 GMT", now) == 0
    assert all(0 <= backoff(n, 0.5, 4) <= min(4, 0.5 * 2 ** (n - 1)) for n in range(1, 9))


def test_max_in_flight_is_shared_by_every_connector_of_a_host() -> None:
    a = Script(200, delay=0.05)
    c1 = conn(a, host="http://capped.test", max_in_flight=2)
    c2 = conn(a, host="http://capped.test")
    threads = [
        threading.Thread(target=(c1 if i % 2 else c2).request, args=("GET", "/x")) for i in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert a.calls == 8 and a.peak == 2


def test_requests_per_second() -> None:
    limiter = HostLimiter(0, 20)
    start = time.monotonic()
    for _ in range(5):
        with limiter.slot():
            pass
    assert time.monotonic() - start >= 4 / 20 - 0.01
