"""The daemon's HTTP server: waitress, with the one bound it lacks filled in.

waitress (Pylons) reads every request whole on its event loop before a worker thread sees it,
so a slow client never holds a thread; it refuses a bad Content-Length (not digits, negative,
two values: 400), too large a body (413) or header (431), stops accepting at
``connection_limit`` (the next clients wait in the listen backlog), and closes a channel with
no activity for ``channel_timeout``. That timeout is about *inactivity*: a client that sends
one header byte a second is never idle, and a few hundred of them keep every channel, so
/healthz stops answering (slowloris). Filled here: each channel notes when the first byte of
its current request arrived, and the server's maintenance (every ``cleanup_interval``) answers
408 and closes any channel whose request has not arrived whole within ``request_seconds``.
Blank lines do not count as a request, so dripping CRLFs does not restart the clock.

Nothing here prints: waitress's loggers go to structlog (``http_server`` events), socket
errors of clients that hang up are not logged, tracebacks are never sent to clients.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher

from integrator.logs import route_library_logs
from integrator.scheduler.web import HttpLimits

__all__ = ["WebServer"]

log = structlog.get_logger("integrator.http")


class _Parser(HTTPRequestParser):  # type: ignore[misc]  # waitress has no type hints
    """Tells its channel once when a real request (not blank lines) has arrived whole."""

    def __init__(self, adj: Adjustments, arrived: Callable[[], None]) -> None:
        super().__init__(adj)
        self._arrived, self._told = arrived, False

    def received(self, data: bytes) -> int:
        consumed = int(super().received(data))
        if self.completed and not self.empty and not self._told:
            self._told = True
            self._arrived()
        return consumed


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that knows since when its current request has been arriving."""

    request_started: float | None = None  # monotonic time of the request's first byte
    request: Any  # waitress's: the request arriving (a parser), or None
    requests: list[Any]  # waitress's: requests arrived whole, being served
    will_close: bool
    close_when_flushed: bool

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._arrivals = 0
        self.parser_class = functools.partial(_Parser, arrived=self._arrived)
        super().__init__(*args, **kwargs)

    def _arrived(self) -> None:
        self._arrivals += 1

    def received(self, data: bytes) -> bool:
        """On the event loop: bytes from the client (the clock starts at a request's first)."""
        if not data:
            return False
        now = time.monotonic()
        if self.request_started is None:
            self.request_started = now
        before = self._arrivals
        result = bool(super().received(data))
        if self._arrivals != before:  # a request arrived whole; another may have begun
            self.request_started = now if self.request is not None else None
        return result

    def too_slow(self, seconds: float) -> None:
        """On the event loop: answer 408 and close (the request was not whole in time)."""
        with self.requests_lock:
            if self.requests or self.will_close or self.close_when_flushed:
                return  # a request is being served: the server's time, not the client's
            self.request_started = None
            self.close_when_flushed = True  # received() takes nothing more
            if self.request is not None:
                self.request.close()
                self.request = None
        body = json.dumps(
            {"detail": f"the request did not arrive whole within {seconds:g} s"}
        ).encode()
        head = (
            "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            self.write_soon(head + body)
        except ClientDisconnected:
            self.will_close = True
        log.info("http_request_too_slow", client=_peer(self.addr), seconds=seconds)


def _peer(addr: Any) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


class _Server(TcpWSGIServer):  # type: ignore[misc]
    channel_class = _Channel
    request_seconds = 10.0

    def maintenance(self, now: float) -> None:
        """Every ``cleanup_interval``: waitress closes idle channels, then this closes those
        whose request is arriving too slowly."""
        super().maintenance(now)
        cutoff = time.monotonic() - self.request_seconds
        for channel in list(self.active_channels.values()):
            started = channel.request_started
            if started is not None and started < cutoff:
                channel.too_slow(self.request_seconds)


class _Dispatcher(ThreadedTaskDispatcher):  # type: ignore[misc]
    """waitress's worker threads, kept so that stopping can join them."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[threading.Thread] = []

    def start_new_thread(self, target: Callable[[int], None], thread_no: int) -> None:
        thread = threading.Thread(
            target=target, name=f"http-worker-{thread_no}", args=(thread_no,), daemon=True
        )
        self.started.append(thread)
        thread.start()


class WebServer:
    """A WSGI app served on ``host:port`` within ``limits``; ``start`` binds (OSError when it
    cannot) and returns; ``stop`` closes the port, lets requests being served finish, and
    joins every thread it started."""

    def __init__(self, app: Any, host: str, port: int, limits: HttpLimits) -> None:
        self.app, self.host, self.port, self.limits = app, host.strip("[]"), port, limits
        self._map: dict[int, Any] = {}
        self._server: _Server | None = None
        self._dispatcher: _Dispatcher | None = None
        self._thread: threading.Thread | None = None
        # how often the loop wakes to check deadlines: a fifth of the shortest bound
        self._tick = max(0.01, min(1.0, limits.request_seconds / 5, limits.idle_seconds / 5))

    def start(self) -> None:
        # waitress's records as http_server events; its queue-depth notes at debug level
        route_library_logs("waitress", "http_server", demoted=["waitress.queue"])
        limits = self.limits
        ipv6 = ":" in self.host
        adj = Adjustments(
            host=self.host,
            port=self.port,
            ipv4=not ipv6,
            ipv6=ipv6,
            threads=limits.threads,
            connection_limit=limits.connections + 2,  # + the listening socket and the trigger
            backlog=limits.backlog,
            max_request_header_size=limits.max_header_bytes,
            max_request_body_size=limits.max_body_bytes + 1,  # waitress refuses >= this
            inbuf_overflow=limits.max_body_bytes + 1,  # bodies stay in memory
            ident="integrator",
            log_socket_errors=False,
            expose_tracebacks=False,
            asyncore_use_poll=True,  # select() fails on descriptors above 1024
        )
        # Adjustments reads these as whole seconds; the server uses them as floats.
        adj.channel_timeout = limits.idle_seconds
        adj.cleanup_interval = self._tick
        adj.asyncore_loop_timeout = self._tick
        dispatcher = _Dispatcher()
        try:
            server = _Server(
                self.app, map=self._map, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0]
            )
        except BaseException:
            wasyncore.close_all(self._map, ignore_all=True)
            raise
        server.request_seconds = limits.request_seconds
        dispatcher.set_thread_count(limits.threads)
        self._server, self._dispatcher = server, dispatcher
        self.port = int(server.effective_port)
        self._thread = threading.Thread(target=self._loop, name="http", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        try:
            wasyncore.loop(timeout=self._tick, map=self._map, use_poll=True)
        except Exception as exc:
            log.exception("http_server_failed", error=f"{type(exc).__name__}: {exc}")

    def _in_loop(self, action: Callable[[], Any], timeout: float) -> None:
        """Run ``action`` on the event loop's thread (waitress's objects are not
        thread-safe); directly when the loop has ended."""
        done = threading.Event()

        def thunk() -> None:
            try:
                action()
            finally:
                done.set()

        thread, server = self._thread, self._server
        if thread is not None and thread.is_alive() and server is not None:
            server.trigger.pull_trigger(thunk)
            if done.wait(timeout):
                return
        action()

    def stop(self, timeout: float = 5.0) -> None:
        thread, server, dispatcher = self._thread, self._server, self._dispatcher
        if thread is None or server is None or dispatcher is None:
            return
        deadline = time.monotonic() + timeout
        # 1. Close the listening socket: new clients are refused from now on.
        self._in_loop(functools.partial(wasyncore.dispatcher.close, server), timeout)
        # 2. Requests being served finish (their answers go out); queued ones are cancelled.
        dispatcher.shutdown(cancel_pending=True, timeout=max(0.1, deadline - time.monotonic()))
        # 3. Close every connection; the loop ends with an empty map.
        self._in_loop(
            functools.partial(wasyncore.close_all, self._map, ignore_all=True),
            max(0.1, deadline - time.monotonic()),
        )
        thread.join(max(0.1, deadline - time.monotonic()))
        for worker in dispatcher.started:
            worker.join(max(0.1, deadline - time.monotonic()))
        self._thread = None
        left = [t.name for t in (thread, *dispatcher.started) if t.is_alive()]
        if left:
            log.warning("http_threads_left", threads=left)
