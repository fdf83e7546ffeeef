"""``CookieLogin``: a login whose answer sets session cookies (SAP Business One).

The Service Layer: ``POST /Login`` with ``{CompanyDB, UserName, Password}`` sets ``B1SESSION``
(and ``ROUTEID``); the cookies go on every call until ``SessionTimeout`` minutes pass.

Options (under ``CookieLogin``): ``Body`` (required: a JSON template, ``{username}`` and
``{password}`` being the connector's ``Username`` and ``Password``), ``Path`` (``/Login``),
``Method`` (``POST``), ``TimeoutPath`` (JMESPath to the lifetime in minutes, default
``SessionTimeout``; 30 minutes when the answer has none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.config.checks import Options
from integrator.connectors.auth import (
    Auth,
    AuthConfig,
    Kind,
    LoginAuth,
    LoginRefused,
    Send,
    Url,
    credentials_used,
    fill,
    raw_body,
    seconds,
)

if TYPE_CHECKING:
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = ["KIND", "CookieLogin", "CookieSessionAuth"]

OPTION = "CookieLogin"
_DEFAULT_MINUTES = 30.0


@dataclass(frozen=True)
class CookieLogin(AuthConfig):
    """A login whose answer sets session cookies (SAP Business One: ``POST /Login``)."""

    path: str
    body: Any
    method: str = "POST"
    timeout_path: str = "SessionTimeout"  # JMESPath to the session lifetime in minutes

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """A login on first use, renewed when the session times out or on one 401."""
        return CookieSessionAuth(connector, self, send, redactor, url(self.path))


def read(o: Options, raw: Any) -> CookieLogin | None:
    """``CookieLogin``, checked; None when the connector has none."""
    if o.data.get(OPTION) is None:
        return None
    t = Options(
        o.data[OPTION], o.doc, o.sub(OPTION), o.issues, {"Path", "Method", "Body", "TimeoutPath"}
    )
    cl = CookieLogin(
        path=t.get("Path", str, "/Login"),
        body=t.get("Body", dict, {}, required=True),
        method=t.get("Method", str, "POST").upper(),
        timeout_path=t.get("TimeoutPath", str, "SessionTimeout"),
    )
    credentials_used(o, t, cl.body, raw_body(raw, OPTION))
    return cl


class CookieSessionAuth(LoginAuth):
    """SAP Business One Service Layer: ``POST /Login`` sets ``B1SESSION`` (and ``ROUTEID``)."""

    def __init__(
        self, cfg: ConnectorConfig, cl: CookieLogin, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.cl = cl

    def _login(self) -> tuple[dict[str, str], float | None]:
        import jmespath

        cl, cfg = self.cl, self.cfg
        what = f"{cl.method} {cfg.name}:{cl.path}"
        resp = self.send(cl.method, self.url, fill(cl.body, self._credentials()), None, "")
        if not resp.ok:
            raise self._refused(what, resp, "UserName, Password and CompanyDB")
        cookies = {c.name: c.value or "" for c in resp.cookies}
        if not cookies:
            raise LoginRefused(f"login {what}: the answer set no session cookie")
        self._keep(*cookies.values())
        answer = self._json(what, resp) if resp.content else {}
        minutes = jmespath.search(cl.timeout_path, answer) if cl.timeout_path else None
        ttl = (seconds(minutes) or _DEFAULT_MINUTES) * 60
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        return {"Cookie": cookie}, ttl


KIND = Kind(
    name="cookie_login",
    selector=OPTION,
    keys=frozenset({OPTION}),
    secrets=frozenset(),
    read=read,
)
