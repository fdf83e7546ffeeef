"""Connectors: HTTP client per named endpoint, redaction, Omnium-style resolution."""

from __future__ import annotations

from integrator.connectors.http import Connector, HeaderAuth, parse_json
from integrator.connectors.redact import MASK, Redactor, strip_channel_conf
from integrator.connectors.resolve import resolve_connector

__all__ = [
    "MASK",
    "Connector",
    "HeaderAuth",
    "Redactor",
    "parse_json",
    "resolve_connector",
    "strip_channel_conf",
]
