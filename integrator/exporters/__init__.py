"""Exporters: where an ``export`` step sends an order, chosen by the connector's ``Name``.

Built in: ``Webhook`` (HTTP), ``RabbitMQ`` (pika), ``AzureStorageQueue``
(azure-storage-queue), ``AzureServiceBus`` (azure-servicebus) and ``Kafka`` (confluent-kafka);
the four queue exporters need their client library (``pip install 'integrator[queues]'``).
Others register in the entry-point group ``integrator.exporters``
(``name = "package.module:Class"``): a class taking the step's :class:`Connector` and
implementing ``export(order, market)``; an :class:`~integrator.errors.OrderError` fails the
export. An exporter lives for one run and serves every order of it (from several workers), so
it keeps its broker connection open and closes it in ``close()``.

Each exporter owns its options: its module declares ``OPTIONS`` (the properties it reads, the
required ones, whether it needs ``Host`` or ``ConnectionString``) and ``check(config)``, which
finds what is missing without importing the client library. ``validate`` and the start of a
run call it (through :meth:`Exporter.check`) for every connector an ``export`` step names, and
the exporter calls it again when it is built, so a missing ``Queue`` is one message in one
place, with its file, line and key, before any order is read.
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from integrator.errors import PermanentError

if TYPE_CHECKING:
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.http import Connector

__all__ = [
    "BUILTIN",
    "ENTRY_POINT_GROUP",
    "Exporter",
    "ExporterOptions",
    "Problem",
    "WebhookExporter",
    "event_message",
    "find_exporter",
]

ENTRY_POINT_GROUP = "integrator.exporters"
MESSAGES = ("Event", "Order")


class Problem(NamedTuple):
    """Something an exporter's connector lacks: the connector option to fix, and what to do."""

    option: str  # "Properties", "Host", "ConnectionString"
    message: str


@dataclass(frozen=True)
class ExporterOptions:
    """What an exporter reads from its connector.

    ``properties``: the property keys it reads (``Message``, when read, must be ``Event`` or
    ``Order``); ``required``: (key, what it is) of properties that must be set; ``needs``:
    ``Host``, ``ConnectionString`` or ``Host or ConnectionString``; ``host_schemes``: the
    schemes its ``Host`` may have (none: any the loader accepts).
    """

    properties: tuple[str, ...] = ()
    required: tuple[tuple[str, str], ...] = ()
    needs: str = "Host"
    host_schemes: tuple[str, ...] = ()


def missing(cfg: ConnectorConfig, key: str, what: str) -> Problem:
    """Property ``key`` is not set: say what it is for, and point at a key spelled another way
    (``queue`` for ``Queue``: property keys are case-sensitive)."""
    typo = next(
        (k for k, _v in cfg.properties if k != key and k.casefold() == key.casefold()), None
    )
    hint = f"; found {typo!r}: property keys are case-sensitive" if typo else ""
    return Problem("Properties", f"set the {key} property ({what}){hint}")


def check_options(options: ExporterOptions, cfg: ConnectorConfig) -> list[Problem]:
    """The checks every exporter shares, by its declared ``options``."""
    props = dict(cfg.properties)
    found = [missing(cfg, key, what) for key, what in options.required if not props.get(key)]
    message = props.get("Message", "Event")
    if "Message" in options.properties and message not in MESSAGES:
        found.append(
            Problem(
                "Properties",
                f"Message is {message!r}; expected Event (the lightweight message) or Order "
                "(the whole order)",
            )
        )
    if options.needs == "ConnectionString" and not cfg.connection_string:
        found.append(Problem("ConnectionString", "set ConnectionString: ${ENV_VAR}"))
    elif options.needs == "Host" and not cfg.host:
        found.append(Problem("Host", "set Host"))
    if options.host_schemes and cfg.host:
        scheme = urlsplit(cfg.host).scheme
        if scheme not in options.host_schemes:
            shown = " or ".join(f"{s}://" for s in options.host_schemes)
            found.append(Problem("Host", f"Host must be a {shown} URL, not {scheme}://"))
    return found


class Exporter:
    """Sends one order somewhere through its connector."""

    name = ""
    # True: a queue message that consumers answer by reading the order back from the source,
    # so RunAfterOrderIsSaved makes the step confirm the source serves it first.
    lightweight = False
    options = ExporterOptions()

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.props = dict(connector.config.properties)
        problems = self.check(connector.config)
        if problems:  # validate reports these; a connector built another way meets them here
            raise PermanentError(
                f"{self.name} connector {connector.name!r}: "
                + "; ".join(p.message for p in problems)
            )

    @classmethod
    def check(cls, cfg: ConnectorConfig) -> list[Problem]:
        """What ``cfg`` lacks for this exporter; imports no client library (``validate``)."""
        return check_options(cls.options, cfg)

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """Send ``order``; return a short note for the ``Exported`` event."""
        raise NotImplementedError

    def close(self) -> None:
        """Release connections; called once at the end of the run."""

    # helpers for queue exporters ---------------------------------------------------------
    def prop(self, key: str, default: str = "") -> str:
        """A connector property (``Properties`` outside ``KeyGroup: RequestHeaders``)."""
        return self.props.get(key, default)

    def body(self, order: dict[str, Any], market: str) -> tuple[str, dict[str, Any]]:
        """The message text and the event fields: ``Message: Event`` (default) or ``Order``
        (checked by :meth:`check`)."""
        event = event_message(order, market, self.prop("Operation", "Export"))
        payload = order if self.prop("Message", "Event") == "Order" else event
        return json.dumps(payload, ensure_ascii=False, default=str), event

    def where(self) -> str:
        """Scheme, host and port of the connector's Host: never its credentials or query."""
        host = self.connector.config.host
        if not host:
            return self.connector.name
        u = urlsplit(host)
        return f"{u.scheme}://{u.hostname}" + (f":{u.port}" if u.port else "")


def event_message(order: dict[str, Any], market: str, operation: str = "Export") -> dict[str, Any]:
    """The lightweight message of Omnium's queue exporters.

    ``{EntityId, EntityType, Operation, MarketId, StoreId, Status}``: consumers read the order
    itself from the source by ``EntityId`` (Omnitron's ``pk``, Omnium's ``Id``).
    """

    def first(*keys: str) -> Any:
        return next((order[k] for k in keys if order.get(k) not in (None, "")), None)

    entity = first("Id", "id", "pk", "number", "OrderNumber")
    store = first("StoreId", "store_id", "store")
    status = first("Status", "status")
    return {
        "EntityId": None if entity is None else str(entity),
        "EntityType": "Order",
        "Operation": operation,
        "MarketId": market or None,
        "StoreId": None if store is None else str(store),
        "Status": None if status is None else str(status),
    }


class WebhookExporter(Exporter):
    """The whole order as JSON by POST to the ``WebhookEndpoint`` property, or to ``Host``."""

    name = "Webhook"
    options = ExporterOptions(properties=("WebhookEndpoint",), needs="Host or ConnectionString")

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """POST the order; 2xx = exported."""
        url = self.prop("WebhookEndpoint") or self.connector.config.host
        resp = self.connector.request("POST", url, json_body=order, idempotent=False)
        return (
            f"POST {self.connector.describe('POST', self.connector.url(url))} → {resp.status_code}"
        )


BUILTIN: dict[str, str] = {
    "Webhook": "integrator.exporters:WebhookExporter",
    "RabbitMQ": "integrator.exporters.rabbitmq:RabbitMQExporter",
    "AzureStorageQueue": "integrator.exporters.azure_queue:AzureStorageQueueExporter",
    "AzureServiceBus": "integrator.exporters.azure_servicebus:AzureServiceBusExporter",
    "Kafka": "integrator.exporters.kafka:KafkaExporter",
}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def find_exporter(name: str) -> type[Exporter] | None:
    """The exporter class for a connector ``Name`` (case-sensitive), or None.

    Looked up once per name: an export step asks for every order, and scanning the entry
    points costs more than the export bookkeeping itself. (A plug-in that fails to import is
    not cached: it fails again, order by order, with its own error.)
    """
    if name in BUILTIN:
        cls = _load(BUILTIN[name])
    else:
        from importlib.metadata import entry_points  # only for a name that is not built in

        ep = next((e for e in entry_points(group=ENTRY_POINT_GROUP) if e.name == name), None)
        cls = ep.load() if ep is not None else None
    if isinstance(cls, type) and issubclass(cls, Exporter):
        return cls
    return None


def require(module: str, exporter: str, package: str) -> Any:
    """Import a queue client library, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise PermanentError(
            f"the {exporter} exporter needs {package}: pip install 'integrator[queues]' "
            f"(or pip install {package})"
        ) from None
