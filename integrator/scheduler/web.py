"""The daemon's web application: a WSGI app with a JSON API (the console grows here).

- ``GET /healthz``: the scheduler runs and the state store answers (200, else 503).
- ``GET /metrics``: Prometheus text.
- ``POST /events/<flow>``: an event subscription's webhook (``Daemon.accept_event``).
- everything else: the operator console (``integrator.console``, a WSGI app of its own) when
  the daemon listens on loopback; beyond loopback (``--behind-proxy``) it is not served until
  it has login.

The server that runs it, with its bounds, is ``integrator.scheduler.httpserver`` (waitress,
imported only when the daemon starts serving). This module does not import waitress, so that
``integrator --version`` and every other command start without it.
"""

from __future__ import annotations

import http
import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from integrator.scheduler.daemon import Daemon

__all__ = [
    "BODY_REFUSED",
    "LOOPBACK_PROXIES",
    "App",
    "HttpLimits",
    "Request",
    "Response",
    "bind_refusal",
    "loopback_only",
    "peer_address",
    "proxy_address",
    "too_large",
]

log = structlog.get_logger("integrator.http")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
JSON = "application/json"
# environ key: the server refused the request's body (over the route's ``body_limit``), read
# none of it, and asks the app to answer 413 with this detail in its own words
BODY_REFUSED = "integrator.body_refused"


def too_large(limit: int) -> str:
    """The words of a 413: the limit, in bytes and KiB."""
    return (
        f"the request's body is larger than {limit} bytes ({limit / 1024:g} KiB), the most "
        "this route takes; nothing of it was read"
    )


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the daemon's HTTP server (``--http-timeout``, ``--http-connections``).

    ``request_seconds``: a request must arrive whole (request line, headers and body) within
    this many seconds of its first byte, however steadily it drips; else 408 and the
    connection is closed. ``idle_seconds``: a connection with nothing to do (a keep-alive
    between requests, a client that connected and sent nothing, a response nobody reads) is
    closed after this many seconds without progress. ``connections``: at most this many
    open at once; the next ones wait in the listen backlog until one is closed.
    ``max_body_bytes``: the body ``POST /events/<flow>`` takes (and any route of an app that
    has no ``body_limit`` of its own; the console's routes have theirs).
    """

    request_seconds: float = 10.0
    idle_seconds: float = 10.0
    connections: int = 100
    max_header_bytes: int = 64 * 1024
    max_body_bytes: int = 1024 * 1024
    threads: int = 4
    backlog: int = 1024


def loopback_only(host: str) -> bool:
    """Every address ``host`` resolves to is a loopback one (the daemon's and the console's
    bind checks); OSError when it cannot be resolved."""
    infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    return bool(addresses) and all(a.is_loopback for a in addresses)


def bind_refusal(host: str, behind_proxy: bool) -> str | None:
    """Why the daemon must not listen on ``host`` (None: it may). Plain HTTP carries the
    events' secrets, so beyond loopback only with ``--behind-proxy``: the user says that a
    reverse proxy terminates TLS in front of it (deploy/Caddyfile, deploy/nginx.conf)."""
    if behind_proxy:
        return None
    try:
        if loopback_only(host):
            return None
    except OSError:
        return None  # the bind itself fails with the resolver's message
    return (
        f"{host} is reachable from other machines, and the daemon speaks plain HTTP: the "
        "event secrets would cross the network in clear text. Listen on loopback "
        "(--http 127.0.0.1:9108) and put a reverse proxy with TLS in front of it "
        "(deploy/Caddyfile or deploy/nginx.conf). If a proxy or a container's port mapping "
        "already keeps it off the network, say so with --behind-proxy."
    )


# --behind-proxy without --trusted-proxy: the documented deploy, a proxy on the same host
LOOPBACK_PROXIES: tuple[str, ...] = ("127.0.0.1", "::1")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def proxy_address(text: str) -> str:
    """One ``--trusted-proxy`` value, normalised (``[::1]`` -> ``::1``, an IPv4-mapped IPv6
    address -> its IPv4 one); ValueError saying what was expected."""
    value = text.strip()
    shown = repr(text)
    if not value:
        raise ValueError("an empty address (a stray comma?): name the proxy's IP address")
    if value in ("*", "all", "any"):
        raise ValueError(
            f"{shown}: trusting every peer is not offered (whoever reaches the port could "
            "claim any client address and HTTPS); name the proxy's address"
        )
    try:
        network = ipaddress.ip_network(value.strip("[]"), strict=False)
    except ValueError:
        network = None
    if network is not None and network.num_addresses > 1:
        raise ValueError(
            f"{shown} is a network: name each proxy's address (an IP such as 127.0.0.1)"
        )
    ip = peer_address(value)
    if ip is None:
        raise ValueError(
            f"expected the proxy's IP address (such as 127.0.0.1 or ::1; not a host name), "
            f"got {shown}"
        )
    if ip.is_unspecified or ip.is_multicast:
        raise ValueError(f"{shown} is no peer's address: name the address the proxy connects from")
    return str(ip)


def peer_address(text: str) -> IPAddress | None:
    """A peer's address as an IP (an IPv4-mapped IPv6 one as its IPv4; brackets dropped), or
    None when it is not one."""
    try:
        ip = ipaddress.ip_address(text.strip().removeprefix("[").removesuffix("]"))
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class Headers(Mapping[str, str]):
    """A request's headers from the WSGI environ, by their HTTP names, case-insensitive."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    @staticmethod
    def _key(name: str) -> str:
        key = name.upper().replace("-", "_")
        return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"

    def __getitem__(self, name: str) -> str:
        return str(self._environ[self._key(name)])

    def __iter__(self) -> Any:
        for key in self._environ:
            if key.startswith("HTTP_"):
                yield key[5:].replace("_", "-").title()
            elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                yield key.replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


@dataclass
class Request:
    method: str
    path: str
    headers: Headers
    body: bytes = b""
    params: dict[str, str] = field(default_factory=dict)


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, value: Any) -> Response:
        return cls(status, json.dumps(value).encode())


Handler = Callable[[Request], Response]


class App:
    """The WSGI application: a table of routes, JSON answers, and no exception that escapes
    (a failing handler is logged here and answered 500; waitress never prints one)."""

    def __init__(
        self,
        daemon: Daemon,
        limits: HttpLimits,
        console: WsgiApp | None = None,
        *,
        public_host: str | None = None,
    ) -> None:
        self.daemon, self.limits, self.console = daemon, limits, console
        self.public_host = public_host
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("GET", re.compile(r"/healthz"), self.healthz),
            ("GET", re.compile(r"/metrics"), self.metrics),
            ("POST", re.compile(r"/events/(?P<flow>[^/]+)"), self.event),
        ]
        # routes a page elsewhere must not read through DNS rebinding: answered only to a
        # loopback name, an address, or --public-host (``guard.host_allowed``); the events'
        # webhook keeps its own check (the flow's secret), whatever name its sender uses
        self.host_checked = {self.healthz, self.metrics}

    # ------------------------------------------------------------ routes
    def healthz(self, _request: Request) -> Response:
        ok, detail = self.daemon.healthy()
        return Response.json(200 if ok else 503, {"ok": ok, **detail})

    def metrics(self, _request: Request) -> Response:
        return Response(200, self.daemon.metrics.render(), "text/plain; version=0.0.4")

    def event(self, request: Request) -> Response:
        code, answer = self.daemon.accept_event(
            request.params["flow"], request.headers, request.body
        )
        return Response.json(code, answer)

    # ------------------------------------------------------------- WSGI
    def body_limit(self, method: str, path: str) -> int:
        """The most body the server reads for ``method path``: the daemon's own routes take
        ``HttpLimits.max_body_bytes``, the console's routes what the console says."""
        limit = getattr(self.console, "body_limit", None)
        if self.console is None or self._own({"PATH_INFO": path}) or not callable(limit):
            return self.limits.max_body_bytes
        return int(limit(method, path))

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        refused = environ.get(BODY_REFUSED)
        answers = refused is None or callable(getattr(self.console, "body_limit", None))
        if self.console is not None and not self._own(environ) and answers:
            return self.console(environ, start_response)  # it answers a refusal itself
        if refused is not None:
            return self._answer(Response.json(413, {"detail": refused}), start_response)
        try:
            response = self._dispatch(environ)
        except Exception as exc:
            log.exception(
                "http_handler_failed",
                method=environ.get("REQUEST_METHOD"),
                path=environ.get("PATH_INFO"),
                error=f"{type(exc).__name__}: {exc}",
            )
            response = Response.json(500, {"detail": "internal error; see the daemon's log"})
        return self._answer(response, start_response)

    def _answer(self, response: Response, start_response: StartResponse) -> Iterable[bytes]:
        status = f"{response.status} {http.HTTPStatus(response.status).phrase}"
        headers = [
            ("Content-Type", response.content_type),
            ("Content-Length", str(len(response.body))),
            ("Cache-Control", "no-store"),
            *response.headers,
        ]
        start_response(status, headers)
        return [response.body]

    def _own(self, environ: dict[str, Any]) -> bool:
        """A path of the daemon's own routes (the console serves every other)."""
        path = str(environ.get("PATH_INFO", "")) or "/"
        return any(pattern.fullmatch(path) for _m, pattern, _h in self.routes)

    def _dispatch(self, environ: dict[str, Any]) -> Response:
        method = str(environ.get("REQUEST_METHOD", "GET"))
        path = str(environ.get("PATH_INFO", "")) or "/"
        allowed: list[str] = []
        for route_method, pattern, handler in self.routes:
            found = pattern.fullmatch(path)
            if found is None:
                continue
            # HEAD is a GET whose body waitress does not send
            if route_method != ("GET" if method == "HEAD" else method):
                allowed += [route_method, "HEAD"] if route_method == "GET" else [route_method]
                continue
            if handler in self.host_checked and not self._host_ok(environ):
                return self._misdirected(path)
            request = Request(method, path, Headers(environ), params=found.groupdict())
            if method in ("POST", "PUT", "PATCH"):
                body = self._body(environ)
                if isinstance(body, Response):
                    return body
                request.body = body
            return handler(request)
        if allowed:
            answer = Response.json(405, {"detail": f"{path} takes {', '.join(allowed)}"})
            answer.headers.append(("Allow", ", ".join(allowed)))
            return answer
        return Response.json(
            404,
            {
                "detail": "try GET /healthz, GET /metrics, POST /events/<flow>; the console is "
                "served only when the daemon listens on loopback (it has no login yet)"
            },
        )

    def _host_ok(self, environ: dict[str, Any]) -> bool:
        from integrator.console.guard import host_allowed  # light: no web framework

        return host_allowed(environ.get("HTTP_HOST"), self.public_host, any_address=True)

    def _misdirected(self, path: str) -> Response:
        also = f", or {self.public_host}" if self.public_host else ""
        return Response.json(
            421,
            {
                "detail": f"{path} answers only to a Host header naming loopback (localhost, "
                f"127.0.0.1, [::1]) or an IP address{also}: scrape it by address "
                "(http://127.0.0.1:PORT/metrics), or name the host it is reached by with "
                "--public-host NAME"
            },
        )

    def _body(self, environ: dict[str, Any]) -> bytes | Response:
        """The whole body: waitress has buffered it, checked Content-Length (digits only, one
        value) and the size limit; checked again here, so the app holds its own promise."""
        text = str(environ.get("CONTENT_LENGTH") or "0")
        if not text.isdigit():
            return Response.json(400, {"detail": "Content-Length must be a number of bytes"})
        length = int(text)
        if length > self.limits.max_body_bytes:
            return Response.json(413, {"detail": too_large(self.limits.max_body_bytes)})
        return bytes(environ["wsgi.input"].read(length)) if length else b""
