"""Local Omnitron-like and ERP-like servers (REST, JSON-RPC, SOAP) and an Omnium-like one, with
fault injection, for the demo and the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integrator._lazy import lazy_exports
from integrator.sandbox.seed import CHANNEL_SECRET, seed_orders

if TYPE_CHECKING:  # the servers (http.server) load when one starts: `validate` reads seed only
    from integrator.sandbox.auth import AuthRealm
    from integrator.sandbox.base import Faults, JsonServer
    from integrator.sandbox.erp import ErpSandbox
    from integrator.sandbox.jsonrpc_erp import JsonRpcErpSandbox
    from integrator.sandbox.omnitron import OmnitronSandbox
    from integrator.sandbox.omnium import OmniumSandbox
    from integrator.sandbox.soap_erp import SoapErpSandbox

__all__ = [
    "CHANNEL_SECRET",
    "SANDBOX_ENV",
    "AuthRealm",
    "ErpSandbox",
    "Faults",
    "JsonRpcErpSandbox",
    "JsonServer",
    "OmnitronSandbox",
    "OmniumSandbox",
    "Sandbox",
    "SoapErpSandbox",
    "running_sandbox",
    "seed_orders",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AuthRealm": "auth",
        "ErpSandbox": "erp",
        "Faults": "base",
        "JsonRpcErpSandbox": "jsonrpc_erp",
        "JsonServer": "base",
        "OmnitronSandbox": "omnitron",
        "OmniumSandbox": "omnium",
        "SoapErpSandbox": "soap_erp",
    },
)

# The sandbox's own credentials: public test values, handed to the runner through the
# environment exactly as real secrets would be.
SANDBOX_ENV = {
    "OMNITRON_USERNAME": "integrator",
    "OMNITRON_PASSWORD": "sandbox-pass",
    "ERP_TOKEN": "sandbox-erp-token",
    # the ERP's logins (OAuth2 client credentials, JSON-RPC session, SAP B1 cookie session)
    "ERP_CLIENT_ID": "integrator-client",
    "ERP_CLIENT_SECRET": "sandbox-client-secret",
    "ERP_USERNAME": "manager",
    "ERP_PASSWORD": "sandbox-erp-pass",
    # the Omnium-like source (flows/omnium/)
    "OMNIUM_CLIENT_ID": "omnium-client",
    "OMNIUM_CLIENT_SECRET": "omnium-sandbox-secret",
    "OMNIUM_EVENT_SECRET": "omnium-event-shared-secret",
    # the JSON-RPC ERP (Odoo-like: its database, a user's login and password)
    "JSONRPC_ERP_DB": "sandbox",
    "JSONRPC_ERP_LOGIN": "integrator",
    "JSONRPC_ERP_PASSWORD": "sandbox-jsonrpc-pass",
    # the SOAP ERP
    "SOAP_ERP_USER": "integrator",
    "SOAP_ERP_PASSWORD": "sandbox-soap-pass",
}


@dataclass
class Sandbox:
    """The servers, running."""

    omnitron: OmnitronSandbox
    erp: ErpSandbox
    credentials: dict[str, str]
    omnium: OmniumSandbox | None = None
    jsonrpc_erp: JsonRpcErpSandbox | None = None
    soap_erp: SoapErpSandbox | None = None

    def env(self) -> dict[str, str]:
        """Environment for a runner aimed at this sandbox."""
        env = {**self.credentials, "OMNITRON_URL": self.omnitron.url, "ERP_URL": self.erp.url}
        if self.omnium is not None:
            env["OMNIUM_URL"] = self.omnium.url
        if self.jsonrpc_erp is not None:
            env["JSONRPC_ERP_URL"] = self.jsonrpc_erp.url
        if self.soap_erp is not None:
            env["SOAP_ERP_URL"] = self.soap_erp.url
        return env


@contextmanager
def running_sandbox(
    orders: int = 25,
    *,
    omnitron_port: int = 0,
    erp_port: int = 0,
    omnium_port: int | None = None,
    jsonrpc_erp_port: int | None = 0,
    soap_erp_port: int | None = 0,
    seed: int = 42,
    items_per_order: int | None = None,
    discounts_per_order: int | None = None,
) -> Iterator[Sandbox]:
    """Start the servers in background threads; stop them on exit.

    ``omnium_port`` (0: any free port) also starts the Omnium-like source with ``orders``
    orders. The JSON-RPC and SOAP ERPs start on ``jsonrpc_erp_port`` and ``soap_erp_port``
    (0, the default: any free port; None: not started); their password hashes are computed at
    their first login, so starting them costs no PBKDF2.
    """
    from integrator.sandbox.auth import AuthRealm
    from integrator.sandbox.erp import ErpSandbox
    from integrator.sandbox.jsonrpc_erp import JsonRpcErpSandbox
    from integrator.sandbox.omnitron import OmnitronSandbox
    from integrator.sandbox.omnium import OmniumSandbox
    from integrator.sandbox.soap_erp import SoapErpSandbox

    env = {k: os.environ.get(k, v) for k, v in SANDBOX_ENV.items()}
    omni = OmnitronSandbox(
        port=omnitron_port,
        orders=orders,
        seed=seed,
        username=env["OMNITRON_USERNAME"],
        password=env["OMNITRON_PASSWORD"],
        items_per_order=items_per_order,
        discounts_per_order=discounts_per_order,
    ).start()
    realm = AuthRealm(
        client_id=env["ERP_CLIENT_ID"],
        client_secret=env["ERP_CLIENT_SECRET"],
        username=env["ERP_USERNAME"],
        password=env["ERP_PASSWORD"],
    )
    erp = ErpSandbox(port=erp_port, token=env["ERP_TOKEN"], realm=realm).start()
    for o in omni.orders.values():  # what Omnitron shows as sent, the ERP has
        if o["is_send"]:
            erp.preload(o["number"], o["amount"], o["date_placed"])
    started: list[JsonServer] = [omni, erp]
    omnium: OmniumSandbox | None = None
    jsonrpc: JsonRpcErpSandbox | None = None
    soap: SoapErpSandbox | None = None
    try:
        if omnium_port is not None:
            omnium = OmniumSandbox(
                port=omnium_port,
                orders=orders,
                client_id=env["OMNIUM_CLIENT_ID"],
                client_secret=env["OMNIUM_CLIENT_SECRET"],
            ).start()
            started.append(omnium)
        if jsonrpc_erp_port is not None:
            jsonrpc = JsonRpcErpSandbox(
                port=jsonrpc_erp_port,
                db=env["JSONRPC_ERP_DB"],
                login=env["JSONRPC_ERP_LOGIN"],
                password=env["JSONRPC_ERP_PASSWORD"],
            ).start()
            started.append(jsonrpc)
            for o in omni.orders.values():
                if o["is_send"]:
                    jsonrpc.preload(o["number"], o["amount"])
        if soap_erp_port is not None:
            soap = SoapErpSandbox(
                port=soap_erp_port, user=env["SOAP_ERP_USER"], password=env["SOAP_ERP_PASSWORD"]
            ).start()
            started.append(soap)
            for o in omni.orders.values():
                if o["is_send"]:
                    soap.preload(o["number"], o["amount"])
        yield Sandbox(omni, erp, env, omnium, jsonrpc, soap)
    finally:
        for server in started:
            server.stop()
