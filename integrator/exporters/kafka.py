"""Kafka (confluent-kafka): the lightweight message keyed by order id, ``acks=all``.

Connector: ``Host: kafka://broker1:9092,broker2:9092`` (SASL with ``Username``/``Password`` when
set); properties ``Topic``, ``Message`` (``Event`` or ``Order``), ``SecurityProtocol``
(default ``PLAINTEXT``, or ``SASL_SSL`` with ``SaslMechanism``). Each export waits for its
delivery report, so an order counts as exported only once every in-sync replica has it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from integrator.errors import PermanentError, RetriableError
from integrator.exporters import Exporter, ExporterOptions, Problem, check_options, require

if TYPE_CHECKING:  # validate reads OPTIONS and check(): neither confluent_kafka nor requests
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.http import Connector

__all__ = ["OPTIONS", "KafkaExporter", "check"]

OPTIONS = ExporterOptions(
    properties=(
        "Topic",
        "Message",
        "Operation",
        "Idempotence",
        "SecurityProtocol",
        "SaslMechanism",
    ),
    required=(("Topic", "the topic to produce to"),),
)


def _servers(host: str) -> str:
    return urlsplit(host).netloc if host.startswith("kafka://") else ""


def check(cfg: ConnectorConfig) -> list[Problem]:
    """A Topic, and a Host of kafka://host:port[,host:port]."""
    found = check_options(OPTIONS, cfg)
    if not _servers(cfg.host):
        found.append(Problem("Host", "Host must be kafka://host:port[,host:port]"))
    return found


class KafkaExporter(Exporter):
    """One producer per run (thread-safe), flushed after every message."""

    name = "Kafka"
    lightweight = True
    options = OPTIONS
    check = staticmethod(check)

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        ck = require("confluent_kafka", self.name, "confluent-kafka")
        self.ck = ck
        cfg = connector.config
        self.topic = self.prop("Topic")
        servers = _servers(cfg.host)
        conf: dict[str, Any] = {
            "bootstrap.servers": servers,
            "acks": "all",
            "message.timeout.ms": int(cfg.timeout * 1000),
            "socket.timeout.ms": int(cfg.timeout * 1000),
            "enable.idempotence": self.prop("Idempotence", "false").lower() == "true",
            "security.protocol": self.prop("SecurityProtocol", "PLAINTEXT"),
        }
        if cfg.username:
            conf["sasl.mechanism"] = self.prop("SaslMechanism", "PLAIN")
            conf["sasl.username"] = cfg.username
            conf["sasl.password"] = cfg.password
        self.servers = servers
        self.producer = ck.Producer(conf)
        self.lock = threading.Lock()

    def where(self) -> str:
        """Bootstrap servers and topic."""
        return f"Kafka {self.servers} topic {self.topic}"

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """Produce and wait for the delivery report."""
        text, event = self.body(order, market)
        key = event["EntityId"] or str(order.get("number"))
        reports: list[tuple[Any, Any]] = []
        timeout = self.connector.config.timeout
        try:
            self.producer.produce(
                self.topic,
                key=key.encode(),
                value=text.encode(),
                headers={"content-type": b"application/json", "entity-type": b"Order"},
                on_delivery=lambda err, msg: reports.append((err, msg)),
            )
            with self.lock:  # flush serves every worker's report; the lock keeps them short
                self.producer.flush(timeout)
        except (BufferError, self.ck.KafkaException) as exc:
            raise RetriableError(f"{self.where()}: {type(exc).__name__}", reached=False) from None
        if not reports:
            raise RetriableError(f"{self.where()}: no delivery report within {timeout:g}s")
        err, msg = reports[0]
        if err is not None:
            fatal = err.fatal() or not err.retriable()
            cls = (
                PermanentError
                if fatal and err.code() != self.ck.KafkaError._MSG_TIMED_OUT
                else RetriableError
            )
            raise cls(f"{self.where()}: {err.name()}")
        return f"produced to {self.where()} partition {msg.partition()} offset {msg.offset()}"

    def close(self) -> None:
        """Deliver anything left, then drop the producer."""
        self.producer.flush(self.connector.config.timeout)
