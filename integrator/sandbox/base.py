"""A small threaded JSON HTTP server with fault injection, shared by the sandbox servers.

Responses go out in one ``send`` with ``TCP_NODELAY``: headers and body written separately on
a keep-alive connection meet Nagle + delayed ACK and cost ~40 ms per call.

The serving loop waits on the listening socket and a wake-up socket, with no timeout: a stop
wakes it at once (``socketserver``'s loop polls every 0.5 s, which every stop waited out), and
an idle sandbox uses no CPU.

Faults are set with ``POST /_sandbox/faults`` and a JSON object (``SPEC_KEYS``, ``RULE_KEYS``);
a body that is not one, an unknown key, action or route, or a value of the wrong type gets a
400 that lists what is allowed. ``GET /_sandbox/faults`` shows the table in force.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import selectors
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, parse_qsl, urlsplit

__all__ = [
    "ACTIONS",
    "DROP",
    "EXAMPLE",
    "FAULTS_PATH",
    "RULE_KEYS",
    "SPEC_KEYS",
    "FaultSpecError",
    "Faults",
    "JsonServer",
    "Request",
    "Response",
    "Route",
    "Rule",
    "parse_spec",
]

FAULTS_PATH = "/_sandbox/faults"


@dataclass
class Request:
    """A parsed request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    fault: str = ""  # a fault that shapes the route's own answer (see Rule.action)
    raw: bytes = b""  # the body as it arrived


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

# What each rule key takes (the 400 that refuses a spec lists these).
RULE_KEYS: dict[str, str] = {
    "action": "required: " + ", ".join(sorted(ACTIONS)),
    "route": 'a route name of this server, or "*" (every route; the default)',
    "status": "the status code to answer (100-599; default 500)",
    "rate": "the share of calls it fires on (0 to 1; default 1)",
    "count": "how many calls it fires on (-1: every call; the default)",
    "retry_after": "a Retry-After header for action status (text or seconds)",
    "seconds": "timeout, latency, status_then_commit: seconds (default 0; timeout: 5)",
    "numbers": "only calls about these order numbers (a list)",
    "body": "action body: this text instead of the answer",
    "repeat": "action body: the text this many times (default 1)",
    "content_type": "action body: its Content-Type (default text/html)",
    "commit": "action body: true to do the route's work first (default false)",
}
SPEC_KEYS: dict[str, str] = {
    "rules": "a list of rules, tried in order; the first that matches a call fires",
    "latency_ms": 'milliseconds added to every call of a route: {"*": 10, "create": 200}',
    "seed": "an integer: makes the random choices of rules with a rate repeatable",
}
_MAX_BODY = 256 * 1024 * 1024  # a body rule's text times its repeat
EXAMPLE = '{"rules": [{"action": "status", "route": "create", "status": 503, "count": 3}]}'


class FaultSpecError(ValueError):
    """A fault spec that cannot be used: every problem found, each with what is allowed."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _number(value: Any, low: float, high: float) -> float | None:
    """``value`` when it is a number in [low, high] (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if low <= value <= high else None


def _integer(value: Any, low: int, high: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        return None
    return value


def _rule(
    i: int,
    raw: Any,
    routes: frozenset[str] | None,
    problems: list[str],
    actions: frozenset[str] = ACTIONS,
) -> Rule | None:
    """One rule of a spec, checked; None (with problems noted) when it cannot be used."""
    where = f"rules[{i}]"
    if not isinstance(raw, dict):
        problems.append(f"{where}: expected an object like {EXAMPLE[11:-2]}")
        return None
    found = len(problems)
    unknown = sorted(set(raw) - set(RULE_KEYS))
    if unknown:
        problems.append(
            f"{where}: unknown key {', '.join(map(repr, unknown))}; a rule's keys: "
            f"{', '.join(RULE_KEYS)}"
        )
    kw: dict[str, Any] = {}
    action = raw.get("action")
    if action not in actions:
        problems.append(
            f"{where}.action: {'missing' if action is None else repr(action)}; expected one of "
            f"{', '.join(sorted(actions))}"
        )
    kw["action"] = action
    route = raw.get("route", "*")
    if not isinstance(route, str) or (routes is not None and route != "*" and route not in routes):
        allowed = ", ".join(sorted(routes)) if routes is not None else "a route name"
        problems.append(f'{where}.route: {route!r} is not a route here; expected "*" or {allowed}')
    kw["route"] = route
    checks: dict[str, tuple[Callable[[Any], Any], str]] = {
        "status": (lambda v: _integer(v, 100, 599), "an integer from 100 to 599"),
        "rate": (lambda v: _number(v, 0, 1), "a number from 0 to 1"),
        "count": (lambda v: _integer(v, -1, 10**9), "an integer, -1 (every call) or more"),
        "seconds": (lambda v: _number(v, 0, 3600), "a number of seconds from 0 to 3600"),
        "repeat": (lambda v: _integer(v, 1, _MAX_BODY), "an integer of 1 or more"),
        "retry_after": (
            lambda v: str(v) if isinstance(v, str | int) and not isinstance(v, bool) else None,
            "text or a whole number of seconds",
        ),
        "body": (lambda v: v if isinstance(v, str) else None, "text"),
        "content_type": (lambda v: v if isinstance(v, str) and v else None, "a media type"),
        "commit": (lambda v: v if isinstance(v, bool) else None, "true or false"),
        "numbers": (
            lambda v: (
                [str(n) for n in v]
                if isinstance(v, list)
                and all(isinstance(n, str | int) and not isinstance(n, bool) for n in v)
                else None
            ),
            "a list of order numbers",
        ),
    }
    for key, (check, expected) in checks.items():
        if key in raw:
            value = check(raw[key])
            if value is None:
                problems.append(f"{where}.{key}: {raw[key]!r}; expected {expected}")
            kw[key] = value
    if len(problems) > found:
        return None
    rule = Rule(**kw)
    if len(rule.body) * rule.repeat > _MAX_BODY:
        problems.append(f"{where}: body times repeat is more than {_MAX_BODY} bytes")
        return None
    return rule


def parse_spec(
    spec: Any, routes: Iterable[str] | None = None, actions: Iterable[str] = ACTIONS
) -> tuple[list[Rule], dict[str, float], int | None]:
    """A fault spec checked whole: (rules, latency in seconds by route, seed or None).

    ``routes``: the server's route names (None: any name); ``actions``: the actions it knows
    (the common ones and its own). Raises FaultSpecError with every problem found.
    """
    names = frozenset(routes) if routes is not None else None
    known = frozenset(actions)
    if not isinstance(spec, dict):
        raise FaultSpecError([f"expected a JSON object like {EXAMPLE}, got {_kind(spec)}"])
    problems: list[str] = []
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        problems.append(
            f"unknown key {', '.join(map(repr, unknown))}; the keys: {', '.join(SPEC_KEYS)} "
            '(a rule\'s keys go inside "rules": [...])'
        )
    rules: list[Rule] = []
    raw_rules = spec.get("rules", [])
    if not isinstance(raw_rules, list):
        problems.append(f"rules: expected a list of rules like {EXAMPLE[10:-1]}")
        raw_rules = []
    for i, raw in enumerate(raw_rules):
        rule = _rule(i, raw, names, problems, known)
        if rule is not None:
            rules.append(rule)
    latency: dict[str, float] = {}
    raw_latency = spec.get("latency_ms", {})
    if not isinstance(raw_latency, dict):
        problems.append('latency_ms: expected {"route or *": milliseconds}')
        raw_latency = {}
    for route, ms in raw_latency.items():
        if names is not None and route != "*" and route not in names:
            problems.append(
                f'latency_ms: {route!r} is not a route here; expected "*" or '
                f"{', '.join(sorted(names))}"
            )
        value = _number(ms, 0, 600_000)
        if value is None:
            problems.append(f"latency_ms.{route}: {ms!r}; expected milliseconds, 0 to 600000")
        else:
            latency[route] = value / 1000
    seed = spec.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        problems.append(f"seed: {seed!r}; expected an integer")
    if problems:
        raise FaultSpecError(problems)
    return rules, latency, seed


def _kind(value: Any) -> str:
    """What a parsed JSON value is, for a message."""
    if value is None:
        return "nothing"
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")


class Faults:
    """The fault table: deterministic with a seed; changed at run time via ``/_sandbox/faults``."""

    def __init__(self, seed: int = 7) -> None:
        self.lock = threading.Lock()
        self.rules: list[Rule] = []
        self.random = random.Random(seed)
        self.latency: dict[str, float] = {}  # route (or "*") → seconds
        self.injected = 0

    def configure(
        self, spec: Any, routes: Iterable[str] | None = None, actions: Iterable[str] = ACTIONS
    ) -> None:
        """Replace the table: ``{"latency_ms": {"*": 10}, "rules": [{...}], "seed": 1}``;
        nothing changes when the spec has a problem (FaultSpecError)."""
        rules, latency, seed = parse_spec(spec, routes, actions)
        with self.lock:
            self.latency = latency
            self.rules = rules
            if seed is not None:
                self.random = random.Random(seed)

    def table(self) -> dict[str, Any]:
        """The faults in force (rules with the count they have left)."""
        with self.lock:
            return {
                "rules": [asdict(r) for r in self.rules],
                "latency_ms": {k: v * 1000 for k, v in self.latency.items()},
                "injected": self.injected,
            }

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
            if not self.server.json_body and parts.path != FAULTS_PATH:
                body: Any = None  # the server reads ``raw`` itself (XML, its own JSON errors)
            elif headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                body = dict(parse_qsl(raw.decode("utf-8")))
            else:
                body = json.loads(raw) if raw else None
        except ValueError:
            if parts.path != FAULTS_PATH:  # that route reads the raw body and says what it takes
                self._send(Response(400, {"detail": "invalid JSON body"}))
                return
            body = None
        req = Request(
            self.command,
            parts.path,
            {k: v[-1] for k, v in parse_qs(parts.query).items()},
            headers,
            body,
            raw=raw,
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

    # (method, route name, path pattern, name of the handler method): ``table`` is built from
    # it; the route names are what faults and stats know the routes by.
    ROUTES: tuple[tuple[str, str, str, str], ...] = ()
    # Route names that ``route`` gives besides those of ``ROUTES`` (faults may aim at them).
    extra_routes: tuple[str, ...] = ()
    # Fault actions this server's routes apply to their own answers, besides ``ACTIONS``.
    extra_actions: tuple[str, ...] = ()
    # False: the handler does not parse bodies as JSON (``Request.raw`` is the route's to read).
    json_body = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, seed: int = 7) -> None:
        super().__init__((host, port), _Handler)
        self.table: list[tuple[str, str, re.Pattern[str], Route]] = [
            (method, name, re.compile(pattern), getattr(self, handler))
            for method, name, pattern, handler in self.ROUTES
        ]
        # The serving loop's wake-up: a byte on this pair stops it at once.
        self._wake_r, self._wake_w = socket.socketpair()
        self._serving = threading.Event()
        self._served = threading.Event()
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

    @classmethod
    def route_names(cls) -> list[str]:
        """The names faults and stats know this server's routes by."""
        return sorted({name for _m, name, _p, _h in cls.ROUTES} | set(cls.extra_routes))

    @classmethod
    def action_names(cls) -> list[str]:
        """The fault actions this server takes: the common ones and its own."""
        return sorted(ACTIONS | set(cls.extra_actions))

    def set_faults(self, req: Request) -> Response:
        """``POST /_sandbox/faults``: the body must be a JSON object (whatever its
        Content-Type says: curl sends JSON as a form by default); a 400 lists what is allowed."""
        allowed = {
            "keys": SPEC_KEYS,
            "rule_keys": RULE_KEYS,
            "actions": self.action_names(),
            "routes": self.route_names(),
            "example": json.loads(EXAMPLE),
        }
        try:
            spec = json.loads(req.raw) if req.raw.strip() else None
        except ValueError:
            shown = req.raw[:60].decode("utf-8", "replace")
            return Response(
                400,
                {
                    "detail": f"bad fault spec: the body is not JSON ({shown!r}); expected a "
                    f"JSON object like {EXAMPLE} ({{}} clears every fault). With curl: "
                    f"curl -d '{EXAMPLE}' URL. Routes here: {', '.join(self.route_names())}",
                    "allowed": allowed,
                },
            )
        try:
            self.faults.configure(spec, self.route_names(), self.action_names())
        except FaultSpecError as exc:
            return Response(
                400,
                {"detail": f"bad fault spec (nothing changed): {exc}", "problems": exc.problems,
                 "allowed": allowed},
            )  # fmt: skip
        return Response(200, {"ok": True, **self.faults.table()})

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
        if req.path == FAULTS_PATH:
            if req.method == "POST":
                return self.set_faults(req)
            if req.method == "GET":
                return Response(
                    200,
                    {**self.faults.table(), "routes": self.route_names(),
                     "actions": self.action_names()},
                )  # fmt: skip
            return Response(405, {"detail": f"{FAULTS_PATH}: GET or POST"}, {"Allow": "GET, POST"})
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

    def serve_forever(self, poll_interval: float | None = None) -> None:
        """Handle requests until ``shutdown``: waits on the listening socket and the wake-up
        socket without a timeout, so a stop is seen at once (``poll_interval`` is ignored)."""
        self._served.clear()
        self._serving.set()
        try:
            with selectors.DefaultSelector() as selector:
                selector.register(self, selectors.EVENT_READ)
                selector.register(self._wake_r, selectors.EVENT_READ)
                while True:
                    ready = selector.select()
                    if any(key.fileobj is self._wake_r for key, _ in ready):
                        self._wake_r.recv(64)  # taken: a later serve_forever waits again
                        return
                    if ready:
                        self._handle_request_noblock()  # type: ignore[attr-defined]  # stdlib, untyped
                    self.service_actions()
        finally:
            self._serving.clear()
            self._served.set()

    def shutdown(self) -> None:
        """Stop the serving loop and wait for it to end (at once when it is not running)."""
        if self._serving.is_set():
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
            self._served.wait()

    def start(self) -> Self:
        """Serve in a background thread."""
        self.thread = threading.Thread(
            target=self.serve_forever, daemon=True, name=type(self).__name__
        )
        self.thread.start()
        self._serving.wait()  # a stop right after the start must find the loop
        return self

    def stop(self) -> None:
        """Stop serving and close the sockets."""
        self.shutdown()
        self.server_close()
        self._wake_r.close()
        self._wake_w.close()
