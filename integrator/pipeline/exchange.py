"""The exchange: one order travelling through a flow's stages.

Typed fields are the engine's; ``attributes`` (string to string, as in NiFi) belong to users.
Reserved attribute keys, set or read by the engine:

=====================  ==========================================================
``order.number``        the order's number (set at read)
``order.pk``            the order's Omnitron pk (set at read)
``flow.name``           the flow's name
``run.id``              the run's id in the state store
``order_exists``        a script sets ``"true"`` to skip the write (as in Akinon)
``failed``              ``"true"`` when a stage failed (seen by post_script)
``failure.stage``       the stage that failed
``failure.message``     its error message
``log.script.error``    a script's exception and line
``vars.NAME``           the flow's constant NAME (``vars:``; text as is, other values JSON)
``log.*``               written per order to the run's log file and to the store
=====================  ==========================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from integrator.errors import OrderError
from integrator.state.ledger import State, Track

__all__ = ["LOG_PREFIX", "VARS_PREFIX", "Exchange", "var_attributes"]

LOG_PREFIX = "log."
VARS_PREFIX = "vars."


def var_attributes(constants: Mapping[str, Any]) -> dict[str, str]:
    """A flow's constants as attributes: ``vars.NAME`` → the text, or the value as JSON."""
    return {
        VARS_PREFIX + name: value
        if isinstance(value, str)
        else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        for name, value in constants.items()
    }


@dataclass
class Exchange:
    """One order's data and attributes, plus what the engine knows of its progress."""

    pk: str
    number: str
    order: dict[str, Any]
    data: Any = None
    attributes: dict[str, str] = field(default_factory=dict)
    request: Any = None  # the body written (or to be written) to the ERP
    response: Any = None  # the ERP's answer, or the query_check answer when found
    mapping_data: dict[str, Any] | None = None  # check_response output for mark_sent
    resume: bool = False  # the ERP has the order: skip to the stages after `write`
    settle: bool = False  # journal said `sending`: query_check must settle it
    failure: OrderError | None = None
    # The ledger's view of the order; the runner gives it the one built from the journal.
    track: Track = field(init=False)

    def __post_init__(self) -> None:
        if self.data is None:
            self.data = self.order
        self.track = Track(self.number, self.pk)

    @property
    def state(self) -> State:
        """The order's state as the ledger last decided it."""
        return self.track.state

    def log_attributes(self) -> dict[str, str]:
        """The ``log.`` attributes to record at the end of the order."""
        return {k: v for k, v in self.attributes.items() if k.startswith(LOG_PREFIX)}
