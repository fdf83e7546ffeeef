"""Exporters: where an ``export`` step sends an order, chosen by the connector's ``Name``.

Built in: ``Webhook``. Others register in the entry-point group ``integrator.exporters``
(``name = "package.module:Class"``), a class taking the step's :class:`Connector` and
implementing ``export(order)``; an :class:`~integrator.errors.OrderError` fails the export.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from integrator.connectors.http import Connector

__all__ = ["ENTRY_POINT_GROUP", "Exporter", "WebhookExporter", "find_exporter"]

ENTRY_POINT_GROUP = "integrator.exporters"


class Exporter:
    """Sends one order somewhere through its connector."""

    name = ""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector

    def export(self, order: dict[str, Any]) -> str:
        """Send ``order``; return a short note for the ``Exported`` event."""
        raise NotImplementedError


class WebhookExporter(Exporter):
    """The whole order as JSON by POST to the ``WebhookEndpoint`` property, or to ``Host``."""

    name = "Webhook"

    def export(self, order: dict[str, Any]) -> str:
        """POST the order; 2xx = exported."""
        props = dict(self.connector.config.properties)
        url = props.get("WebhookEndpoint") or self.connector.config.host
        resp = self.connector.request("POST", url, json_body=order, idempotent=False)
        return (
            f"POST {self.connector.describe('POST', self.connector.url(url))} → {resp.status_code}"
        )


BUILTIN: dict[str, type[Exporter]] = {WebhookExporter.name: WebhookExporter}


def find_exporter(name: str) -> type[Exporter] | None:
    """The exporter class for a connector ``Name`` (case-sensitive), or None."""
    if name in BUILTIN:
        return BUILTIN[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            cls = ep.load()
            if isinstance(cls, type) and issubclass(cls, Exporter):
                return cls
    return None
