"""``TokenLogin``: a login call whose answer carries the token, put into a header.

Omnitron: ``POST auth/login/`` with ``{username, password}`` → ``key`` → ``Token …``. With a
``Body`` template it is the session login of JSON-RPC ERPs (``result.session_id`` → a session
header); a refusal there is an ``error`` member in a 200 answer.

Options (under ``TokenLogin``): ``Path`` (required), ``TokenPath`` (JMESPath, default ``key``),
``Header`` (``Authorization``), ``HeaderFormat`` (``Token {token}``), ``Method`` (``POST``),
``Body`` (a JSON template; ``{username}``/``{password}`` are the connector's ``Username`` and
``Password``), ``ExpiresPath`` (JMESPath to a lifetime in seconds; none: valid until a 401).
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

__all__ = ["KIND", "TokenLogin", "TokenLoginAuth"]

OPTION = "TokenLogin"
_KEYS = {"Path", "TokenPath", "Header", "HeaderFormat", "Method", "Body", "ExpiresPath"}


@dataclass(frozen=True)
class TokenLogin(AuthConfig):
    """A login call whose answer carries the token (Omnitron: ``POST auth/login/`` → ``key``)."""

    path: str
    token_path: str = "key"
    header: str = "Authorization"
    header_format: str = "Token {token}"
    method: str = "POST"
    body: Any = None  # JSON template ({username}, {password}); default {username, password}
    expires_path: str = ""  # JMESPath to a lifetime in seconds; none: valid until a 401

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """A login on first use, renewed on expiry or on one 401."""
        return TokenLoginAuth(connector, self, send, redactor, url(self.path))


def read(o: Options, raw: Any) -> TokenLogin | None:
    """``TokenLogin``, checked; None when the connector has none."""
    if o.data.get(OPTION) is None:
        return None
    t = Options(o.data[OPTION], o.doc, o.sub(OPTION), o.issues, _KEYS)
    tl = TokenLogin(
        path=t.get("Path", str, "", required=True),
        token_path=t.get("TokenPath", str, "key"),
        header=t.get("Header", str, "Authorization"),
        header_format=t.get("HeaderFormat", str, "Token {token}"),
        method=t.get("Method", str, "POST").upper(),
        body=t.data.get("Body"),
        expires_path=t.get("ExpiresPath", str, ""),
    )
    if "{token}" not in tl.header_format:
        t.error("HeaderFormat", "must contain {token}, e.g. 'Token {token}'")
    if tl.body is not None and not isinstance(tl.body, dict | list):
        t.error("Body", "expected a JSON object template, e.g. {login: '{username}', ...}")
    credentials_used(o, t, tl.body, raw_body(raw, OPTION))
    return tl


class TokenLoginAuth(LoginAuth):
    """A login call returning a token (Omnitron), or a JSON-RPC session id, put in a header."""

    def __init__(
        self, cfg: ConnectorConfig, tl: TokenLogin, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.tl = tl

    def _login(self) -> tuple[dict[str, str], float | None]:
        import jmespath

        tl, cfg = self.tl, self.cfg
        what = f"{tl.method} {cfg.name}:{tl.path}"
        creds = self._credentials()
        body = fill(tl.body, creds) if tl.body is not None else creds
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
        return {tl.header: tl.header_format.format(token=token)}, seconds(ttl)


KIND = Kind(
    name="token_login",
    selector=OPTION,
    keys=frozenset({OPTION}),
    secrets=frozenset(),
    read=read,
)
