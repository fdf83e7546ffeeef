"""What keeps the console local until it has login: loopback only, the Host header checked,
and nothing but reads.

A page on ``evil.example`` whose name an attacker makes resolve to 127.0.0.1 (DNS
rebinding) reaches a loopback server from the victim's browser, with ``Host: evil.example``;
answering only to loopback names and addresses in the Host header keeps that page from
reading the console. This module imports no web framework.
"""

from __future__ import annotations

import ipaddress
import json
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

__all__ = [
    "LOOPBACK_NAMES",
    "HostGuard",
    "Requirement",
    "host_allowed",
    "loopback_refusal",
    "requirement_of",
    "requires",
]

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
_HOST = re.compile(r"(?P<name>\[[0-9A-Fa-f:.]+\]|[^:\[\]]+)(?::(?P<port>[0-9]{1,5}))?")

StartResponse = Callable[..., Any]
Wsgi = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Requirement:
    """What a route needs: a role, and (``state_changing``) CSRF protection. The one place
    where routes say so; the login helper enforces it."""

    role: str
    state_changing: bool = False


def requires(role: str, *, state_changing: bool = False) -> Callable[[F], F]:
    """Mark a view: it needs ``role`` (and CSRF when ``state_changing``). For now a marker
    only (no login exists yet): ``HostGuard`` lets POST reach marked state-changing routes
    only, and only from the console's own pages (see ``HostGuard``)."""
    need = Requirement(role, state_changing)

    def mark(view: F) -> F:
        view.__dict__["integrator_requires"] = need
        return view

    return mark


def requirement_of(view: Callable[..., Any] | None) -> Requirement | None:
    """What ``requires`` marked ``view`` with (None: nothing; a read)."""
    found = getattr(view, "integrator_requires", None)
    return found if isinstance(found, Requirement) else None


def loopback_refusal(host: str) -> str | None:
    """Why the console must not listen on ``host`` (None: it may): every address the name
    resolves to must be a loopback address."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        return f"{host} cannot be resolved ({exc.strerror or exc})"
    addresses = {ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos}
    if addresses and all(a.is_loopback for a in addresses):
        return None
    return (
        f"{host} is reachable from other machines, and the console has no login yet: it "
        "listens on loopback only (127.0.0.1, ::1 or localhost). To reach it from another "
        "machine, use an SSH tunnel (ssh -L 9109:127.0.0.1:9109 host)"
    )


def host_allowed(header: str | None) -> bool:
    """A Host header naming loopback (``localhost``, ``127.x.y.z``, ``[::1]``), any port."""
    if not header:
        return False
    found = _HOST.fullmatch(header.strip())
    if found is None:
        return False
    name = found["name"].lower()
    if name.startswith("["):
        name = name[1:-1]
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HostGuard:
    """WSGI middleware: 421 for a Host that is not loopback; 405 for anything but GET/HEAD,
    except a POST to a path ``writable`` accepts (routes marked ``requires(...,
    state_changing=True)``).

    Until login and CSRF tokens exist, such a POST must also come from the console's own
    pages: an ``Origin`` header, when sent, names a loopback origin, and the request carries
    ``HX-Request: true`` (htmx) or a JSON body. A page elsewhere cannot send either across
    origins without a CORS preflight, which the console never answers, so another site open
    in the same browser cannot make the console run anything."""

    def __init__(self, app: Wsgi, writable: Callable[[str], bool] | None = None) -> None:
        self.app = app
        self.writable = writable or (lambda _path: False)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if not host_allowed(environ.get("HTTP_HOST")):
            return _refuse(
                start_response,
                "421 Misdirected Request",
                "the console answers only to a loopback Host header (localhost, 127.0.0.1, "
                "[::1]); open it as http://127.0.0.1:PORT/",
            )
        method = environ.get("REQUEST_METHOD")
        if method == "POST" and self.writable(str(environ.get("PATH_INFO") or "/")):
            why = _not_own_page(environ)
            if why is not None:
                return _refuse(start_response, "403 Forbidden", why)
            return self.app(environ, start_response)
        if method not in ("GET", "HEAD"):
            return _refuse(
                start_response,
                "405 Method Not Allowed",
                "the console is read-only here: this path takes GET and HEAD",
                [("Allow", "GET, HEAD")],
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
