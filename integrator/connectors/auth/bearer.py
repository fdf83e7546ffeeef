"""``BearerToken: ${ENV}`` → ``Authorization: Bearer …`` on every call."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.connectors.auth import Auth, AuthConfig, Kind, Send, Url

if TYPE_CHECKING:
    from integrator.config.checks import Options
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = ["KIND", "Bearer"]


@dataclass(frozen=True)
class Bearer(AuthConfig):
    """A static bearer token."""

    token: str

    def __repr__(self) -> str:  # never show the token
        return "Bearer(token=***)"

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """The same header on every call (the token is a configured secret: already known)."""
        return Auth({"Authorization": f"Bearer {self.token}"})


def read(o: Options, raw: Any) -> Bearer | None:
    """``BearerToken``, when set."""
    token = o.get("BearerToken", str, "")
    return Bearer(token) if token else None


KIND = Kind(
    name="bearer",
    selector="BearerToken",
    keys=frozenset({"BearerToken"}),
    secrets=frozenset({"BearerToken"}),
    read=read,
)
