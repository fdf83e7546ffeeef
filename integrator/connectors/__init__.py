"""Connectors: HTTP client per named endpoint, redaction, Omnium-style resolution."""

from __future__ import annotations

from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports

if TYPE_CHECKING:
    from integrator.connectors.auth import Auth, LoginRefused
    from integrator.connectors.bodies import parse_json
    from integrator.connectors.http import Connector
    from integrator.connectors.redact import MASK, Redactor, strip_channel_conf
    from integrator.connectors.resolve import resolve_connector

__all__ = [
    "MASK",
    "Auth",
    "Connector",
    "LoginRefused",
    "Redactor",
    "parse_json",
    "resolve_connector",
    "strip_channel_conf",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "MASK": "redact",
        "Auth": "auth",
        "Connector": "http",
        "LoginRefused": "auth",
        "Redactor": "redact",
        "parse_json": "bodies",
        "resolve_connector": "resolve",
        "strip_channel_conf": "redact",
    },
)
