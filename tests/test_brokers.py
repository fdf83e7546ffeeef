"""Queue exporters against real brokers: RabbitMQ (Debian's rabbitmq-server), Azure Storage
Queue (Azurite) and Kafka (a Kafka-protocol broker), through the CLI, with the messages consumed
back. Azure Service Bus has no broker that runs here: it is driven with the SDK's own message and
exception types and a recording sender."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from support import Project, assert_exactly_once, fault_rule, stats, unsent
from support.services import broker

from integrator.config.model import ConnectorConfig
from integrator.connectors import Connector, Redactor
from integrator.errors import PermanentError, RetriableError
from integrator.sandbox import Sandbox


def add_export(project: Project, connector: str, step: str, before_write: bool = False) -> None:
    """Append ``connector`` (YAML lines) to config.yaml and an export step to the flow."""
    cfg = project.root / "config.yaml"
    cfg.write_text(cfg.read_text() + connector)
    anchor = "  - write:\n" if before_write else "  - post_script:\n"
    project.edit_flow(anchor, f"  - export: {step}\n{anchor}")


def expected_events(sandbox: Sandbox, numbers: list[str]) -> dict[str, dict[str, Any]]:
    by_number = {o["number"]: o for o in sandbox.omnitron.orders.values()}
    return {
        str(by_number[n]["pk"]): {
            "EntityId": str(by_number[n]["pk"]),
            "EntityType": "Order",
            "Operation": "Export",
            "MarketId": None,
            "StoreId": None,
            "Status": "400",
        }
        for n in numbers
    }


# ---------------------------------------------------------------------------- RabbitMQ
# The runner's user, which .ci/rabbitmq.sh adds (guest's password is too short for integrator).
AMQP_PASSWORD = "integrator-broker-pass"


def rabbit(url: str) -> Any:
    import pika

    params = pika.URLParameters(url)
    params.credentials = pika.PlainCredentials("guest", "guest")
    return pika.BlockingConnection(params)


def drain(url: str, queue: str) -> list[tuple[Any, bytes]]:
    conn = rabbit(url)
    ch = conn.channel()
    got = []
    while True:
        method, props, body = ch.basic_get(queue=queue, auto_ack=True)
        if method is None:
            break
        got.append((props, body))
    ch.queue_delete(queue=queue)
    conn.close()
    return got


RABBIT = """  - Name: RabbitMQ
    Host: ${AMQP_URL}
    Username: integrator
    Password: ${AMQP_PASSWORD}
    Properties:
      - Key: Queue
        Value: ${AMQP_QUEUE}
"""


@pytest.mark.services
def test_rabbitmq_round_trip_confirmed_after_the_order_is_readable(
    project: Project, sandbox: Sandbox
) -> None:
    url = broker("rabbitmq")
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    project.env.update(AMQP_URL=url, AMQP_PASSWORD=AMQP_PASSWORD, AMQP_QUEUE=queue)
    numbers = unsent(sandbox)
    add_export(
        project, RABBIT, "{Connector: RabbitMQ, StopOnError: true, RunAfterOrderIsSaved: true}"
    )
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    got = drain(url, queue)
    assert {json.loads(b)["EntityId"]: json.loads(b) for _p, b in got} == expected_events(
        sandbox, numbers
    )
    assert len(got) == len(numbers)
    assert all(p.delivery_mode == 2 and p.content_type == "application/json" for p, _ in got)
    assert sorted(p.message_id for p, _ in got) == sorted(numbers)
    assert stats(sandbox.omnitron.url)["calls"]["get_order"] == len(numbers)  # read back first
    assert AMQP_PASSWORD not in " ".join(project.events("Exported"))


@pytest.mark.services
def test_a_retried_order_is_not_exported_twice_and_an_unreadable_one_not_at_all(
    project: Project, sandbox: Sandbox
) -> None:
    """Export before the write; the write fails for one order (retried next run, no second
    message); the read-back fails for another (no message, a warning)."""
    url = broker("rabbitmq")
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    project.env.update(AMQP_URL=url, AMQP_PASSWORD=AMQP_PASSWORD, AMQP_QUEUE=queue)
    numbers = unsent(sandbox)
    failing, unreadable = numbers[0], numbers[1]
    add_export(
        project, RABBIT, "{Connector: RabbitMQ, RunAfterOrderIsSaved: true}", before_write=True
    )
    project.edit_flow("max_attempts: 5", "max_attempts: 5\nbackoff_seconds: 0")
    fault_rule(sandbox.erp.url, action="status", route="create", status=400, numbers=[failing])
    fault_rule(
        sandbox.omnitron.url, action="status", route="get_order", status=404, numbers=[unreadable]
    )
    assert project.run("run-flow", "order_flow", "--no-progress").code == 1
    warning = next(m for m in project.events("OrderExportError"))
    assert "not readable from the source yet" in warning and "no message sent" in warning
    fault_rule(sandbox.erp.url, action="status", route="create", status=200, count=0)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    ids = [json.loads(b)["EntityId"] for _p, b in drain(url, queue)]
    pk = {o["number"]: str(o["pk"]) for o in sandbox.omnitron.orders.values()}
    assert sorted(ids) == sorted(pk[n] for n in numbers if n != unreadable)


def test_an_unreachable_broker_fails_the_order_clearly_and_it_is_retried(
    project: Project, sandbox: Sandbox
) -> None:
    project.env.update(
        AMQP_URL="amqp://127.0.0.1:1/%2F", AMQP_PASSWORD=AMQP_PASSWORD, AMQP_QUEUE="q"
    )
    numbers = unsent(sandbox)
    step = "{Connector: RabbitMQ, StopOnError: true, ErrorStatus: ExportFailed}"
    add_export(project, RABBIT, step, before_write=True)
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 1
    assert "RabbitMQ amqp://127.0.0.1:1: AMQPConnectionError" in r.out + r.err
    assert not sandbox.erp.received  # StopOnError: the flow stopped before the write
    assert all(project.state(n) == "failed" for n in numbers)


# ---------------------------------------------------------------------------- Azure queue
AZURE = """  - Name: AzureStorageQueue
    ConnectionString: ${AZURE_QUEUE_CONNECTION}
    Properties:
      - Key: QueueName
        Value: ${AZURE_QUEUE}
"""


@pytest.mark.services
def test_azure_storage_queue_round_trip(project: Project, sandbox: Sandbox) -> None:
    from azure.storage.queue import QueueClient

    cs = broker("azurite")
    queue = f"orders-{uuid.uuid4().hex[:8]}"
    project.env.update(AZURE_QUEUE_CONNECTION=cs, AZURE_QUEUE=queue)
    numbers = unsent(sandbox)
    add_export(project, AZURE, "{Connector: AzureStorageQueue, StopOnError: true}")
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    client = QueueClient.from_connection_string(cs, queue)
    got = []
    for msg in client.receive_messages(messages_per_page=32, visibility_timeout=30):
        got.append(json.loads(msg.content))
        client.delete_message(msg)
    client.delete_queue()
    assert {m["EntityId"]: m for m in got} == expected_events(sandbox, numbers)
    assert len(got) == len(numbers)
    key = cs.split("AccountKey=")[1].split(";")[0]
    assert key not in r.out + r.err and all(key not in m for m in project.events("Exported"))


# ---------------------------------------------------------------------------- Kafka
KAFKA = """  - Name: Kafka
    Host: kafka://${KAFKA_BOOTSTRAP}
    Properties:
      - Key: Topic
        Value: ${KAFKA_TOPIC}
"""


@pytest.mark.services
def test_kafka_round_trip_keyed_by_order_id(project: Project, sandbox: Sandbox) -> None:
    from confluent_kafka import Consumer
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.cimpl import NewTopic

    bootstrap = broker("kafka")
    topic = f"orders-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1)]
    ).values():
        f.result(10)
    project.env.update(KAFKA_BOOTSTRAP=bootstrap, KAFKA_TOPIC=topic)
    numbers = unsent(sandbox)
    add_export(project, KAFKA, "{Connector: Kafka, StopOnError: true}")
    r = project.run("run-flow", "order_flow", "--no-progress")
    assert r.code == 0, r.out + r.err
    assert_exactly_once(sandbox, numbers)
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"g-{topic}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
        }
    )
    consumer.subscribe([topic])
    got: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while len(got) < len(numbers) and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is not None and m.error() is None:
            key, value = m.key(), m.value()
            assert key is not None and value is not None
            got[key.decode()] = json.loads(value)
    consumer.close()
    assert got == expected_events(sandbox, numbers)  # keyed by the order id


# ---------------------------------------------------------------------------- Service Bus
class RecordingSender:
    """Stands where azure-servicebus's ServiceBusSender stands; keeps what it is given."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.sent: list[Any] = []
        self.fail = fail
        self.closed = False

    def send_messages(self, message: Any, timeout: float | None = None) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(message)

    def close(self) -> None:
        self.closed = True


class RecordingClient:
    def __init__(self, sender: RecordingSender) -> None:
        self.sender, self.entity = sender, ""

    def get_queue_sender(self, name: str) -> RecordingSender:
        self.entity = f"queue:{name}"
        return self.sender

    def get_topic_sender(self, name: str) -> RecordingSender:
        self.entity = f"topic:{name}"
        return self.sender

    def close(self) -> None:
        pass


SB_CS = (
    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k3y-s3cret="
)
ORDER = {"pk": 17, "number": "SHOP-17", "status": "400", "amount": "10.00"}


def servicebus(
    monkeypatch: pytest.MonkeyPatch, sender: RecordingSender, **props: str
) -> tuple[Any, RecordingClient]:
    from integrator.exporters.azure_servicebus import AzureServiceBusExporter

    client = RecordingClient(sender)
    seen: list[tuple[str, int]] = []

    def factory(cs: str, retries: int) -> RecordingClient:
        seen.append((cs, retries))
        return client

    monkeypatch.setattr(AzureServiceBusExporter, "client_factory", staticmethod(factory))
    cfg = ConnectorConfig(
        name="AzureServiceBus", host="", connection_string=SB_CS, properties=tuple(props.items())
    )
    redactor = Redactor([SB_CS])
    exporter = AzureServiceBusExporter(Connector(cfg, redactor))
    assert seen == [(SB_CS, 2)]  # the connector's Retry attempts, less the first try
    assert redactor.scrub("key k3y-s3cret= leaked") == "key *** leaked"
    return exporter, client


def test_servicebus_message_to_a_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.servicebus import ServiceBusMessage

    sender = RecordingSender()
    exporter, client = servicebus(monkeypatch, sender, QueueName="orders")
    note = exporter.export(ORDER, "TR")
    assert client.entity == "queue:orders" and "message SHOP-17" in note
    (msg,) = sender.sent
    assert isinstance(msg, ServiceBusMessage)
    assert json.loads(str(msg)) == {
        "EntityId": "17", "EntityType": "Order", "Operation": "Export",
        "MarketId": "TR", "StoreId": None, "Status": "400",
    }  # fmt: skip
    assert msg.message_id == "SHOP-17" and msg.content_type == "application/json"
    assert msg.subject == "Order"
    assert msg.application_properties == {
        "EntityId": "17", "EntityType": "Order", "Operation": "Export", "MarketId": "TR",
        "Status": "400",
    }  # fmt: skip
    exporter.close()
    assert sender.closed


def test_servicebus_errors_map_to_the_runner_classes(monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.servicebus.exceptions import MessageSizeExceededError, ServiceBusConnectionError

    exporter, _ = servicebus(
        monkeypatch, RecordingSender(ServiceBusConnectionError(message="down")), TopicName="t"
    )
    with pytest.raises(RetriableError, match="Service Bus topic t: ServiceBusConnectionError"):
        exporter.export(ORDER)
    exporter, _ = servicebus(
        monkeypatch, RecordingSender(MessageSizeExceededError(message="big")), QueueName="q"
    )
    with pytest.raises(PermanentError, match="too large"):
        exporter.export(ORDER)


def test_servicebus_needs_one_queue_or_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PermanentError, match="set one of the QueueName and TopicName"):
        servicebus(monkeypatch, RecordingSender())
