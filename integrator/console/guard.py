"""What keeps the console local: loopback only, the Host header checked, and nothing but
reads until users are configured (then POST too, each checked by ``security``), but for the
few routes ``security.LOCAL_WRITES`` names (the workbench's runs), taken only from the
console's own pages.

A page on ``evil.example`` whose name an attacker makes resolve to 127.0.0.1 (DNS
rebinding) reaches a loopback server from the victim's browser, with ``Host: evil.example``;
answering only to loopback names and addresses in the Host header keeps that page from
reading the console. This module imports no web framework.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

__all__ = ["LOOPBACK_NAMES", "HostGuard", "host_allowed", "loopback_refusal"]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def loopback_refusal(host: str) -> str | None:
    """Why the console must not listen on ``host`` (None: it may): every address the name
    resolves to must be a loopback address."""
    from integrator.scheduler.web import loopback_only

    try:
        if loopback_only(host):
            return None
    except OSError as exc:
        return f"{host} cannot be resolved ({exc.strerror or exc})"
    return (
        f"{host} is reachable from other machines, and the console has no login yet: it "
        "listens on loopback only (127.0.0.1, ::1 or localhost). To reach it from another "
        "machine, use an SSH tunnel (ssh -L 9109:127.0.0.1:9109 host)"
    )


def host_allowed(
    header: str | None, public_host: str | None = None, *, any_address: bool = False
) -> bool:
    """A Host header naming loopback (``localhost``, ``127.x.y.z``, ``[::1]``), any port, or
    ``public_host`` (the name a reverse proxy passes on, ``--public-host``); with
    ``any_address``, any IP address too (a scraper that reaches the daemon by address: DNS
    rebinding needs a name, and a page served from an address is of another origin)."""
    if not header:
        return False
    found = _HOST.fullmatch(header.strip())
    if found is None:
        return False
    name = found["name"].lower()
    if name.startswith("["):
        name = name[1:-1]
    if public_host and name == public_host.lower().strip("[]"):
        return True
    if name in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return False
    return any_address or address.is_loopback


class HostGuard:
    """WSGI middleware: 421 for a Host that is neither loopback nor ``public_host``.

    With users (``writes()``): GET, HEAD and POST pass, and ``security`` checks each request's
    role and CSRF token; anything else is 405.

    Without users (the loopback console, no login): 405 for anything but GET/HEAD, except a
    POST to a path ``local_write`` accepts (``security.LOCAL_WRITES``: the workbench's runs),
    which must come from the console's own pages: an ``Origin`` header, when sent, names a
    loopback origin, and the request carries ``HX-Request: true`` (htmx) or a JSON body. A
    page elsewhere cannot send either across origins without a CORS preflight, which the
    console never answers, so another site open in the same browser cannot make it run
    anything."""

    def __init__(
        self,
        app: Wsgi,
        writes: Callable[[], bool] = lambda: False,
        public_host: str | None = None,
        local_write: Callable[[str], bool] = lambda _path: False,
        methods: Callable[[str], Iterable[str]] = lambda _path: (),
        body_limit: Callable[[str, str], int] | None = None,
    ) -> None:
        self.app, self.writes, self.public_host = app, writes, public_host
        self.local_write, self.methods = local_write, methods
        # the most body a route takes (method, path): the HTTP server reads no more, and the
        # app answers a larger one (``scheduler.web.BODY_REFUSED``) in its own words
        self.body_limit = body_limit

    def _allow(self, path: str, taken: tuple[str, ...]) -> list[tuple[str, str]]:
        """The ``Allow`` header of a 405 for ``path``: what its routes take of ``taken`` (the
        methods served now), or ``taken`` for a path no route matches."""
        routes = set(self.methods(path))
        return [("Allow", ", ".join(m for m in taken if m in routes or not routes))]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not host_allowed(environ.get("HTTP_HOST"), self.public_host):
            also = f" or {self.public_host}" if self.public_host else ""
            return _refuse(
                start_response,
                "421 Misdirected Request",
                "the console answers only to a loopback Host header (localhost, 127.0.0.1, "
                f"[::1]){also}; open it as http://127.0.0.1:PORT/",
            )
        if self.public_host is not None and not self.writes():
            # Served beyond loopback (only ever started with users): a reload that took the
            # users away must not leave it open to whoever reaches the port, read-only or not.
            return _refuse(
                start_response,
                "403 Forbidden",
                "the console is served beyond loopback and no console users are configured: "
                "declare users in config.yaml (console: users:), or serve it on loopback",
            )
        method = environ.get("REQUEST_METHOD")
        path = str(environ.get("PATH_INFO") or "/")
        if self.writes():
            if method not in ("GET", "HEAD", "POST"):
                return _refuse(
                    start_response,
                    "405 Method Not Allowed",
                    "the console takes GET, HEAD and POST",
                    self._allow(path, ("GET", "HEAD", "POST")),
                )
            return self.app(environ, start_response)
        if method == "POST" and self.local_write(path):
            why = _not_own_page(environ)
            if why is not None:
                return _refuse(start_response, "403 Forbidden", why)
            return self.app(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _refuse(
                start_response,
                "405 Method Not Allowed",
                "the console is read-only here: this path takes GET and HEAD",
                self._allow(
                    path, ("GET", "HEAD", "POST") if self.local_write(path) else ("GET", "HEAD")
                ),
            )
        return self.app(environ, start_response)


def _not_own_page(environ: dict[str, Any]) -> str | None:
    """Why a POST does not come from the console's own pages (None: it does)."""
    origin = environ.get("HTTP_ORIGIN")
    if origin is not None:
        parts = urlsplit(str(origin))
        if parts.scheme not in ("http", "https") or not host_allowed(parts.netloc):
            return f"a request from {origin} may not act on the console; use its own pages"
    kind = str(environ.get("CONTENT_TYPE") or "").partition(";")[0].strip().lower()
    if environ.get("HTTP_HX_REQUEST") != "true" and kind != "application/json":
        return (
            "an action needs the console's page (htmx sends HX-Request: true) or a JSON "
            "body (Content-Type: application/json)"
        )
    return None


def _refuse(
    start_response: StartResponse,
    status: str,
    detail: str,
    extra: list[tuple[str, str]] | None = None,
) -> list[bytes]:
    body = json.dumps({"detail": detail}).encode()
    start_response(
        status,
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *(extra or []),
        ],
    )
    return [body]
