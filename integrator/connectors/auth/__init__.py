"""How a connector proves who it is: static credentials, or a login whose result is reused.

Each kind is one module of this package, which owns everything about it: the connector options
it reads (and which of them are secrets), its frozen config, the checks of those options
(reported through :class:`~integrator.config.checks.Options`, every problem at once), and the
:class:`Auth` it builds. The built-in kinds, one per connector:

* ``bearer``: ``BearerToken`` → ``Authorization: Bearer …``.
* ``token_login``: ``TokenLogin`` → a login call; the token at ``TokenPath`` goes into
  ``Header`` by ``HeaderFormat`` (Omnitron: ``POST auth/login/`` → ``key`` → ``Token …``). With a
  ``Body`` template it is the session login of JSON-RPC ERPs (``result.session_id`` → a header).
* ``oauth2``: ``ClientAppId``/``ClientAppSecret`` → OAuth2 client credentials at ``TokenUrl``;
  the token is cached until ``expires_in`` (less a margin).
* ``cookie_login``: ``CookieLogin`` → SAP Business One's Service Layer: ``POST /Login``, then the
  session cookies on every call until ``SessionTimeout`` minutes pass.
* ``basic``: ``Username``/``Password`` alone → basic auth (the fallback: a login kind also
  uses them, as ``{username}``/``{password}`` in its body).

A kind is a :class:`Kind` in the registry: the built-in modules are listed in ``_BUILTIN``;
another one is added by :func:`register` from its own module. The loader asks the registry
which kinds a connector sets (one at most), then each kind reads its options.

A login-based kind logs in on first use, again once its credential expires, and again once when
a call answers 401 (:meth:`Auth.expired` with the generation the call used, so that many
workers hitting 401 together cause one login). Every credential it obtains is added to the
redactor before it is used, so it cannot reach a log line or an error message.

Nothing here imports requests at module level: ``validate`` reads the kinds' options.
"""

from __future__ import annotations

import importlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.errors import AuthenticationError

if TYPE_CHECKING:
    import requests

    from integrator.config.checks import Options
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = [
    "Auth",
    "AuthConfig",
    "Kind",
    "LoginAuth",
    "LoginRefused",
    "Send",
    "build_auth",
    "kinds",
    "register",
    "unregister",
]

# (method, url, json body or encoded bytes, form body, content type of bytes) → response;
# raises LoginRefused when nothing came back
Send = Callable[[str, str, Any, "dict[str, str] | None", str], "requests.Response"]
# a path of the connector (or an absolute URL) → the URL to call
Url = Callable[[str], str]

_MARGIN = 0.1  # renew at 90 % of a credential's lifetime


class LoginRefused(AuthenticationError):
    """A login call failed or was refused: the message says which connector and what to check."""


class AuthConfig:
    """A kind's frozen config, as the loader read it; ``ConnectorConfig.auth`` holds one."""

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """The connector's :class:`Auth` (``url`` makes a login path into a URL)."""
        raise NotImplementedError

    def urls(self) -> tuple[str, ...]:
        """URLs of this config, whose credentials (userinfo, secret query values) are secrets."""
        return ()


@dataclass(frozen=True)
class Kind:
    """One way to log in, as the loader sees it.

    ``selector``: the connector option whose presence chooses the kind ("" for a fallback,
    chosen when no other kind is set and ``read`` gives a config); ``keys``: every connector
    option it owns; ``secrets``: those of them that hold a secret (a literal value in the YAML
    is refused); ``read(options, raw)``: its config or None, problems recorded on ``options``
    (``raw`` is the connector's mapping before ``${…}`` interpolation).
    """

    name: str
    selector: str
    keys: frozenset[str]
    secrets: frozenset[str]
    read: Callable[[Options, Any], AuthConfig | None]


# Built-in kinds, in the order the loader names them when several are set.
_BUILTIN = ("bearer", "token_login", "cookie_login", "oauth2", "basic")
_registered: list[Kind] = []
_loaded: list[Kind] = []
_lock = threading.Lock()


def register(kind: Kind) -> None:
    """Add a kind (after the built-in ones); a name already known replaces that kind."""
    with _lock:
        _registered[:] = [k for k in _registered if k.name != kind.name] + [kind]


def unregister(name: str) -> None:
    """Remove a registered kind (a built-in one it replaced comes back)."""
    with _lock:
        _registered[:] = [k for k in _registered if k.name != name]


def kinds() -> list[Kind]:
    """Every kind: the built-in ones (imported on first use), then the registered ones."""
    if not _loaded:
        with _lock:
            if not _loaded:
                _loaded.extend(importlib.import_module(f"{__name__}.{m}").KIND for m in _BUILTIN)
    names = {k.name for k in _registered}
    return [k for k in _loaded if k.name not in names] + list(_registered)


def build_auth(cfg: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
    """The connector's auth, from its config (the loader allows one kind per connector)."""
    return cfg.auth.build(cfg, send, redactor, url) if cfg.auth is not None else Auth()


class Auth:
    """Static credentials: the same headers on every call; nothing to renew."""

    refreshable = False

    def __init__(self, headers: dict[str, str] | None = None) -> None:
        self._static = headers or {}

    def current(self) -> tuple[dict[str, str], int]:
        """The headers to send and the generation they belong to."""
        return self._static, 0

    def expired(self, generation: int) -> None:
        """A call made with ``generation`` answered 401; static credentials cannot renew."""

    def login(self) -> None:
        """Nothing to do for static credentials."""


class LoginAuth(Auth):
    """A credential obtained by a login call, cached, renewed on expiry or on one 401."""

    refreshable = True

    def __init__(self, cfg: ConnectorConfig, send: Send, redactor: Redactor, url: str) -> None:
        super().__init__()
        self.cfg, self.send, self.redactor, self.url = cfg, send, redactor, url
        self.lock = threading.Lock()
        self.headers: dict[str, str] | None = None
        self.answer: Any = None  # the last login's answer (expressions read it as ``login``)
        self.expires_at = 0.0
        self.generation = 0

    def current(self) -> tuple[dict[str, str], int]:
        """Cached headers, logging in first when there are none or they expired."""
        headers, generation = self.headers, self.generation
        if headers is not None and time.monotonic() < self.expires_at:
            return headers, generation
        with self.lock:
            if self.headers is None or time.monotonic() >= self.expires_at:
                self._renew()
            assert self.headers is not None
            return self.headers, self.generation

    def expired(self, generation: int) -> None:
        """Forget the credential unless another call has renewed it since."""
        with self.lock:
            if generation == self.generation:
                self.headers = None

    def login(self) -> None:
        """Log in now (the login stage does, so that a refused login stops the run early)."""
        self.current()

    def _renew(self) -> None:
        from integrator.config.checks import header_problem

        headers, ttl = self._login()
        for name, value in headers.items():  # a hostile answer's token with CR LF, say
            problem = header_problem(value)
            if problem is not None:
                raise LoginRefused(
                    f"login of connector {self.cfg.name!r}: its answer makes header {name!r}, "
                    f"which would hold {problem}; no call was sent with it"
                )
        self.headers = headers
        self.expires_at = time.monotonic() + (ttl * (1 - _MARGIN) if ttl else float("inf"))
        self.generation += 1

    def _login(self) -> tuple[dict[str, str], float | None]:
        raise NotImplementedError

    def _refused(self, what: str, resp: requests.Response, check: str) -> LoginRefused:
        if resp.status_code in (400, 401, 403):
            return LoginRefused(
                f"login {what} refused ({resp.status_code}): check the {check} of connector "
                f"{self.cfg.name!r}"
            )
        return LoginRefused(f"login {what} answered {resp.status_code}")

    def _json(self, what: str, resp: requests.Response) -> Any:
        try:
            return resp.json()
        except (ValueError, RecursionError):  # RecursionError: nested too deep to read
            raise LoginRefused(f"login {what}: the answer is not JSON") from None

    def _credentials(self) -> dict[str, str]:
        """What a login body template's ``{username}``/``{password}`` stand for."""
        return {"username": self.cfg.username, "password": self.cfg.password}

    def _keep(self, *values: str) -> None:
        self.redactor.add([v for v in values if v])


# ---------------------------------------------------------------- helpers the kinds share


def fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with ``{username}`` / ``{password}`` in its strings replaced."""
    if isinstance(template, str):
        for k, v in values.items():
            template = template.replace("{" + k + "}", v)
        return template
    if isinstance(template, dict):
        return {k: fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [fill(v, values) for v in template]
    return template


def seconds(value: Any) -> float | None:
    """``value`` as a positive number of seconds (or minutes), or None."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def raw_body(raw: Any, option: str) -> object:
    """The ``Body`` of login option ``option`` as written (before ``${…}`` interpolation)."""
    login = raw.get(option) if isinstance(raw, dict) else None
    return login.get("Body") if isinstance(login, dict) else None


def credentials_used(o: Options, t: Options, body: object, raw: object) -> None:
    """A login body takes the password from ``{password}`` or ${ENV}; a literal is refused.

    ``o``: the connector's options; ``t``: the login's; ``raw``: the body as written."""
    from integrator.config.interpolate import is_secret_key

    if body is None:
        return
    for k, v in _walk(raw):
        if (
            is_secret_key(k)
            and isinstance(v, str)
            and v
            and "{password}" not in v
            and "${" not in v
        ):
            t.error(
                "Body",
                f"{k!r} must be '{{password}}' (filled from the connector's Password, which "
                "comes from ${ENV_VAR}), not a value written in the YAML",
            )
    if "{password}" in repr(body) and not o.data.get("Password"):
        o.error("Password", "the login body uses {password}: set Password: ${ENV_VAR}")


def _walk(node: object) -> list[tuple[str, object]]:
    if isinstance(node, dict):
        out: list[tuple[str, object]] = []
        for k, v in node.items():
            out.append((str(k), v))
            out += _walk(v)
        return out
    if isinstance(node, list):
        return [kv for v in node for kv in _walk(v)]
    return []
