"""How a connector proves who it is: static credentials, or a login whose result is reused.

Kinds (one per connector, chosen by its config):

* ``BearerToken`` → ``Authorization: Bearer …``; ``Username``/``Password`` alone → basic auth.
* ``TokenLogin`` → a login call; the token at ``TokenPath`` goes into ``Header`` by
  ``HeaderFormat`` (Omnitron: ``POST auth/login/`` → ``key`` → ``Token …``). With a ``Body``
  template it is the session login of JSON-RPC ERPs (``result.session_id`` → a session header).
* ``ClientAppId``/``ClientAppSecret`` → OAuth2 client credentials at ``TokenUrl``; the token is
  cached until ``expires_in`` (less a margin).
* ``CookieLogin`` → SAP Business One's Service Layer: ``POST /Login``, then the session cookies
  on every call until ``SessionTimeout`` minutes pass.

A login-based kind logs in on first use, again once its credential expires, and again once when
a call answers 401 (:meth:`Auth.expired` with the generation the call used, so that many
workers hitting 401 together cause one login). Every credential it obtains is added to the
redactor before it is used, so it cannot reach a log line or an error message.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Callable
from typing import Any

import jmespath
import requests

from integrator.config.model import ConnectorConfig, CookieLogin, TokenLogin
from integrator.connectors.redact import Redactor
from integrator.errors import AuthenticationError

__all__ = ["Auth", "LoginRefused", "build_auth"]

# (method, url, json body, form body) → response; raises LoginRefused when nothing came back
Send = Callable[[str, str, Any, dict[str, str] | None], requests.Response]

_MARGIN = 0.1  # renew at 90 % of a credential's lifetime
_DEFAULT_OAUTH_TTL = 3600.0
_DEFAULT_B1_MINUTES = 30.0


class LoginRefused(AuthenticationError):
    """A login call failed or was refused: the message says which connector and what to check."""


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
        headers, ttl = self._login()
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


def _fill(template: Any, values: dict[str, str]) -> Any:
    """``template`` with ``{username}`` / ``{password}`` in its strings replaced."""
    if isinstance(template, str):
        for k, v in values.items():
            template = template.replace("{" + k + "}", v)
        return template
    if isinstance(template, dict):
        return {k: _fill(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values) for v in template]
    return template


class TokenLoginAuth(LoginAuth):
    """A login call returning a token (Omnitron), or a JSON-RPC session id, put in a header."""

    def __init__(
        self, cfg: ConnectorConfig, tl: TokenLogin, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.tl = tl

    def _login(self) -> tuple[dict[str, str], float | None]:
        tl, cfg = self.tl, self.cfg
        what = f"{tl.method} {cfg.name}:{tl.path}"
        creds = self._credentials()
        body = _fill(tl.body, creds) if tl.body is not None else creds
        resp = self.send(tl.method, self.url, body, None)
        if not resp.ok:
            raise self._refused(what, resp, "Username and Password")
        answer = self._json(what, resp)
        token = jmespath.search(tl.token_path, answer)
        if not isinstance(token, str | int) or token in ("", None):
            error = jmespath.search("error.data.message || error.message", answer)
            if error:  # JSON-RPC: a refusal is an ``error`` member in a 200 answer
                raise LoginRefused(
                    f"login {what} refused (the ERP says: {self.redactor.scrub(str(error))}): "
                    f"check the Username and Password of connector {cfg.name!r}"
                )
            raise LoginRefused(f"login {what}: no token at {tl.token_path!r} in the answer")
        token = str(token)
        self._keep(token)
        ttl = jmespath.search(tl.expires_path, answer) if tl.expires_path else None
        return {tl.header: tl.header_format.format(token=token)}, _seconds(ttl)


class OAuth2Auth(LoginAuth):
    """OAuth2 client credentials (RFC 6749 §4.4): the token is a Bearer token until it expires."""

    def _login(self) -> tuple[dict[str, str], float | None]:
        cfg = self.cfg
        what = f"POST {cfg.name}:token"
        form = {"grant_type": "client_credentials"}
        if cfg.oauth_scope:
            form["scope"] = cfg.oauth_scope
        if cfg.oauth_resource:
            form["resource"] = cfg.oauth_resource
        form["client_id"] = cfg.client_app_id
        form["client_secret"] = cfg.client_app_secret
        resp = self.send("POST", self.url, None, form)
        if not resp.ok:
            raise self._refused(what, resp, "ClientAppId and ClientAppSecret")
        answer = self._json(what, resp)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise LoginRefused(f"login {what}: no access_token in the answer")
        self._keep(token)
        ttl = _seconds(answer.get("expires_in")) or _DEFAULT_OAUTH_TTL
        kind = str(answer.get("token_type") or "Bearer")
        return {"Authorization": f"{'Bearer' if kind.lower() == 'bearer' else kind} {token}"}, ttl


class CookieSessionAuth(LoginAuth):
    """SAP Business One Service Layer: ``POST /Login`` sets ``B1SESSION`` (and ``ROUTEID``)."""

    def __init__(
        self, cfg: ConnectorConfig, cl: CookieLogin, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.cl = cl

    def _login(self) -> tuple[dict[str, str], float | None]:
        cl, cfg = self.cl, self.cfg
        what = f"{cl.method} {cfg.name}:{cl.path}"
        resp = self.send(cl.method, self.url, _fill(cl.body, self._credentials()), None)
        if not resp.ok:
            raise self._refused(what, resp, "UserName, Password and CompanyDB")
        cookies = {c.name: c.value or "" for c in resp.cookies}
        if not cookies:
            raise LoginRefused(f"login {what}: the answer set no session cookie")
        self._keep(*cookies.values())
        answer = self._json(what, resp) if resp.content else {}
        minutes = jmespath.search(cl.timeout_path, answer) if cl.timeout_path else None
        ttl = (_seconds(minutes) or _DEFAULT_B1_MINUTES) * 60
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return {"Cookie": cookie}, ttl


def _seconds(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v > 0 else None


def build_auth(
    cfg: ConnectorConfig, send: Send, redactor: Redactor, url: Callable[[str], str]
) -> Auth:
    """The connector's auth, from its config (the loader allows one kind per connector)."""
    if cfg.client_app_id:
        return OAuth2Auth(cfg, send, redactor, url(cfg.token_url))
    if cfg.cookie_login is not None:
        return CookieSessionAuth(cfg, cfg.cookie_login, send, redactor, url(cfg.cookie_login.path))
    if cfg.token_login is not None:
        return TokenLoginAuth(cfg, cfg.token_login, send, redactor, url(cfg.token_login.path))
    if cfg.bearer_token:
        return Auth({"Authorization": f"Bearer {cfg.bearer_token}"})
    if cfg.username:
        pair = base64.b64encode(f"{cfg.username}:{cfg.password}".encode()).decode("ascii")
        redactor.add([pair])
        return Auth({"Authorization": f"Basic {pair}"})
    return Auth()
