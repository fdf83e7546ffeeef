"""``Username``/``Password`` alone → ``Authorization: Basic …`` (RFC 7617) on every call.

The fallback kind: with another kind set, the two are that kind's credentials (a login body's
``{username}``/``{password}``), and exporters use them too (RabbitMQ, Kafka SASL, an Azure
account), so they stay on :class:`~integrator.config.model.ConnectorConfig`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integrator.connectors.auth import Auth, AuthConfig, Kind, Send, Url

if TYPE_CHECKING:
    from integrator.config.checks import Options
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.redact import Redactor

__all__ = ["KIND", "Basic"]


@dataclass(frozen=True)
class Basic(AuthConfig):
    """Basic auth with the connector's ``username`` and ``password``."""

    def build(self, connector: ConnectorConfig, send: Send, redactor: Redactor, url: Url) -> Auth:
        """The header; its base64 pair is taught to the redactor (it is not the password)."""
        pair = f"{connector.username}:{connector.password}".encode()
        encoded = base64.b64encode(pair).decode("ascii")
        redactor.add([encoded])
        return Auth({"Authorization": f"Basic {encoded}"})


def read(o: Options, raw: Any) -> Basic | None:
    """Basic auth when ``Username`` is set (the loader reads the two values themselves)."""
    return Basic() if o.data.get("Username") not in (None, "") else None


KIND = Kind(
    name="basic",
    selector="",
    keys=frozenset({"Username", "Password"}),
    secrets=frozenset({"Password"}),
    read=read,
)
