"""Azure Service Bus (azure-servicebus): the lightweight message to a queue or a topic.

Connector: ``ConnectionString: ${SERVICEBUS_CONNECTION_STRING}``; properties ``QueueName``
or ``TopicName``, ``Message`` (``Event`` or ``Order``). Each message carries ``message_id``
(the order number: Service Bus duplicate detection drops a repeat), ``content_type``,
``subject: Order`` and the event fields as application properties, for subscription filters.

No Service Bus broker or emulator runs on this project's CI machines (the emulator is a Docker
image): the tests drive this exporter with the SDK's own message and exception types and a
sender that records what it is given, not against a broker.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from integrator.errors import PermanentError, RetriableError
from integrator.exporters import Exporter, ExporterOptions, Problem, check_options, require
from integrator.exporters.azure_queue import connection_string_secrets

if TYPE_CHECKING:  # validate reads OPTIONS and check(): neither azure nor requests
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.http import Connector

__all__ = ["OPTIONS", "AzureServiceBusExporter", "check"]

OPTIONS = ExporterOptions(
    properties=("QueueName", "TopicName", "Message", "Operation"),
    needs="ConnectionString",
)


def check(cfg: ConnectorConfig) -> list[Problem]:
    """A ConnectionString, and one of QueueName and TopicName."""
    found = check_options(OPTIONS, cfg)
    props = dict(cfg.properties)
    if bool(props.get("QueueName")) == bool(props.get("TopicName")):
        found.append(Problem("Properties", "set one of the QueueName and TopicName properties"))
    return found


class AzureServiceBusExporter(Exporter):
    """One client and sender per run; sends are serialised (a sender is not thread-safe)."""

    name = "AzureServiceBus"
    lightweight = True
    options = OPTIONS
    check = staticmethod(check)
    # (connection string, retry_total) → ServiceBusClient; tests put a recording client here
    client_factory: Callable[[str, int], Any] | None = None

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        self.sb = require("azure.servicebus", self.name, "azure-servicebus")
        cfg = connector.config
        connector.redactor.add(connection_string_secrets(cfg.connection_string))
        self.queue, self.topic = self.prop("QueueName"), self.prop("TopicName")
        retries = 0 if cfg.retry_disabled else cfg.retry_attempts - 1
        factory = self.client_factory or (
            lambda cs, n: self.sb.ServiceBusClient.from_connection_string(cs, retry_total=n)
        )
        self.client = factory(cfg.connection_string, retries)
        self.sender = (
            self.client.get_queue_sender(self.queue)
            if self.queue
            else self.client.get_topic_sender(self.topic)
        )
        self.lock = threading.Lock()

    def where(self) -> str:
        """``queue <name>`` or ``topic <name>``."""
        return f"Service Bus {'queue ' + self.queue if self.queue else 'topic ' + self.topic}"

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """Send one message; map the SDK's errors."""
        exc_mod = self.sb.exceptions
        text, event = self.body(order, market)
        message = self.sb.ServiceBusMessage(
            text,
            message_id=str(order.get("number") or event["EntityId"]),
            content_type="application/json",
            subject="Order",
            application_properties={k: v for k, v in event.items() if v is not None},
        )
        try:
            with self.lock:
                self.sender.send_messages(message, timeout=self.connector.config.timeout)
        except exc_mod.MessageSizeExceededError:
            raise PermanentError(f"{self.where()}: the message is too large") from None
        except (exc_mod.ServiceBusAuthenticationError, exc_mod.ServiceBusConnectionError) as exc:
            raise RetriableError(
                f"{self.where()}: {type(exc).__name__}; check the ConnectionString of connector "
                f"{self.connector.name!r}",
                reached=False,
            ) from None
        except exc_mod.ServiceBusError as exc:
            raise RetriableError(f"{self.where()}: {type(exc).__name__}") from None
        return f"sent to {self.where()} (message {message.message_id})"

    def close(self) -> None:
        """Close the sender and the client."""
        with self.lock:
            self.sender.close()
            self.client.close()
