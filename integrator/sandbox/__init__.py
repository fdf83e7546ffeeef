"""Local Omnitron-like and ERP-like servers with fault injection, for the demo and the tests."""

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
    from integrator.sandbox.omnitron import OmnitronSandbox
    from integrator.sandbox.omnium import OmniumSandbox

__all__ = [
    "CHANNEL_SECRET",
    "SANDBOX_ENV",
    "AuthRealm",
    "ErpSandbox",
    "Faults",
    "JsonServer",
    "OmnitronSandbox",
    "OmniumSandbox",
    "Sandbox",
    "running_sandbox",
    "seed_orders",
]

__getattr__ = lazy_exports(
    __name__,
    {
        "AuthRealm": "auth",
        "ErpSandbox": "erp",
        "Faults": "base",
        "JsonServer": "base",
        "OmnitronSandbox": "omnitron",
        "OmniumSandbox": "omnium",
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
}


@dataclass
class Sandbox:
    """Both servers, running."""

    omnitron: OmnitronSandbox
    erp: ErpSandbox
    credentials: dict[str, str]
    omnium: OmniumSandbox | None = None

    def env(self) -> dict[str, str]:
        """Environment for a runner aimed at this sandbox."""
        env = {**self.credentials, "OMNITRON_URL": self.omnitron.url, "ERP_URL": self.erp.url}
        if self.omnium is not None:
            env["OMNIUM_URL"] = self.omnium.url
        return env


@contextmanager
def running_sandbox(
    orders: int = 25,
    *,
    omnitron_port: int = 0,
    erp_port: int = 0,
    omnium_port: int | None = None,
    seed: int = 42,
    items_per_order: int | None = None,
    discounts_per_order: int | None = None,
) -> Iterator[Sandbox]:
    """Start the servers in background threads; stop them on exit.

    ``omnium_port`` (0: any free port) also starts the Omnium-like source with ``orders``
    orders.
    """
    from integrator.sandbox.auth import AuthRealm
    from integrator.sandbox.erp import ErpSandbox
    from integrator.sandbox.omnitron import OmnitronSandbox
    from integrator.sandbox.omnium import OmniumSandbox

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
    omnium = None
    if omnium_port is not None:
        omnium = OmniumSandbox(
            port=omnium_port,
            orders=orders,
            client_id=env["OMNIUM_CLIENT_ID"],
            client_secret=env["OMNIUM_CLIENT_SECRET"],
        ).start()
    try:
        yield Sandbox(omni, erp, env, omnium)
    finally:
        omni.stop()
        erp.stop()
        if omnium is not None:
            omnium.stop()
