"""Azure Storage Queue (azure-storage-queue): the lightweight message, one per order.

Connector: ``ConnectionString: ${AZURE_STORAGE_CONNECTION_STRING}`` (or ``Host``, the queue
endpoint, with ``Username`` = account name and ``Password`` = account key); properties
``QueueName`` (created when missing), ``Base64: "true"`` to encode as Azure Functions' queue
trigger expects, ``Message`` (``Event`` or ``Order``). Tested against Azurite.
"""

from __future__ import annotations

import contextlib
import threading
from typing import TYPE_CHECKING, Any

from integrator.errors import OrderError, PermanentError, RetriableError
from integrator.exporters import Exporter, ExporterOptions, Problem, check_options, require

if TYPE_CHECKING:  # validate reads OPTIONS and check(): neither azure nor requests
    from integrator.config.model import ConnectorConfig
    from integrator.connectors.http import Connector

__all__ = [
    "OPTIONS",
    "AzureStorageQueueExporter",
    "azure_error",
    "check",
    "connection_string_secrets",
]

OPTIONS = ExporterOptions(
    properties=("QueueName", "Base64", "Message", "Operation"),
    required=(("QueueName", "the queue to send to, lowercase"),),
    needs="Host or ConnectionString",
    host_schemes=("http", "https"),
)


def check(cfg: ConnectorConfig) -> list[Problem]:
    """A QueueName; a ConnectionString, or Host with the account's name and key."""
    found = check_options(OPTIONS, cfg)
    if not cfg.connection_string and not (cfg.username and cfg.password):
        found.append(
            Problem(
                "ConnectionString",
                "set ConnectionString: ${ENV_VAR} (or Host, the queue endpoint, with Username "
                "= the account name and Password = the account key)",
            )
        )
    return found


def connection_string_secrets(cs: str) -> list[str]:
    """The key values inside an Azure connection string (redacted wherever they appear)."""
    out = []
    for part in cs.split(";"):
        k, _, v = part.partition("=")
        if k.strip().lower() in ("accountkey", "sharedaccesskey", "sharedaccesssignature") and v:
            out.append(v)
    return out


def azure_error(where: str, exc: Exception, connector: str) -> OrderError:
    """An azure-core exception as the runner's error class."""
    from azure.core import exceptions as az

    status = getattr(exc, "status_code", None)
    if isinstance(exc, az.ClientAuthenticationError):
        return RetriableError(
            f"{where}: authentication refused ({status}); check the ConnectionString of "
            f"connector {connector!r}",
            status=status,
            reached=False,
        )
    if isinstance(exc, az.ServiceRequestError):
        return RetriableError(f"{where}: connection failed", reached=False)
    if isinstance(exc, az.HttpResponseError) and status is not None:
        code = getattr(exc, "error_code", None) or ""
        msg = f"{where} answered {status}" + (f" ({code})" if code else "")
        if status in (408, 429) or status >= 500:
            return RetriableError(msg, status=status)
        return PermanentError(msg, status=status)
    return RetriableError(f"{where}: {type(exc).__name__}")


class AzureStorageQueueExporter(Exporter):
    """A ``QueueClient`` per run (thread-safe), the queue created on first use."""

    name = "AzureStorageQueue"
    lightweight = True
    options = OPTIONS
    check = staticmethod(check)

    def __init__(self, connector: Connector) -> None:
        super().__init__(connector)
        sq = require("azure.storage.queue", self.name, "azure-storage-queue")
        cfg = connector.config
        self.queue = self.prop("QueueName")
        connector.redactor.add(connection_string_secrets(cfg.connection_string))
        opts: dict[str, Any] = {
            "connection_timeout": cfg.timeout,
            "read_timeout": cfg.timeout,
            "retry_total": 0 if cfg.retry_disabled else cfg.retry_attempts - 1,
        }
        if self.prop("Base64").lower() == "true":
            opts["message_encode_policy"] = sq.TextBase64EncodePolicy()
        if cfg.connection_string:
            self.client = sq.QueueClient.from_connection_string(
                cfg.connection_string, self.queue, **opts
            )
        else:
            credential = {"account_name": cfg.username, "account_key": cfg.password}
            self.client = sq.QueueClient(cfg.host, self.queue, credential=credential, **opts)
        self.lock = threading.Lock()
        self.created = False

    def where(self) -> str:
        """The queue's URL without its query (a SAS token lives there)."""
        return f"{self.client.url.split('?', 1)[0]}"

    def _ensure_queue(self) -> None:
        from azure.core.exceptions import ResourceExistsError

        with self.lock:
            if self.created:
                return
            with contextlib.suppress(ResourceExistsError):
                self.client.create_queue()
            self.created = True

    def export(self, order: dict[str, Any], market: str = "") -> str:
        """Send the message; the SDK retries by the connector's Retry policy."""
        from azure.core.exceptions import AzureError

        text, _event = self.body(order, market)
        try:
            self._ensure_queue()
            sent = self.client.send_message(text, timeout=int(self.connector.config.timeout))
        except AzureError as exc:
            raise azure_error(f"Azure queue {self.where()}", exc, self.connector.name) from None
        return f"queued in {self.where()} (message {sent.id})"

    def close(self) -> None:
        """Close the client's HTTP pipeline."""
        self.client.close()
