"""RabbitMQ (pika): a persistent message, confirmed by the broker, to an exchange or queue.

Connector: ``Host: amqp://host:5672/vhost`` (vhost ``%2F`` or empty for ``/``), ``Username`` /
``Password``; properties ``Queue`` (declared durable), ``Exchange`` (default: the default
exchange), ``RoutingKey`` (default: ``Queue``), ``Message`` (``Event`` or ``Order``).
Publishes are ``mandatory`` with publisher confirms: a message no queue takes is an error, and a
publish returns only once the broker has written it. ``message_id`` is the order number, so a
consumer can drop the repeat that a lost confirm can cause (delivery is at least once).
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from integrator.errors import PermanentError, RetriableError
from integrator.exporters import (
    Exporter,
    ExporterOptions,
    Problem,
    check_options,
    missing,
    require,
)

if TYPE_CHECKING:  # validate reads OPTIONS and check(): neither pika nor requests
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.http import Connector

__all__ = ["OPTIONS", "RabbitMQExporter", "check"]

OPTIONS = ExporterOptions(
    properties=("Queue", "Exchange", "RoutingKey", "Message", "Operation"),
    host_schemes=("amqp", "amqps"),
)


def check(cfg: ConnectorConfig) -> list[Problem]:
    """A Queue, or an Exchange (with its RoutingKey, or none for a fanout exchange)."""
    found = check_options(OPTIONS, cfg)
    props = dict(cfg.properties)
    if not (props.get("RoutingKey") or props.get("Queue")) and not props.get("Exchange"):
        found.insert(
            0, missing(cfg, "Queue", "the queue to publish to, or Exchange and RoutingKey")
        )
    return found


class RabbitMQExporter(Exporter):
    """One connection and confirming channel per run, shared by the workers under a lock."""

    name = "RabbitMQ"
    lightweight = True
    options = OPTIONS
    check = staticmethod(check)

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        self.pika = require("pika", self.name, "pika")
        self.queue = self.prop("Queue")
        self.exchange = self.prop("Exchange")
        self.routing_key = self.prop("RoutingKey", self.queue)
        self.lock = threading.Lock()
        self.connection: Any = None
        self.channel: Any = None

    def _open(self) -> Any:
        if self.channel is not None and self.channel.is_open:
            return self.channel
        self._reset()
        pika, cfg = self.pika, self.connector.config
        params = pika.URLParameters(cfg.host)
        if cfg.username:
            params.credentials = pika.PlainCredentials(cfg.username, cfg.password)
        params.socket_timeout = cfg.timeout
        params.blocked_connection_timeout = cfg.timeout
        params.connection_attempts = 1
        self.connection = pika.BlockingConnection(params)
        channel = self.connection.channel()
        channel.confirm_delivery()
        if self.queue:
            channel.queue_declare(queue=self.queue, durable=True)
        self.channel = channel
        return channel

    def _reset(self) -> None:
        conn, self.connection, self.channel = self.connection, None, None
        if conn is not None and conn.is_open:
            with contextlib.suppress(self.pika.exceptions.AMQPError):
                conn.close()

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """Publish; one new connection and one more try when the old one has gone away."""
        text, event = self.body(order, market)
        ex = self.pika.exceptions
        props = self.pika.BasicProperties(
            content_type="application/json",
            delivery_mode=self.pika.DeliveryMode.Persistent,
            message_id=str(order.get("number") or event["EntityId"]),
            type="Order",
        )
        target = f"{self.exchange or '(default exchange)'} → {self.routing_key}"
        with self.lock:
            for attempt in (1, 2):
                try:
                    self._open().basic_publish(
                        self.exchange, self.routing_key, text.encode(), props, mandatory=True
                    )
                    return f"published to {self.where()} {target} (confirmed)"
                except ex.UnroutableError:
                    raise PermanentError(
                        f"RabbitMQ {self.where()}: no queue takes {target}; declare and bind "
                        "one, or set the Queue property"
                    ) from None
                except ex.NackError:
                    raise RetriableError(f"RabbitMQ {self.where()}: the broker refused the "
                                         "message (nack)") from None  # fmt: skip
                except (ex.ProbableAuthenticationError, ex.ProbableAccessDeniedError):
                    self._reset()
                    raise RetriableError(
                        f"RabbitMQ {self.where()}: login refused; check the Username and "
                        f"Password of connector {self.connector.name!r}",
                        reached=False,
                    ) from None
                except (ex.AMQPError, OSError) as exc:
                    self._reset()
                    if attempt == 2:
                        raise RetriableError(
                            f"RabbitMQ {self.where()}: {type(exc).__name__}", reached=False
                        ) from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Close the connection."""
        with self.lock:
            self._reset()
