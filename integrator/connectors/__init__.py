"""Connectors: HTTP client per named endpoint, redaction, Omnium-style resolution."""

from __future__ import annotations

from integrator.connectors.auth import Auth, LoginRefused
from integrator.connectors.http import Connector, parse_json
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
