"""The journal's records as plain values: what the ledger reads and decides on. Apart from
``journal`` (the tables and queries) so that deciding needs no SQLAlchemy: the stages and the
CLI's light commands (``validate``, ``test-script``) import the ledger's facts, not the store."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from integrator.state.clock import now

__all__ = ["Delivery", "JournalEntry", "Transition"]


@dataclass(frozen=True)
class Transition:
    """A journal change made in memory, written with the order's next durable change."""

    state: str
    message: str
    at: dt.datetime
    fields: Mapping[str, Any]
    fact: str = ""


@dataclass(frozen=True)
class Delivery:
    """A delivery other than the write (an export), written with its event."""

    kind: str
    connector: str
    connector_id: str
    note: str


@dataclass(frozen=True)
class JournalEntry:
    """Where one order of one flow stands, as stored."""

    flow: str
    order_number: str
    order_pk: str | None
    state: str
    attempts: int = 0
    next_try: float | None = None
    error_kind: str | None = None
    last_error: str | None = None
    erp_ref: str | None = None
    request: Any = None
    response: Any = None
    updated_at: dt.datetime | None = None  # UTC
    target_id: str | None = None
    held_state: str | None = None
    repeatable: bool = False  # the write in `sending` can be resent harmlessly

    def age_seconds(self) -> float:
        """Seconds since the last change (0 when unknown)."""
        if self.updated_at is None:
            return 0.0
        return (now() - self.updated_at).total_seconds()

    @property
    def written(self) -> bool:
        """A write of this order was started at some point (its request is stored)."""
        return self.request is not None
