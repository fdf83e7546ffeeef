"""A small threaded JSON HTTP server with fault injection, shared by both sandbox servers.

Responses go out in one ``send`` with ``TCP_NODELAY``: headers and body written separately on
a keep-alive connection meet Nagle + delayed ACK and cost ~40 ms per call.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

__all__ = ["DROP", "Faults", "JsonServer", "Request", "Response", "Route"]


@dataclass
class Request:
    """A parsed request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    fault: str = ""  # a fault that shapes the route's own answer (see Rule.action)


@dataclass
class Response:
    """What a route answers."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without an answer (after any commit)
    raw: bytes | None = None  # sent as is, instead of ``body`` as JSON
    cookies: list[str] = field(default_factory=list)  # one Set-Cookie header each


DROP = Response(0, drop=True)

Route = Callable[[Request, list[str]], Response]


@dataclass
class Rule:
    """A fault: on ``route`` (or any), for ``count`` calls (or -1: always) with ``rate``."""

    # status, drop_after_commit, drop_before, timeout, latency, body, status_then_commit (the
    # status now, the route's work ``seconds`` later); or one the route itself applies to its
    # answer: duplicate_rows, ignore_cursor (Omnitron's order list)
    action: str
    route: str = "*"
    status: int = 500
    rate: float = 1.0
    count: int = -1
    retry_after: str | None = None
    seconds: float = 0.0
    numbers: list[str] = field(default_factory=list)
    body: str = ""  # action body: this text instead of the answer (``repeat`` times)
    repeat: int = 1
    content_type: str = "text/html; charset=utf-8"
    commit: bool = False  # action body: run the route first (the ERP did the work)


ACTIONS = frozenset(
    {"status", "drop_after_commit", "drop_before", "timeout", "latency", "body",
     "status_then_commit", "duplicate_rows", "ignore_cursor"}
)  # fmt: skip


class Faults:
    """The fault table: deterministic with a seed; changed at run time via ``/_sandbox/faults``."""

    def __init__(self, seed: int = 7) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.latency: dict[str, float] = {}  # route (or "*") → seconds
        self.injected = 0

    def configure(self, spec: dict[str, Any]) -> None:
        """Replace the table: ``{"latency_ms": {"*": 10}, "rules": [{...}], "seed": 1}``."""
        rules = [Rule(**r) for r in spec.get("rules", [])]
        unknown = sorted({r.action for r in rules} - ACTIONS)
        if unknown:
            raise TypeError(
                f"unknown action {', '.join(unknown)}; known: {', '.join(sorted(ACTIONS))}"
            )
        with self.lock:
            self.latency = {k: float(v) / 1000 for k, v in spec.get("latency_ms", {}).items()}
            self.rules = rules
            if "seed" in spec:
                self.random = random.Random(spec["seed"])

    def pick(self, route: str, number: str | None) -> Rule | None:
        """The rule that fires for this call, if any (consumes one of its count)."""
        with self.lock:
            for rule in self.rules:
                if rule.route not in ("*", route) or rule.count == 0:
                    continue
                if rule.numbers and number not in rule.numbers:
                    continue
                if rule.rate < 1.0 and self.random.random() >= rule.rate:
                    continue
                if rule.count > 0:
                    rule.count -= 1
                self.injected += 1
                return rule
        return None

    def delay(self, route: str) -> float:
        """Injected latency for ``route``."""
        return self.latency.get(route, self.latency.get("*", 0.0))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: JsonServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the sandbox must not flood the terminal."""

    def parse_request(self) -> bool:
        """The request line and headers, without the email parser http.server uses.

        http.server parses headers with the ``email`` package: about half of the sandbox's CPU
        per call, which would show as latency the benchmarks did not inject. Headers land in a
        dict with lower-case names.
        """
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")  # type: ignore[attr-defined]
        self.requestline = line
        parts = line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            self.request_version = "HTTP/1.0"
            self.close_connection = True
            self.send_error(400, f"Bad request line {line!r}")
            return False
        self.command, self.path, self.request_version = parts
        headers: dict[str, str] = {}
        while True:
            raw = self.rfile.readline(65537)
            if raw in (b"\r\n", b"\n", b""):
                break
            if len(headers) > 100:
                self.send_error(431, "Too many headers")
                return False
            name, _, value = raw.decode("iso-8859-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        self.headers = headers  # type: ignore[assignment]  # read with lower-case names below
        connection = headers.get("connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive"
        )
        return True

    def _handle(self) -> None:
        parts = urlsplit(self.path)
        headers: dict[str, str] = self.headers  # type: ignore[assignment]  # see parse_request
        length = int(headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body: Any = dict(parse_qsl(raw.decode("utf-8")))
            else:
                body = json.loads(raw) if raw else None
        except ValueError:
            self._send(Response(400, {"detail": "invalid JSON body"}))
            return
        req = Request(
            self.command,
            parts.path,
            {k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers,
            body,
        )
        try:
            resp = self.server.dispatch(req)
        except Exception as exc:  # noqa: BLE001 - a sandbox bug answers 500, never kills it
            resp = Response(500, {"detail": f"sandbox error: {type(exc).__name__}: {exc}"})
        self._send(resp)

    def _send(self, resp: Response) -> None:
        if resp.drop:
            self.close_connection = True
            with contextlib.suppress(OSError):  # the client may be gone already
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        if resp.raw is not None:
            payload = resp.raw
        else:
            payload = (
                b"" if resp.body is None else json.dumps(resp.body, ensure_ascii=False).encode()
            )
        headers = {"Content-Type": "application/json", **resp.headers}
        head = [
            f"HTTP/1.1 {resp.status} {self.responses.get(resp.status, ('',))[0]}",
            f"Content-Length: {len(payload)}",
        ]
        head += [f"{k}: {v}" for k, v in headers.items()]
        head += [f"Set-Cookie: {c}" for c in resp.cookies]
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle


class JsonServer(ThreadingHTTPServer):
    """Routes by (method, path prefix); subclasses fill ``routes`` and ``stats``."""

    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (killed, timed out) is normal here; anything else prints."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 7) -> None:
        super().__init__((host, port), _Handler)
        self.faults = Faults(seed)
        self.lock = threading.Lock()
        self.calls: dict[str, int] = {}
        self.thread: threading.Thread | None = None
        # Called with the route's name once a routed call has been handled (after any commit,
        # before the answer is sent): the crash tests time their kills by it.
        self.watchers: list[Callable[[str], None]] = []

    @property
    def url(self) -> str:
        """The server's base URL."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def route(self, req: Request) -> tuple[str, Route, list[str]] | None:
        """(route name, handler, path args) for ``req``."""
        raise NotImplementedError

    def order_number(self, req: Request, args: list[str]) -> str | None:
        """The order a call concerns, for faults aimed at given orders."""
        return None

    def stats(self) -> dict[str, Any]:
        """What the server holds."""
        raise NotImplementedError

    def dispatch(self, req: Request) -> Response:
        """Sandbox control routes, then faults, then the route itself."""
        if req.path == "/_sandbox/stats":
            return Response(
                200,
                {
                    **self.stats(),
                    "calls": dict(self.calls),
                    "faults_injected": self.faults.injected,
                },
            )
        if req.path == "/_sandbox/faults" and req.method == "POST":
            try:
                self.faults.configure(req.body or {})
            except TypeError as exc:
                return Response(400, {"detail": f"bad fault spec: {exc}"})
            return Response(200, {"ok": True})
        found = self.route(req)
        if found is None:
            return Response(404, {"detail": "Not found."})
        name, handler, args = found
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
        try:
            return self._faulted(name, handler, req, args)
        finally:
            for watch in self.watchers:
                watch(name)

    def _faulted(self, name: str, handler: Route, req: Request, args: list[str]) -> Response:
        """The route's answer, or the fault that fires for it."""
        delay = self.faults.delay(name)
        if delay:
            time.sleep(delay)
        rule = self.faults.pick(name, self.order_number(req, args))
        if rule is not None:
            if rule.action == "status":
                headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
                return Response(rule.status, {"detail": f"injected {rule.status}"}, headers)
            if rule.action == "drop_before":
                return DROP
            if rule.action == "status_then_commit":  # a gateway gives up; the ERP goes on
                threading.Timer(rule.seconds, handler, (req, args)).start()
                return Response(rule.status, {"detail": f"injected {rule.status}"})
            if rule.action == "timeout":
                time.sleep(rule.seconds or 5.0)
            if rule.action == "latency":
                time.sleep(rule.seconds)
            if rule.action == "drop_after_commit":
                handler(req, args)
                return DROP
            if rule.action == "body":
                if rule.commit:
                    handler(req, args)
                return Response(
                    rule.status,
                    raw=(rule.body * max(rule.repeat, 1)).encode(),
                    headers={"Content-Type": rule.content_type},
                )
            req.fault = rule.action  # one the route applies to its own answer
        return handler(req, args)

    def start(self) -> Self:
        """Serve in a background thread."""
        self.thread = threading.Thread(
            target=self.serve_forever, daemon=True, name=type(self).__name__
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.shutdown()
        self.server_close()
