"""OAuth2 client credentials (RFC 6749 §4.4): the token is a Bearer token until it expires.

Options: ``ClientAppId``, ``ClientAppSecret`` (a secret), ``TokenUrl`` (the token endpoint; or
``TenantUrl``, an authority, Omnium's name, with ``OAuthTenant``: ``{TenantUrl}/{OAuthTenant}/
oauth2/token``), ``OAuthScope`` and ``OAuthResource`` (sent when set). The token is cached until
``expires_in`` (an hour when the answer has none), less a margin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.connectors.auth import (
    Auth,
    AuthConfig,
    Kind,
    LoginAuth,
    LoginRefused,
    Send,
    Url,
    seconds,
)

if TYPE_CHECKING:
    from integrator.config.checks import Options
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = ["KIND", "OAuth2", "OAuth2Auth"]

_DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class OAuth2(AuthConfig):
    """Client credentials and where to exchange them for a token."""

    client_app_id: str
    client_app_secret: str
    token_url: str
    scope: str = ""
    resource: str = ""

    def __repr__(self) -> str:  # never show the secret
        return f"OAuth2(client_app_id={self.client_app_id!r}, token_url={self.token_url!r})"

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """A token on first use, renewed before it expires or on one 401."""
        return OAuth2Auth(connector, self, send, redactor, url(self.token_url))

    def urls(self) -> tuple[str, ...]:
        """The token endpoint (credentials in it are secrets)."""
        return (self.token_url,)


def read(o: Options, raw: Any) -> OAuth2 | None:
    """The client credentials, checked; None without ``ClientAppId``."""
    app_id = o.get("ClientAppId", str, "")
    secret = o.get("ClientAppSecret", str, "")
    token_url = o.get("TokenUrl", str, "")
    tenant_url = o.get("TenantUrl", str, "")
    tenant = o.get("OAuthTenant", str, "")
    if not token_url and tenant_url:
        token_url = tenant_url.rstrip("/") + (f"/{tenant}/oauth2/token" if tenant else "")
    if app_id or secret:
        if not app_id:
            o.error("ClientAppId", "OAuth2 needs ClientAppId with ClientAppSecret")
        if not secret:
            o.error("ClientAppSecret", "OAuth2 needs ClientAppSecret: ${ENV_VAR}")
        if not token_url:
            o.error("TokenUrl", "OAuth2 needs TokenUrl, the token endpoint (or TenantUrl)")
    scope = o.get("OAuthScope", str, "")
    resource = o.get("OAuthResource", str, "")
    if not app_id:
        return None
    return OAuth2(app_id, secret, token_url, scope, resource)


class OAuth2Auth(LoginAuth):
    """OAuth2 client credentials (RFC 6749 §4.4): the token is a Bearer token until it expires."""

    def __init__(
        self, cfg: ConnectorConfig, oauth: OAuth2, send: Send, redactor: Redactor, url: str
    ) -> None:
        super().__init__(cfg, send, redactor, url)
        self.oauth = oauth

    def _login(self) -> tuple[dict[str, str], float | None]:
        oauth = self.oauth
        what = f"POST {self.cfg.name}:token"
        form = {"grant_type": "client_credentials"}
        if oauth.scope:
            form["scope"] = oauth.scope
        if oauth.resource:
            form["resource"] = oauth.resource
        form["client_id"] = oauth.client_app_id
        form["client_secret"] = oauth.client_app_secret
        resp = self.send("POST", self.url, None, form, "")
        if not resp.ok:
            raise self._refused(what, resp, "ClientAppId and ClientAppSecret")
        answer = self._json(what, resp)
        token = answer.get("access_token") if isinstance(answer, dict) else None
        if not isinstance(token, str) or not token:
            raise LoginRefused(f"login {what}: no access_token in the answer")
        self._keep(token)
        ttl = seconds(answer.get("expires_in")) or _DEFAULT_TTL
        kind = str(answer.get("token_type") or "Bearer")
        return {"Authorization": f"{'Bearer' if kind.lower() == 'bearer' else kind} {token}"}, ttl


KIND = Kind(
    name="oauth2",
    selector="ClientAppId",
    keys=frozenset(
        {
            "ClientAppId",
            "ClientAppSecret",
            "TokenUrl",
            "TenantUrl",
            "OAuthTenant",
            "OAuthScope",
            "OAuthResource",
        }
    ),
    secrets=frozenset({"ClientAppSecret"}),
    read=read,
)
