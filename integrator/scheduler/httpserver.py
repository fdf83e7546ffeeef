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
Blank lines do not count as a request, so dripping CRLFs does not restart the clock. And at
the connection limit a new client does not wait for that: the connection idle longest, or else
the one whose request has been arriving longest, is shed (503) to make room.

Behind a reverse proxy (``--behind-proxy``) the proxy's ``X-Forwarded-For`` and
``X-Forwarded-Proto`` (one hop) are the client's address and scheme, but only on connections
from the proxy's own addresses (``--trusted-proxy``, loopback by default): waitress's
``trusted_proxy`` names one address, so ``_ProxyHeaders`` picks, per request, waitress's own
middleware that reads them or the one that drops them. A peer that is not a trusted proxy is
seen as itself: its address, plain http.

Body limits are the application's, per route: once a request's headers are in, the server asks
the app's ``body_limit(method, path)`` (``HttpLimits.max_body_bytes`` for an app without one).
A Content-Length over it is refused before a byte of the body is kept, a chunked body as soon as
it passes it; the rest of the body is read and dropped (up to ``DRAIN_BYTES``, so the client
reads the answer rather than a reset), and the app answers the 413 in its own words: it is
called with ``environ[BODY_REFUSED]`` (the detail) and an empty body. An app without
``body_limit`` gets the server's JSON ``{"detail": ...}``.

Nothing here prints: waitress's loggers go to structlog (``http_server`` events), socket
errors of clients that hang up are not logged, tracebacks are never sent to clients.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import select
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.proxy_headers import PROXY_HEADERS, proxy_headers_middleware
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher, WSGITask
from waitress.utilities import RequestEntityTooLarge

from integrator.logs import route_library_logs
from integrator.scheduler.web import (
    BODY_REFUSED,
    LOOPBACK_PROXIES,
    HttpLimits,
    peer_address,
    too_large,
)

__all__ = ["WebServer"]

log = structlog.get_logger("integrator.http")


DRAIN_BYTES = 32 * 1024 * 1024  # the most of a refused body read (and dropped) after the answer
CHUNK_OVERHEAD = 64 * 1024  # chunk-size lines and extensions a chunked body may add


class _Parser(HTTPRequestParser):  # type: ignore[misc]  # waitress has no type hints
    """Tells its channel once when a real request (not blank lines) has arrived whole, and
    holds its body to the route's limit (``limit(method, path)``, asked once the headers are
    in): over it, the request completes at once as a 413 (``refused``: its detail), taking
    every byte it is given, so nothing of the body is parsed as a request."""

    refused: str | None = None
    body_rcv: Any  # waitress's
    chunked: bool
    completed: bool
    content_length: int
    empty: bool
    error: Any
    expect_continue: bool
    headers_finished: bool

    def __init__(
        self, adj: Adjustments, arrived: Callable[[], None], limit: Callable[[str, str], int]
    ) -> None:
        super().__init__(adj)
        self._arrived, self._told = arrived, False
        self._limit_of, self._limit = limit, -1
        self._raw = 0  # bytes of a chunked body as sent (chunk lines included)

    def received(self, data: bytes) -> int:
        if self.completed:
            return 0
        in_body = self.body_rcv is not None
        consumed = int(super().received(data))
        if not in_body and self.headers_finished and self.error is None and not self.empty:
            self._limit = self._limit_of(str(self.command), str(self.path))
            if not self.chunked and self.content_length > self._limit:
                consumed = self._refuse(data)
        elif in_body and self.chunked and self.error is None:
            # what a chunked body decodes to, and what it takes to send it, are both bounded
            self._raw += consumed
            if len(self.body_rcv) > self._limit or self._raw > self._limit + CHUNK_OVERHEAD:
                consumed = self._refuse(data)
        if self.completed and not self.empty and not self._told:
            self._told = True
            self._arrived()
        return consumed

    def _refuse(self, data: bytes) -> int:
        """Complete as a 413 without a 100 Continue; the body's bytes left in ``data`` are
        taken (the channel drops the rest while it lingers, ``_Channel.linger``)."""
        self.refused = too_large(self._limit)
        self.error = RequestEntityTooLarge(self.refused)
        self.completed, self.expect_continue = True, False
        return len(data)


class _Refused(WSGITask):  # type: ignore[misc]
    """A body over the route's limit, answered by the app in its own words: it is called
    with ``environ[BODY_REFUSED]`` and an empty body; the connection closes after."""

    request: _Parser

    def get_environment(self) -> dict[str, Any]:
        environ: dict[str, Any] = super().get_environment()
        environ[BODY_REFUSED] = self.request.refused
        environ["CONTENT_LENGTH"] = "0"
        environ["wsgi.input"] = io.BytesIO()
        return environ

    def execute(self) -> None:
        self.set_close_on_finish()
        self.channel.linger = True
        super().execute()


class _TooLarge(ErrorTask):  # type: ignore[misc]
    """The 413 of an app without ``body_limit``: JSON, like every answer of the server's."""

    request: _Parser

    def execute(self) -> None:
        body = json.dumps({"detail": self.request.refused}).encode()
        self.status = "413 Request Entity Too Large"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.channel.linger = True
        self.content_length = len(body)
        self.write(body)


def _error_task(channel: _Channel, request: Any) -> Any:
    """waitress's answer to a request it refused; a body over the limit goes to the app."""
    refused = isinstance(request, _Parser) and request.refused is not None
    if refused and isinstance(request.error, RequestEntityTooLarge):
        return (_Refused if channel.server.app_refuses else _TooLarge)(channel, request)
    return ErrorTask(channel, request)


class _Channel(HTTPChannel):  # type: ignore[misc]
    """A connection that knows since when its current request has been arriving."""

    request_started: float | None = None  # monotonic time of the request's first byte
    request: Any  # waitress's: the request arriving (a parser), or None
    requests: list[Any]  # waitress's: requests arrived whole, being served
    will_close: bool
    close_when_flushed: bool
    server: _Server
    error_task_class = staticmethod(_error_task)
    adj: Adjustments
    socket: Any
    linger = False  # its request's body was refused: read the rest before closing
    lingering_until: float | None = None  # monotonic: the answer is out, the rest is dropped
    _drained = 0
    _closed = False

    def __init__(self, server: _Server, *args: Any, **kwargs: Any) -> None:
        self._arrivals = 0
        self.parser_class = functools.partial(
            _Parser, arrived=self._arrived, limit=server.body_limit
        )
        super().__init__(server, *args, **kwargs)

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

    # A refused body's answer goes out while the client may still be sending the body; closing
    # with its bytes unread would reset the connection, and the client would see the reset, not
    # the 413. So the channel first stops sending (the client sees the answer end), then reads
    # and drops what still comes until the client stops, DRAIN_BYTES, or the request deadline.
    def handle_close(self) -> None:
        if self._closed:
            return
        if self.linger and self.lingering_until is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            else:
                self.lingering_until = time.monotonic() + self.server.request_seconds
                return
        self._closed = True
        super().handle_close()

    def writable(self) -> bool:
        return self.lingering_until is None and bool(super().writable())

    def readable(self) -> bool:
        return self.lingering_until is not None or bool(super().readable())

    def handle_read(self) -> None:
        if self.lingering_until is None:
            super().handle_read()
            return
        try:
            data = self.recv(self.adj.recv_bytes)  # b"" at the end: recv closes the channel
        except OSError:
            data = b""
        self._drained += len(data)
        if not data or self._drained > DRAIN_BYTES or time.monotonic() > self.lingering_until:
            self.handle_close()

    def idle(self) -> bool:
        """Nothing arriving, nothing being served, nothing left to send."""
        return not (self.requests or self.request_started is not None or self.total_outbufs_len)

    def drop(self, status: str | None, detail: str = "") -> bool:
        """On the event loop: answer ``status`` and close (None, or nothing but blank lines
        received: close without a word, as for a keep-alive connection between requests);
        False when a request is being served (the server's time, not the client's) or the
        channel is closing already."""
        with self.requests_lock:
            if self.requests or self.will_close or self.close_when_flushed:
                return False
            self.request_started = None
            request = self.request
            if request is None or (request.body_rcv is None and not request.header_plus.strip()):
                status = None  # only blank lines so far: no request to answer
            if request is not None:
                self.request.close()
                self.request = None
            if status is None:
                self.will_close = True
                return True
            self.close_when_flushed = True  # received() takes nothing more
        body = json.dumps({"detail": detail}).encode()
        head = (
            f"HTTP/1.1 {status}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            self.write_soon(head + body)
        except ClientDisconnected:
            self.will_close = True
        log.debug("http_client_dropped", client=_peer(self.addr), status=status)
        return True


def _peer(addr: Any) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else str(addr)


class _Server(TcpWSGIServer):  # type: ignore[misc]
    """waitress's TCP server with the request deadline, and shedding at the connection limit:
    rather than leaving a new client in the listen backlog until the slow ones time out, the
    connection that has been idle longest, or else whose request has been arriving longest,
    is closed to make room (not one younger than ``shed_after``). So a health check gets in
    within moments however many clients drip, and a fast client is never the one shed."""

    channel_class = _Channel
    request_seconds = 10.0
    shed_after = 0.5
    report_every = 10.0  # seconds between two http_clients_dropped warnings
    _shedding: Any = None  # the channel being closed to make room, until it is gone
    _shed_at = 0.0
    next_channel_cleanup: float  # waitress's
    in_connection_overflow: bool  # waitress's
    _reported = -1e9
    _limit_reported = -1e9
    app_refuses = False  # the app answers a body over the limit itself (it has body_limit)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.dropped: dict[str, int] = {"too_slow": 0, "shed": 0}
        # WebServer sets the app's; until then, the server's default
        self.body_limit: Callable[[str, str], int] = lambda _m, _p: HttpLimits.max_body_bytes
        super().__init__(*args, **kwargs)

    def readable(self) -> bool:
        """Asked on every turn of the loop: maintenance, then accept unless at the limit
        (waitress's own version, with shedding and without a log line per transition)."""
        now = time.time()
        if now >= self.next_channel_cleanup:
            self.next_channel_cleanup = now + self.adj.cleanup_interval
            self.maintenance(now)
        if not self.accepting:
            return False
        if len(self._map) < self.adj.connection_limit:
            self.in_connection_overflow = False
            return True
        if not self.in_connection_overflow:
            self.in_connection_overflow = True
            mono = time.monotonic()
            if mono - self._limit_reported >= self.report_every:
                self._limit_reported = mono
                log.warning("http_connection_limit", connections=len(self.active_channels))
        self._shed()
        return False

    def _waiting(self) -> bool:
        """A client waits in the listen backlog (the listening socket is readable)."""
        pollster = select.poll()
        pollster.register(self.socket.fileno(), select.POLLIN)
        return bool(pollster.poll(0))

    def _shed(self) -> None:
        if not self._waiting():
            return  # nobody to make room for
        mono, wall = time.monotonic(), time.time()
        shedding = self._shedding
        if (
            shedding is not None
            and shedding._fileno in self.active_channels
            and mono - self._shed_at < 1.0  # a client that does not take its 503 waits
        ):
            return  # one at a time: it closes on this turn of the loop
        self._shedding = None
        channels = list(self.active_channels.values())
        idle = [c for c in channels if c.idle() and wall - c.last_activity >= self.shed_after]
        status: str | None = None  # an idle connection is closed without a word
        if idle:
            victim = min(idle, key=lambda c: c.last_activity)
        else:
            status = "503 Service Unavailable"
            slow = [
                c
                for c in channels
                if not c.requests
                and c.request_started is not None
                and mono - c.request_started >= self.shed_after
            ]
            if not slow:
                return
            victim = min(slow, key=lambda c: c.request_started)
        if victim.drop(status, "too many connections; try again"):
            self._shedding, self._shed_at = victim, mono
            self.dropped["shed"] += 1
            self.pull_trigger()  # the loop turns again at once: close it, accept the next

    def maintenance(self, now: float) -> None:
        """Every ``cleanup_interval``: waitress closes idle channels, then this closes those
        whose request is arriving too slowly, and reports what it dropped."""
        super().maintenance(now)
        for channel in list(self.active_channels.values()):
            until = channel.lingering_until
            if until is not None and time.monotonic() > until:
                channel.handle_close()  # a refused body's client still sending: enough
        cutoff = time.monotonic() - self.request_seconds
        detail = f"the request did not arrive whole within {self.request_seconds:g} s"
        for channel in list(self.active_channels.values()):
            started = channel.request_started
            if (
                started is not None
                and started < cutoff
                and channel.drop("408 Request Timeout", detail)
            ):
                self.dropped["too_slow"] += 1
        mono = time.monotonic()
        if any(self.dropped.values()) and mono - self._reported >= self.report_every:
            self._reported = mono
            log.warning(
                "http_clients_dropped",
                too_slow=self.dropped["too_slow"],
                shed=self.dropped["shed"],
                request_seconds=self.request_seconds,
                connections=len(self.active_channels),
            )
            self.dropped = {"too_slow": 0, "shed": 0}


class _ProxyHeaders:
    """The WSGI app waitress serves: X-Forwarded-For and -Proto (one hop) read, by waitress's
    middleware, on a connection from a trusted proxy; dropped on any other (the client is seen
    as itself). A dropped header from a peer that sent some is reported, at most once every
    ``report_every`` seconds (a proxy whose address is not trusted: say it with
    --trusted-proxy), never once per request."""

    report_every = 60.0
    HEADERS = frozenset({"x-forwarded-for", "x-forwarded-proto"})

    def __init__(self, app: Any, trusted: Sequence[str], *, report: bool) -> None:
        addresses = {text: peer_address(text) for text in trusted}
        wrong = [text for text, ip in addresses.items() if ip is None]
        if wrong:
            raise ValueError(f"not an IP address: {', '.join(map(repr, wrong))}")
        self.trusted = frozenset(ip for ip in addresses.values() if ip is not None)
        self.report = report
        logger = logging.getLogger("waitress")
        self.reading = proxy_headers_middleware(
            app,
            trusted_proxy="*",  # only ever called for a trusted peer
            trusted_proxy_count=1,
            trusted_proxy_headers=set(self.HEADERS),
            clear_untrusted=True,  # the other X-Forwarded-* and Forwarded: dropped
            logger=logger,
        )
        self.dropping = proxy_headers_middleware(
            app, trusted_proxy=None, clear_untrusted=True, logger=logger
        )
        self._lock = threading.Lock()
        self._reported = -1e9
        self._ignored = 0

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        peer = peer_address(str(environ.get("REMOTE_ADDR", "")))
        if peer is not None and peer in self.trusted:
            return self.reading(environ, start_response)
        if self.report and any(f"HTTP_{h}" in environ for h in PROXY_HEADERS):
            self._note(str(environ.get("REMOTE_ADDR", "")))
        return self.dropping(environ, start_response)

    def _note(self, peer: str) -> None:
        mono = time.monotonic()
        with self._lock:
            self._ignored += 1
            if mono - self._reported < self.report_every:
                return
            self._reported, ignored, self._ignored = mono, self._ignored, 0
        log.warning(
            "http_proxy_headers_ignored",
            peer=peer,
            requests=ignored,
            trusted_proxies=sorted(str(ip) for ip in self.trusted),
            hint="X-Forwarded-* headers count only from a trusted proxy; if this peer is your "
            "reverse proxy, add --trusted-proxy with its address",
        )


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

    def __init__(
        self,
        app: Any,
        host: str,
        port: int,
        limits: HttpLimits,
        *,
        behind_proxy: bool = False,
        trusted_proxies: Sequence[str] = LOOPBACK_PROXIES,
    ) -> None:
        self.app, self.host, self.port, self.limits = app, host.strip("[]"), port, limits
        # behind a reverse proxy: its X-Forwarded-For and -Proto (one hop), on connections from
        # the trusted proxies only, are the client's address and scheme; otherwise dropped (a
        # client could claim https, or any address to the login limiter)
        self.behind_proxy = behind_proxy
        self.trusted_proxies = tuple(trusted_proxies) if behind_proxy else ()
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
            # every body is held to its route's limit by the parser (``_Parser``), not by this
            max_request_body_size=2**62,
            inbuf_overflow=64 * 1024,  # a larger body waits in a temporary file
            ident="integrator",
            log_socket_errors=False,
            expose_tracebacks=False,
            asyncore_use_poll=True,  # select() fails on descriptors above 1024
            # waitress's own wrapper trusts one address or every peer: _ProxyHeaders decides
            clear_untrusted_proxy_headers=False,
        )
        # Adjustments reads these as whole seconds; the server uses them as floats.
        adj.channel_timeout = limits.idle_seconds
        adj.cleanup_interval = self._tick
        adj.asyncore_loop_timeout = self._tick
        dispatcher = _Dispatcher()
        try:
            served = _ProxyHeaders(self.app, self.trusted_proxies, report=self.behind_proxy)
            server = _Server(
                served, map=self._map, dispatcher=dispatcher, adj=adj, sockinfo=adj.listen[0]
            )
        except BaseException:
            wasyncore.close_all(self._map, ignore_all=True)
            raise
        server.request_seconds = limits.request_seconds
        limit = getattr(self.app, "body_limit", None)
        server.app_refuses = callable(limit)
        server.body_limit = limit if callable(limit) else lambda _m, _p: limits.max_body_bytes
        # A connection is shed only after half a second (a quarter of a shorter deadline):
        # honest clients send a request in milliseconds, so a burst of them beyond the limit
        # waits its turn and is not shed; 1000 drippers against 100 connections keep a new
        # client out for about 5 s.
        server.shed_after = max(0.05, min(limits.request_seconds / 4, 0.5))
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
